"""``manage.py plugin_worker`` outlives a real PostgreSQL restart: ``db_worker`` would exit on the
first ``OperationalError``; this one waits, then runs the next job. Real server (tests/servers.py),
real worker process, jobs queued by the jobs actor. The cluster test checks the same with the whole
topology; this one is the worker alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO
from .servers import postgres_server
from .test_jobs_worker import Site

pytestmark = pytest.mark.slow


def test_plugin_worker_waits_out_a_postgresql_restart(tmp_path: Path) -> None:
    with postgres_server() as postgres:
        site = Site(tmp_path, postgres.url)
        log_path = tmp_path / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "manage.py", "plugin_worker", "--interval", "0.05", "--no-startup-delay",
                 "--no-reload", "--worker-id", "outage", "-v", "1"],
                cwd=REPO, env=site.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            site.install_job_guest("outage")
            first = site.enqueue("outage", "echo", {"n": 1})
            assert site.wait(first)[0]["status"] == "succeeded"

            postgres.stop()
            deadline = time.monotonic() + 30
            while "the database is unavailable" not in log_path.read_text(errors="replace"):
                assert worker.poll() is None, f"the worker exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"no outage seen:\n{log_path.read_text()}"
                time.sleep(0.1)
            postgres.start()

            second = site.enqueue("outage", "echo", {"n": 2})
            assert site.wait(second)[0]["status"] == "succeeded", log_path.read_text()
            assert worker.poll() is None
        finally:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            site.close()
