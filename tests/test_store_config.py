"""Results store (schema, append-only, tolerant reading) and strict TOML for targets and suites."""
from __future__ import annotations

import json

import pytest

from harness.errors import HarnessInputError
from harness.results.store import ResultsStore, read_records
from harness.config.suite import load_suite
from harness.config.targets import get_target, load_target
from harness.types import SCHEMA_VERSION, Measurement, RunRecord


def record(key="k1", status="ok") -> RunRecord:
    return RunRecord(job_key=key, model="m", variant="fp32", format="onnx", runtime="onnxruntime",
                     target="x86-cpu", batch_size=1, artifact_id="a", artifact_bytes=10, status=status, error="",
                     measurements=(Measurement("latency", 1.5, "ms", "perf_counter", samples=(1.0, 1.5, 2.0),
                                               stats={"p50": 1.5}),),
                     context={"cpu_model": "x"}, started_at="t", duration_s=0.1)


def test_round_trip_and_append_only(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(record("a"))
    store.append(record("b", "timeout"))
    records = read_records(store.path)
    assert [r.job_key for r in records] == ["a", "b"]
    assert records[0] == record("a")
    assert store.completed_keys() == {"a", "b"}
    assert json.loads(store.path.read_text().splitlines()[0])["schema_version"] == SCHEMA_VERSION


def test_unknown_fields_are_ignored_and_truncated_last_line_skipped(tmp_path):
    path = tmp_path / "r.jsonl"
    data = record().to_dict() | {"from_the_future": 1}
    data["measurements"][0]["extra"] = "x"
    path.write_text(json.dumps(data) + "\n" + json.dumps(record("b").to_dict())[:40])
    records = read_records(path)
    assert len(records) == 1 and records[0].job_key == "k1"


def test_future_schema_and_garbage_are_one_line_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record().to_dict() | {"schema_version": SCHEMA_VERSION + 1}) + "\n")
    with pytest.raises(HarnessInputError, match="schema_version 2.*upgrade edge-harness"):
        read_records(path)
    path.write_text("garbage\n" + json.dumps(record().to_dict()) + "\n")
    with pytest.raises(HarnessInputError, match=r"r.jsonl:1: not a JSON record"):
        read_records(path)


def test_shipped_targets_load():
    from harness.config.paths import targets_dir
    from harness.config.targets import list_targets

    t = get_target(targets_dir(), "x86-cpu")
    assert t.reach == "local" and t.runtimes == ("torch", "onnxruntime", "litert", "executorch") and t.threads == 0
    for name in list_targets(targets_dir()):
        get_target(targets_dir(), name)  # every shipped profile is valid
    pi = get_target(targets_dir(), "rpi4")
    assert pi.reach == "ssh" and pi.arch == "aarch64" and pi.ssh.python.startswith("/")


@pytest.mark.parametrize("body, message", [
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\nspeed = 3\n', "unknown key 'speed'"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = "torch"\n', "'runtimes' must be list"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["tensorrt-9"]\n', "unknown runtime 'tensorrt-9'"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\nthreads = true\n', "'threads' must be int"),
    ('name = "other"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\n', "must match the file name"),
    ('name = "t"\narch = "x86_64"\nruntimes = ["torch"]\n', "missing required key 'reach'"),
    ('name = "t\n', "not valid TOML"),
    ('name = "t"\narch = "aarch64"\nreach = "ssh"\nruntimes = ["litert"]\n', "needs an \\[ssh\\] table"),
    ('name = "t"\narch = "aarch64"\nreach = "ssh"\nruntimes = ["litert"]\n[ssh]\nhost = "pi"\nuser = "pi"\n'
     'python = "python3"\n', "python must be an absolute path"),
    ('name = "t"\narch = "aarch64"\nreach = "ssh"\nruntimes = ["litert"]\n[ssh]\nhost = "pi"\npython = "/x"\n',
     "missing required key 'user'"),
    ('name = "t"\narch = "aarch64"\nreach = "ssh"\nruntimes = ["litert"]\n[ssh]\nhost = "pi"\nuser = "pi"\n'
     'python = "/x"\npassword = "hunter2"\n', "unknown key 'password'"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\n[ssh]\nhost = "pi"\n', "needs reach"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\n[energy]\nsources = ["wattmeter9"]\n',
     "unknown source 'wattmeter9'"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\n[energy]\nsources = ["modelled"]\n',
     "needs \\[energy.power_model\\] idle_w"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\n[energy.power_model]\nidle_w = -1\n',
     "must be >= 0"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["torch"]\ncpu_affinity = [0, 0]\n', "distinct CPU"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["litert"]\n[litert]\nxnnpack = "no"\n',
     "\\[litert\\] 'xnnpack' must be bool"),
    ('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["onnxruntime"]\n[onnxruntime]\n'
     'execution_mode = "async"\n', "\\[onnxruntime\\] execution_mode must be one of sequential, parallel"),
])
def test_bad_target_toml_is_a_clear_error(tmp_path, body, message):
    path = tmp_path / "t.toml"
    path.write_text(body)
    with pytest.raises(HarnessInputError, match=message) as info:
        load_target(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value).strip()


