"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("PLBENCH_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """``../shared/fixtures/real``; tests that need it skip when it is absent."""
    path = FIXTURES / "real"
    if not path.is_dir():
        pytest.skip(f"real fixtures not found at {path} (set PLBENCH_FIXTURES or place shared/ beside the repo)")
    return path
