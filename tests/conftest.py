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
