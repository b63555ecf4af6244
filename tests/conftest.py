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
