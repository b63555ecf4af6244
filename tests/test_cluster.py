"""The device lab on a real Ray cluster on this machine: a head taking build work with its own artifact cache, a
node reaching the local CPU and a loopback sshd board, a node reaching a second local target; nodes are killed,
refused and interrupted for real. The cluster starts once for the module."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from harness.config.paths import PROJECT_ROOT, targets_dir
from harness.results.store import read_records
from tests.conftest import FIXTURES
from tests.raylab import RayLab, require_ray
from tests.sshd import Sshd, require_sshd
from tests.test_cli import harness

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_auth_off():
    """This module's clusters run without Ray's token authentication, in every process of theirs (nodes, drivers):
    Ray 2.60 switches a process to token mode when ~/.ray/auth_token exists (any earlier local ray.init() writes
    one), and a node or driver that does then cannot join a cluster started without it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        yield


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    require_sshd()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def targets(tmp_path_factory, sshd):
    folder = tmp_path_factory.mktemp("targets")
    for name in ("x86-cpu", "x86-cpu-1t"):
        shutil.copy(targets_dir() / f"{name}.toml", folder)
    doomed = (targets_dir() / "x86-cpu-1t.toml").read_text().replace('name = "x86-cpu-1t"', 'name = "x86-doomed"')
    (folder / "x86-doomed.toml").write_text(doomed)
    (folder / "board.toml").write_text(sshd.target_toml("board", sys.executable,
                                                        tmp_path_factory.mktemp("board"), energy=True))
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory, targets, tiny_models_dir):
    require_ray()
    head_cache = tmp_path_factory.mktemp("head-cache")
    cluster = RayLab({"EDGE_HARNESS_TARGETS": str(targets), "EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    try:
        cluster.start_head(build=True, env={"EDGE_HARNESS_CACHE": str(head_cache), "EDGE_HARNESS_PLUGINS": RUNAWAY})
        cluster.add_node("a", targets="x86-cpu,board")
        cluster.add_node("b", targets="x86-cpu-1t")
        cluster.head_cache = head_cache
        yield cluster
    finally:
        cluster.stop()


def lab_run(lab, targets, tiny_models_dir, cache, out, *names, extra=(), popen=False):
    args = ["run", "--suite", "full", "--variant", "none", "--model", "tiny_gen", "--format", "onnx", "--format",
            "tflite", "--quick", "--no-progress", "--out", str(out), "--cache", str(cache), "--cluster", lab.address,
            *extra]
    for name in names:
        args += ["--target", name]
    env = {"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)}
    if popen:
        return subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT, env=dict(os.environ) | env)
    return harness(*args, env=env)


def workers_under(process: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in process.children(recursive=True):
        try:
            if "harness.worker" in child.cmdline():
                found.append(child)
        except psutil.Error:
            pass
    return found


# -- without a cluster -------------------------------------------------------------------------------------------------
def test_node_resources_name_the_targets_and_keep_build_work_off_measuring_cpus():
    require_ray()
    proc = harness("node", "resources", "--targets", "x86-cpu,rpi4")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"edge-target:x86-cpu": 1.0, "edge-target:rpi4": 1.0}
    proc = harness("node", "resources", "--targets", "x86-cpu", "--build")
    assert proc.returncode == 2 and "--measure-cpus" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = harness("node", "resources", "--targets", "rpi4", "--build")  # a board's CPUs are not this node's
    assert proc.returncode == 0 and json.loads(proc.stdout)["edge-build"] == 1.0
    cpu = str(min(os.sched_getaffinity(0)))
    proc = harness("node", "resources", "--targets", "x86-cpu", "--build", "--measure-cpus", cpu)
    assert proc.returncode == (0 if len(os.sched_getaffinity(0)) > 1 else 2), proc.stderr
    proc = harness("node", "resources", "--targets", "x86-cpu", "--measure-cpus", "999")
    assert proc.returncode == 2 and "not CPUs of this machine" in proc.stderr


def test_a_bad_cluster_table_or_an_empty_address_is_one_line(tmp_path, tiny_models_dir):
    suite = tmp_path / "lab.toml"
    suite.write_text('models = ["tiny_gen"]\n[cluster]\nadress = "auto"\n')
    proc = harness("run", "--suite", str(suite), env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)})
    assert proc.returncode == 2 and "[cluster] unknown key 'adress'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_cluster_at_the_address_is_one_line(tmp_path, tiny_models_dir):
    require_ray()
    from tests.sshd import free_port

    proc = harness("run", "--model", "tiny_gen", "--variant", "none", "--quick", "--no-progress", "--out",
                   str(tmp_path / "run"), "--cluster", f"127.0.0.1:{free_port()}",
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir)}, timeout=60)
    assert proc.returncode == 2 and "nothing answers there" in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "results.jsonl").exists()


