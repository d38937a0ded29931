"""Shared fixtures. Tests use the real thing: real wasmtime, a real database, real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GUESTS = Path(__file__).resolve().parent / "guests"


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave screenshots and reports for a person to look at."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
