from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    return FIXTURES / "models"


@pytest.fixture(scope="session")
def diverging_models_dir() -> Path:
    return FIXTURES / "diverging"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One artifact cache for the session, so exports of the tiny model happen once."""
    return tmp_path_factory.mktemp("artifact-cache")


@pytest.fixture
def isolated_models(monkeypatch):
    """One process, one project: this test starts with no model registered and leaves none behind (a model name
    defined in two files is an input error, rightly, within one real run; tests in one process use many)."""
    from harness import zoo
    from harness.registry import MODELS

    monkeypatch.setattr(MODELS, "_items", {})
    monkeypatch.setattr(zoo, "_loaded_files", {})


SLICES: dict[str, tuple[str, ...]] = {
    "test_ab.py": ("export",),
    "test_batchnorm_fold.py": ("export",),
    "test_channel_pruning.py": ("export",),
    "test_cli.py": ("export",),
    "test_cluster.py": ("cluster", "ssh", "export"),
    "test_compress.py": ("export",),
    "test_cuda.py": ("gpu", "export"),
    "test_distill.py": ("export",),
    "test_docs.py": ("browser",),
    "test_emulated.py": ("emulated", "export"),
    "test_executorch.py": ("export",),
    "test_exporters_runtimes.py": ("export",),
    "test_history.py": ("browser",),
    "test_lab_boards.py": ("cluster",),
    "test_optimize.py": ("export",),
    "test_outputs.py": ("export",),
    "test_packaging.py": ("packaging", "export"),
    "test_profiling.py": ("export",),
    "test_project.py": ("export",),
    "test_quantize_fidelity.py": ("export",),
    "test_report_user_run.py": ("browser", "export"),
    "test_report_views.py": ("browser",),
    "test_ssh.py": ("ssh", "export"),
    "test_sweep.py": ("export",),
    "test_tflite_quant.py": ("export",),
    "test_variants.py": ("export",),
}
"""The slices a contributor runs (``pytest -m ssh``, ``-m "export and not slow"``): what each test file needs
beyond Python, one row per file. The markers are declared in ``pyproject.toml`` and described on the docs' testing
page; ``slow`` stays on the tests themselves."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SLICES.get(item.path.name, ()):
            item.add_marker(name)