# -- on the lab ------------------------------------------------------------------------------------------------------
def test_a_suite_over_three_targets_runs_across_the_lab(lab, targets, tiny_models_dir, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"  # this machine's cache starts empty: the head's is copied
    proc = lab_run(lab, targets, tiny_models_dir, cache, out, "x86-cpu", "x86-cpu-1t", "board",
                   extra=("--start-runs", "1", "--sustained", "0.5"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(out / "results.jsonl")
    assert len(records) == 12 and len({r.job_key for r in records}) == 12  # 3 targets × 2 formats × 2 batches
    for r in records:  # the sustained pass and J per image come back from the node (or its board) too
        (window,) = r.context["sustained"]["windows"]  # 0.5 s: one window, shorter than the default 10 s
        assert window["n"] > 0 and window["p50_ms"] > 0 and window["joules_per_inference"] > 0
        per_image = {m.method: m.value for m in r.measurements if m.metric == "energy_per_image"}
        per_inference = {m.method: m.value for m in r.measurements if m.metric == "energy_per_inference"}
        assert per_image and all(v == pytest.approx(per_inference[k] / r.batch_size) for k, v in per_image.items())
    for r in records:  # cold and warm start: fresh workers on the node (or its board), one pair per job
        assert len(r.measurement("cold_start").samples) == 1 and len(r.measurement("warm_start").samples) == 1
        # dropped, or said not to be: the two lanes on this node may map the same file at once (LiteRT mmaps it)
        assert r.context["start"]["cold"]["page_cache"][0].startswith(("dropped: 0 of", "not fully dropped: ")), \
            r.context["start"]
    assert {r.status for r in records} == {"ok"}
    declared = {"x86-cpu": "a", "board": "a", "x86-cpu-1t": "b"}
    for r in records:
        lane = r.context["cluster"]
        assert lane["node_id"] == lab.nodes[declared[r.target]][:12], (r.target, lane)
        assert lane["lane"].startswith(r.target + "#") and lane["end_unix"] >= lane["start_unix"]
        assert lane["board"] == (f"root@127.0.0.1:{lab_port(targets)}" if r.target == "board" else "")
        assert r.measurement("max_abs_error").value < 1e-4  # the outputs came back from the node intact
        if r.target != "board":  # the shipped x86 profiles declare [fit]: judged with the peak the node measured
            assert r.context["fit"]["basis"] == "measured" and r.context["fit"]["verdict"] == "fits"
            assert r.context["fit"]["memory_mb"] == r.measurement("peak_rss").value / 2**20
    session = json.loads((out / "lab.jsonl").read_text().splitlines()[-1])
    assert {lane["lane"] for lane in session["lanes"]} == {"x86-cpu#0", "x86-cpu-1t#0", "board#0"}
    (span,) = session["prepare"]
    assert span["status"] == "ok" and span["copied_bytes"] > 0  # built on the head, into its own cache
    assert any(lab.head_cache.rglob("model.onnx"))
    for r in records:  # every artifact a record names was copied into this machine's cache
        assert (cache / r.artifact_id / "artifact.json").is_file()
    html = (out / "index.html").read_text()
    assert "Lab lanes" in html and "board#0" in html


def lab_port(targets: Path) -> int:
    text = (targets / "board.toml").read_text()
    return int(next(line.split("=")[1] for line in text.splitlines() if line.startswith("port")))


def test_a_target_no_node_declares_is_refused_before_any_job(lab, targets, tiny_models_dir, shared_cache, tmp_path):
    proc = lab_run(lab, targets, tiny_models_dir, shared_cache, tmp_path / "run", "x86-cpu", "x86-doomed")
    assert proc.returncode == 2, proc.stderr
    assert "no node of the cluster declares target(s) x86-doomed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_a_node_with_other_harness_code_is_refused_before_any_job(lab, targets, tiny_models_dir, shared_cache,
                                                                   tmp_path):
    other = tmp_path / "other"
    shutil.copytree(PROJECT_ROOT / "harness", other / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "harness" / "stats.py", "a") as fh:
        fh.write("\n# a local change on this node\n")
    lab.add_node("odd", targets="x86-cpu-1t", env={"PYTHONPATH": str(other)})
    try:
        proc = lab_run(lab, targets, tiny_models_dir, shared_cache, tmp_path / "run", "x86-cpu")
    finally:
        lab.kill_node("odd")
    assert proc.returncode == 2, proc.stderr
    assert "runs other harness code" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_an_ssh_board_two_nodes_declare_is_refused_before_any_job(lab, targets, tiny_models_dir, shared_cache,
                                                                   tmp_path, sshd):
    """Node a reaches the loopback sshd board; a second node declaring it too would measure it at the same time."""
    lab.add_node("twin", targets="board")
    try:
        proc = lab_run(lab, targets, tiny_models_dir, shared_cache, tmp_path / "run", "board")
    finally:
        lab.kill_node("twin")
    assert proc.returncode == 2, proc.stderr
    assert f"board 127.0.0.1:{sshd.port} on " in proc.stderr and "would measure it at once" in proc.stderr
    assert proc.stderr.count("as target board") == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "run" / "results.jsonl").exists()


def kill_when_it_measures(lab, node, proc):
    """Kill ``node`` (its raylet and every process under it) as soon as a worker runs under it."""
    raylet = lab.raylet(node)
    deadline = time.monotonic() + 300
    while not workers_under(raylet) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    lab.kill_node(node)


def test_a_job_whose_node_dies_is_measured_again_on_another_lane(lab, targets, tiny_models_dir, shared_cache,
                                                                 tmp_path):
    """The doomed node and node b both reach x86-cpu-1t; the doomed one dies during its first pass."""
    lab.add_node("doomed", targets="x86-cpu-1t")
    out = tmp_path / "run"
    proc = lab_run(lab, targets, tiny_models_dir, shared_cache, out, "x86-cpu-1t", popen=True)
    kill_when_it_measures(lab, "doomed", proc)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    records = read_records(out / "results.jsonl")
    keys = Counter(r.job_key for r in records)
    assert len(keys) == 4 and set(keys.values()) == {1}  # every job once: nothing lost, nothing twice
    assert {r.status for r in records} == {"ok"}
    (retried,) = [r for r in records if r.context["cluster"]["attempt"] == 2]
    assert retried.context["cluster"]["node_id"] == lab.nodes["b"][:12]
    assert "was lost mid-job" in stderr and "1 other lane(s) of x86-cpu-1t go on" in stderr


def test_a_target_whose_only_node_dies_is_recorded_unreachable_and_the_rest_completes(
        lab, targets, tiny_models_dir, shared_cache, tmp_path):
    lab.add_node("doomed", targets="x86-doomed")
    out = tmp_path / "run"
    proc = lab_run(lab, targets, tiny_models_dir, shared_cache, out, "x86-cpu-1t", "x86-doomed", popen=True)
    kill_when_it_measures(lab, "doomed", proc)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr[-3000:]  # unreachable jobs: the suite reports failures
    records = read_records(out / "results.jsonl")
    keys = Counter(r.job_key for r in records)
    assert len(keys) == 8 and set(keys.values()) == {1}
    assert {r.status for r in records if r.target == "x86-cpu-1t"} == {"ok"}
    doomed = [r for r in records if r.target == "x86-doomed"]
    assert {r.status for r in doomed} == {"unreachable"}  # killed during its first job: none was measured
    assert all("lost" in r.error and len(r.error.splitlines()) == 1 for r in doomed)
    session = json.loads((out / "lab.jsonl").read_text().splitlines()[-1])
    assert {lane["lane"]: lane["alive"] for lane in session["lanes"]} == {"x86-cpu-1t#0": True, "x86-doomed#0": False}


def test_ctrl_c_stops_the_lab_and_resume_completes_without_duplicates(lab, targets, tiny_models_dir, shared_cache,
                                                                      tmp_path):
    out = tmp_path / "run"
    proc = lab_run(lab, targets, tiny_models_dir, shared_cache, out, "x86-cpu", "x86-cpu-1t", popen=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "results.jsonl").is_file() and (out / "results.jsonl").read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted; results measured so far are kept" in stderr and "Traceback" not in stderr
    kept = read_records(out / "results.jsonl")
    assert 1 <= len(kept) < 8
    deadline = time.monotonic() + 30
    while any(workers_under(lab.raylet(name)) for name in ("a", "b")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(workers_under(lab.raylet(name)) for name in ("a", "b"))  # gone with their killed actors
    proc = lab_run(lab, targets, tiny_models_dir, shared_cache, out, "x86-cpu", "x86-cpu-1t", extra=("--resume",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = Counter(r.job_key for r in read_records(out / "results.jsonl"))
    assert len(keys) == 8 and set(keys.values()) == {1}


def test_a_suite_table_runs_on_the_lab_with_build_work_here(lab, targets, tiny_models_dir, tmp_path):
    """[cluster] in the suite file: address and build = "driver" (preparation in this process, not on the head)."""
    suite = tmp_path / "lab.toml"
    suite.write_text(f'models = ["tiny_gen"]\ntargets = ["x86-cpu-1t"]\nformats = ["onnx"]\n'
                     f'[cluster]\naddress = "{lab.address}"\nbuild = "driver"\nretry = false\n')
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--quick", "--no-progress", "--out", str(out), "--cache",
                   str(tmp_path / "cache"), env={"EDGE_HARNESS_MODELS": str(tiny_models_dir),
                                                 "EDGE_HARNESS_TARGETS": str(targets)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = read_records(out / "results.jsonl")
    assert record.status == "ok" and record.context["cluster"]["node_id"] == lab.nodes["b"][:12]
    (span,) = json.loads((out / "lab.jsonl").read_text())["prepare"]
    assert span["node"] == "driver" and span["copied_bytes"] == 0
    proc = harness("run", "--suite", str(suite), "--quick", "--no-progress", "--out", str(tmp_path / "here"),
                   "--cache", str(tmp_path / "cache"), "--cluster", "local",
                   env={"EDGE_HARNESS_MODELS": str(tiny_models_dir), "EDGE_HARNESS_TARGETS": str(targets)})
    assert proc.returncode == 0 and not (tmp_path / "here" / "lab.jsonl").exists()  # --cluster local: no lab


RUNAWAY = str(FIXTURES / "plugins" / "runaway_compressors.py")


def test_a_variant_that_runs_away_on_a_build_node_fails_alone(lab, targets, tiny_models_dir, tmp_path):
    """The head's prepare child passes its 700 MiB cap in variant hog: hog fails (oom), named; the model is prepared
    again without it on that node, and fp32 and fp16 are measured."""
    suite = tmp_path / "lab.toml"
    suite.write_text('models = ["tiny_gen"]\ntargets = ["x86-cpu-1t"]\nformats = ["onnx"]\n[settings]\n'
                     'prepare_memory_mb = 700\n[[variants]]\nname = "hog"\nmethod = "hog-memory"\n'
                     '[[variants]]\nname = "half"\nmethod = "fp16"\n'
                     f'[cluster]\naddress = "{lab.address}"\nretry = false\n')
    out = tmp_path / "run"
    proc = harness("run", "--suite", str(suite), "--quick", "--no-progress", "--out", str(out), "--cache",
                   str(tmp_path / "cache"), env={"EDGE_HARNESS_MODELS": str(tiny_models_dir),
                                                 "EDGE_HARNESS_TARGETS": str(targets), "EDGE_HARNESS_PLUGINS": RUNAWAY})
    assert proc.returncode == 1, proc.stderr[-3000:]
    records = {r.variant: r for r in read_records(out / "results.jsonl")}
    assert records["fp32"].status == records["half"].status == "ok", {k: r.error for k, r in records.items()}
    assert records["hog"].status == "oom" and "variant hog oom" in records["hog"].error, records["hog"].error
    (span,) = json.loads((out / "lab.jsonl").read_text())["prepare"]
    assert span["status"] == "ok" and span["node"] != "driver"  # prepared on the head, the second time without hog


def test_the_cluster_a_run_uses_comes_from_the_flag_then_the_suite_then_the_project(tmp_path, monkeypatch):
    from harness.api import cluster_settings
    from harness.config import project
    from harness.config.suite import suite_from_table

    (tmp_path / "edge-harness.toml").write_text('[cluster]\naddress = "lab-head:6379"\nretry = false\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(project, "_CACHE", {})
    plain = suite_from_table(tmp_path / "s.toml", {"models": ["m"]})
    own = suite_from_table(tmp_path / "s.toml", {"models": ["m"], "cluster": {"address": "suite-head:6379"}})
    assert cluster_settings(plain, None).address == "lab-head:6379" and not cluster_settings(plain, None).retry
    assert cluster_settings(own, None).address == "suite-head:6379"
    assert cluster_settings(own, "auto").address == "auto"
    assert cluster_settings(own, "local") is None


def test_a_build_nodes_paths_are_moved_under_this_machines_cache_and_nothing_else():
    from harness.run.lab import rebase_paths

    result = {"a": "/n/cache/ab/model.onnx", "b": ["/n/cache/io/x.npz", "/n/cache-other/y", "/n/cache"],
              "c": {"d": "see /n/cache/ab/model.onnx", "e": 3}}
    assert rebase_paths(result, "/n/cache", "/driver/c") == {
        "a": "/driver/c/ab/model.onnx", "b": ["/driver/c/io/x.npz", "/n/cache-other/y", "/n/cache"],
        "c": {"d": "see /n/cache/ab/model.onnx", "e": 3}}
