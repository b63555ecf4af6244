"""The rooms of the code and their walls: which module may import which (docs/contributing.md: "Where the code lives"), what
the worker bundle for boards holds, and that the engine stays light."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness._floors import FLOORS as _FLOORS, floor_of as _floor_of
from harness.config.paths import PACKAGE_DIR

FLOORS = [(f.name, f.number, f.modules) for f in _FLOORS]
ALLOWED_UPWARD = {
    ("harness.runtimes.torch_eager", "harness.prepare.torch_model"):
        "PyTorch eager rebuilds the generator from its model code in the worker (its bundle then carries it)",
    ("harness.config.suite", "harness.compress"):
        "a suite's [[variants]] are checked against each compressor's own parameters (lazy import)",
    ("harness.analysis.fidelity", "harness.digits"):
        "the digits classifier's features for a digits generator's Fréchet distance (lazy import)",
}
"""The only imports that reach a higher floor, each with its reason."""


def module_name(path: Path) -> str:
    parts = ("harness", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    floor = _floor_of(module)
    assert floor >= 0, f"{module} is in no room: add it to harness/_floors.py"
    return floor


def harness_imports(path: Path) -> set[str]:
    """Every harness module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            found |= {f"{node.module}.{a.name}" if node.module == "harness" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "harness"}
    return found


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "_builtin" not in p.parts and "__pycache__" not in p.parts)


def test_no_module_imports_a_higher_floor():
    upward = []
    for path in package_modules():
        mine = module_name(path)
        for other in harness_imports(path):
            if floor_of(other) > floor_of(mine) and (mine, other) not in ALLOWED_UPWARD:
                upward.append(f"{mine} (floor {floor_of(mine)}) imports {other} (floor {floor_of(other)})")
    assert upward == []


def test_no_import_cycles_counting_imports_inside_functions():
    """No two modules import each other, directly or round a loop, even lazily: a registry names its built-in members
    by module (``register_lazy``) instead of a package importing what imports it back."""
    modules = {module_name(p): p for p in package_modules()}

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {m: {resolve(o) for o in harness_imports(p)} - {m, ""} for m, p in modules.items()}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                cycles.append(" → ".join(path[path.index(other):] + [module, other]) if other in path
                              else f"{module} → {other}")
            elif other not in state:
                visit(other, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_a_lookup_imports_one_member_of_a_registry():
    """Loading a channel-pruned torch artifact needs one compressor; exporting ONNX one exporter."""
    code = ("import sys; from harness.compress import compressor; from harness.exporters import exporter_for_format; "
            "compressor('prune-channels'); exporter_for_format('onnx'); "
            "print(sorted(m for m in sys.modules if m.startswith(('harness.compress.', 'harness.exporters.'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE_DIR.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(["harness.compress.channels", "harness.compress.layers",
                                       "harness.exporters.onnx_export"])


def test_every_allowed_exception_is_still_needed():
    imports = {module_name(p): harness_imports(p) for p in package_modules()}
    for mine, other in ALLOWED_UPWARD:
        assert other in imports[mine], f"{mine} no longer imports {other}: drop the exception"


def test_the_engine_imports_only_the_standard_library_numpy_and_psutil():
    """…and, for a GPU job only, torch in the device timer (CUDA events on PyTorch's stream) and NVML in the
    memory pass (GPU memory); for a job measured under MLPerf LoadGen only, LoadGen itself (the measuring method,
    imported inside the run)."""
    device_libraries = {"device_timing.py": {"torch"}, "memory.py": {"pynvml"}, "loadgen.py": {"mlperf_loadgen"}}
    for path in sorted((PACKAGE_DIR / "engine").glob("*.py")):
        allowed = set(sys.stdlib_module_names) | {"numpy", "psutil", "harness", "__future__"}
        allowed |= device_libraries.get(path.name, set())
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert names <= allowed, f"{path.name} imports {sorted(names - allowed)}"


WORKER_BUNDLE = ["__init__.py", "capture.py", "diffusion.py", "energy/__init__.py", "energy/counters.py",
                 "energy/modelled.py", "energy/sampled.py", "energy/window.py", "engine/__init__.py",
                 "engine/context.py", "engine/cpustate.py", "engine/device_timing.py", "engine/loadgen.py",
                 "engine/measure.py", "engine/memory.py", "engine/quiet.py", "engine/sampling_loop.py", "engine/start.py",
                 "engine/sustained.py", "errors.py",
                 "plugins.py", "profiling/__init__.py", "profiling/ceilings.py", "profiling/executorch_ops.py",
                 "profiling/families.py", "profiling/litert_ops.py", "profiling/onnxruntime_ops.py",
                 "profiling/ops.py", "profiling/tensors.py", "profiling/torch_ops.py", "protocol.py", "pyfile.py",
                 "registry.py", "rounds.py", "runtimes/__init__.py", "runtimes/cuda.py", "runtimes/executorch_rt.py",
                 "runtimes/litert_rt.py", "runtimes/onnxruntime_rt.py", "runtimes/signature.py",
                 "runtimes/torch_eager.py", "sampling.py", "stats.py", "types.py", "worker.py"]


def test_the_worker_bundle_for_boards_holds_the_worker_side_only():
    from harness.launch.ssh import worker_bundle

    data, _ = worker_bundle()
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        assert sorted(n.removeprefix("harness/") for n in zf.namelist()) == WORKER_BUNDLE
    full, _ = worker_bundle(with_models=True)
    with zipfile.ZipFile(__import__("io").BytesIO(full)) as zf:
        assert "harness/prepare/torch_model.py" in zf.namelist()  # a PyTorch target rebuilds models on the board


@pytest.mark.slow
def test_the_worker_bundle_alone_checks_a_board_and_measures_an_onnx_artifact(tmp_path, tiny_models_dir,
                                                                           shared_cache):
    """Run from the zip with no checkout on the path (cwd elsewhere): nothing the worker needs is missing."""
    from harness.launch.ssh import worker_bundle
    from harness.protocol import WorkerRequest
    from tests.helpers import build_all

    _, _, io, exports = build_all(tiny_models_dir, shared_cache, "tiny_gen")
    bundle = tmp_path / "worker.zip"
    bundle.write_bytes(worker_bundle()[0])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(bundle)}
    requests = [WorkerRequest("probe"),
                WorkerRequest("latency", runtime="onnxruntime", artifact=exports["onnx"].to_dict(),
                              runtime_options={"threads": 1}, inputs_path=io.inputs_path,
                              outputs_path=str(tmp_path / "out.npz"),
                              settings={"min_runs": 5, "min_duration_s": 0.01, "warmup_max_runs": 10},
                              batch_size=1)]
    for request in requests:
        proc = subprocess.run([sys.executable, "-c", "import sys, harness.worker as w; "
                               f"assert 'torch' not in sys.modules and w.__file__.startswith({str(bundle)!r}); "
                               "sys.exit(w.main())"],
                              input=json.dumps(request.to_dict()), capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["status"] == "ok" and proc.returncode == 0, (result, proc.stderr[-2000:])
    assert (tmp_path / "out.npz").is_file()