def test_a_target_can_turn_litert_xnnpack_off(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["litert"]\n[litert]\nxnnpack = false\n')
    assert load_target(path).litert_xnnpack is False
    assert get_target(tmp_path, "t").litert_xnnpack is False


def test_a_target_can_run_onnx_runtime_in_parallel_mode(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('name = "t"\narch = "x86_64"\nreach = "local"\nruntimes = ["onnxruntime"]\n[onnxruntime]\n'
                    'execution_mode = "parallel"\n')
    assert load_target(path).onnx_execution_mode == "parallel"
    import dataclasses

    from harness.run.job import worker_request
    from harness.types import Artifact, Job, RunSettings

    artifact = Artifact(id="a", format="onnx", path="/a.onnx", bytes=1, model="m", variant="fp32", batch_size=1,
                        parent_id=None, recipe={})
    job = Job(artifact, "onnxruntime", "t", RunSettings(), "/in.npz", "/ref.npz", 1)
    options = worker_request(job, load_target(path), "latency").runtime_options
    assert options["onnx_execution_mode"] == "parallel"
    plain = dataclasses.replace(load_target(path), onnx_execution_mode="sequential")
    assert "onnx_execution_mode" not in worker_request(job, plain, "latency").runtime_options  # an older worker reads it


def test_unknown_target_names_the_known_ones(tmp_path):
    (tmp_path / "a.toml").write_text("")
    with pytest.raises(HarnessInputError, match="unknown target 'b' \\(known: a"):
        get_target(tmp_path, "b")


def test_default_and_full_suites_load():
    from harness.config.paths import PROJECT_ROOT, default_suite

    suite = load_suite(default_suite())
    assert suite.name == "default" and suite.formats == ("torch", "onnx", "tflite", "executorch")
    assert suite.models == ("vae_decoder", "mlp_gan", "unet_denoiser", "dcgan")  # cheapest first
    assert suite.settings.min_runs == 50 and suite.settings.min_duration_s == 1.0  # the same measuring rules
    full = load_suite(PROJECT_ROOT / "suites" / "full.toml")
    assert full.models is None and max(full.batch_sizes) > 1
    assert full.settings == suite.settings
    assert {v.method for v in full.variants} == {"prune-l1", "prune-channels", "quant-dynamic", "quant-static", "fp16",
                                                 "tflite-dynamic", "tflite-int8", "torch-int8", "distill", "separable",
                                                 "pt2e-int8"}
    assert {v.name: v.models for v in full.variants}["separable"] == ("dcgan",)
    assert {v.name for v in suite.variants} < {v.name for v in full.variants}


@pytest.mark.parametrize("body, message", [
    ('formats = ["pb"]\n', "unknown format 'pb'"),
    ('batch_sizes = [0]\n', "batch_sizes"),
    ('[settings]\nmin_runs = "many"\n', r"\[settings\] 'min_runs' must be int"),
    ('[settings]\nmin_duration_s = 5\nmax_duration_s = 1\n', "max_duration_s must be >= min_duration_s"),
    ('models = "some"\n', "'models' must be"),
    ('colour = "blue"\n', "unknown key 'colour'"),
])
def test_bad_suite_toml_is_a_clear_error(tmp_path, body, message):
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(HarnessInputError, match=message):
        load_suite(path)


def test_repair_cuts_a_torn_record_so_appends_stay_readable(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(record("a"))
    torn = json.dumps(record("b").to_dict())[:50]
    with open(store.path, "a") as fh:
        fh.write(torn)
    assert store.repair() == len(torn)
    assert store.repair() == 0
    store.append(record("c"))
    assert [r.job_key for r in read_records(store.path)] == ["a", "c"]


@pytest.mark.parametrize("other_thread", [False, True])
def test_ctrl_c_waits_until_a_record_is_whole(tmp_path, other_thread):
    """A SIGINT raised during append is delivered only after the record is written and synced — also when
    another thread could take the signal (PyTorch's thread pools live in the harness process)."""
    import os
    import signal
    import threading

    stop = threading.Event()
    if other_thread:  # a thread that does not block SIGINT: the kernel may hand the signal to it
        threading.Thread(target=stop.wait, daemon=True).start()

    store = ResultsStore(tmp_path / "r.jsonl")
    big = record("big")
    real_write = os.write
    calls = []

    def write_then_interrupt(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-append
        return real_write(fd, data[: max(1, len(data) // 2)])  # and the write is short: a second call is needed

    import harness.results.store as store_module

    store_module.os.write = write_then_interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            store.append(big)
    finally:
        store_module.os.write = real_write
        stop.set()
    assert len(calls) > 1
    assert [r.job_key for r in read_records(store.path)] == ["big"]  # whole, despite the interrupt
    assert store.path.read_text().endswith("\n")
