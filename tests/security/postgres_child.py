"""Run a test module again in a child pytest whose database is a real PostgreSQL server.

The suite's own database is SQLite; PostgreSQL refuses what SQLite lets through (NUL in ``text`` and
``jsonb``) and does not serialize writers (READ COMMITTED), so the security scenarios about storage
and quotas run on both: in this process, then in a child run against the throwaway cluster of
``tests.test_cross_process.postgres_url``. Import :func:`on_the_expected_database` into the module
(an autouse fixture) so every scenario in the child first proves it runs on PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import REPO

EXPECT_VENDOR = "GONEXT_SECURITY_EXPECT_VENDOR"


@pytest.fixture(autouse=True)
def on_the_expected_database() -> None:
    """In the child run, every scenario first proves it really runs on PostgreSQL."""
    assert connection.vendor == os.environ.get(EXPECT_VENDOR, connection.vendor)


def run_module_on_postgresql(module_file: str, postgres_url: str, tmp_path: Path) -> None:
    """Every test of ``module_file`` except those named ``*on_postgresql`` (this runner itself),
    on PostgreSQL; fails with the child's output unless all passed and none was skipped."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("TEST_DATABASE_NAME", "PYTEST_CURRENT_TEST")}
    env.update(DATABASE_URL=postgres_url, **{EXPECT_VENDOR: "postgresql"})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", module_file, "-q", "-x", "-p", "no:randomly",
         "-k", "not on_postgresql", f"--basetemp={tmp_path / 'child'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, tail
    assert " passed" in done.stdout and " failed" not in done.stdout and "skipped" not in done.stdout, tail
