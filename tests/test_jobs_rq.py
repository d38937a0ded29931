"""Plugin jobs on the Redis-backed queue engine: django-tasks-rq, run by real ``manage.py rqworker``
processes against a real ``redis-server`` (started here) and a shared SQLite file.

The same site helpers as tests/test_jobs_worker.py (the actor queues through
``gonext_plugins.jobs.enqueue``; the SEO plugin queues through the ``jobs.enqueue`` host function),
with ``TASKS_BACKEND=rq``: tasks live in Redis, never in the database's task table. Nothing is mocked.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gonext_plugins import bundle
from gonext_plugins.devtools.zigbuild import build_zig

from .runtime.test_seo_plugin_runtime import expected_score
from .test_jobs_worker import RETRY_BASE, SEO, Site, Worker
from .test_logs_cross_process import redis_server

pytestmark = pytest.mark.slow

MAX_QUEUED = 4  # JOB_MAX_QUEUED in the processes of this module


class RQWorker(Worker):
    """``manage.py rqworker plugin`` as docs/jobs.md says to run it: django-tasks-rq's job class,
    jobs in the worker's own process (so its plugin registry and pools persist), the scheduler on."""

    command = ["rqworker", "plugin", "--job-class", "django_tasks_rq.Job",
               "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler", "--name", "{name}"]
    ready_line = "Listening on plugin"


class RQSite(Site):
    worker_class = RQWorker


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RQSite]:
    workdir = tmp_path_factory.mktemp("jobs-rq")
    with redis_server(workdir) as redis_url:
        site = RQSite(workdir, REDIS_URL=redis_url, TASKS_BACKEND="rq",
                      GONEXT_JOB_MAX_QUEUED=str(MAX_QUEUED))
        try:
            site.worker("rq1").wait_started()
            yield site
        finally:
            site.close()


def database_task_rows(site: Site) -> int:
    """Rows in the database backend's task table: with RQ there must be none."""
    with sqlite3.connect(site.workdir / "db.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM django_tasks_database_dbtaskresult").fetchone()[0])


def test_a_job_queued_by_site_code_runs_on_the_rq_worker(site: RQSite) -> None:
    site.install_job_guest("rq-echo")
    [job_id] = site.enqueue("rq-echo", "echo", {"hello": "redis"})
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["attempts"] == 1, (run, site.worker_output())
    # The guest saw the key and the payload; its result is stored on the record.
    assert run["result"]["id"] == job_id and run["result"]["payload"] == {"hello": "redis"}, run
    assert site.guest_lines("rq-echo", expect=1) == [f"ran {job_id}"]
    host = site.host_lines("rq-echo", f"{job_id}: started", f"{job_id}: succeeded")
    assert any(f"job echo {job_id}: succeeded" in line for line in host), host
    # The task went through Redis, run by the rq worker; the database's task table stayed empty.
    [task] = site.do("tasks", ids=[job_id])["tasks"]
    assert task["key"] == job_id and task["attempt"] == 1 and task["worker_ids"] == ["rq1"], task
    assert task["status"] == "finished", task
    assert database_task_rows(site) == 0


def test_a_job_queued_through_the_host_function_runs_on_the_rq_worker(site: RQSite) -> None:
    """The SEO plugin queues seo.recompute-scores itself (``jobs.enqueue``) when a post is saved."""
    site.do("posts", count=5)
    path = site.workdir / "seo.gnplugin"
    path.write_bytes(bundle.sign(bundle.pack((SEO / "manifest.json").read_text(),
                                             build_zig(SEO).read_bytes()), site.private))
    site.do("install", bundle=str(path), activate=True,
            grant=["posts.read", "posts.write", "hooks.subscribe", "jobs.enqueue"])
    posts = site.do("scores")["posts"]
    site.do("save_post", id=posts[0]["id"], title="A much better title about growing tomatoes")
    plugin_job = site.queued_by_seo()
    [run] = site.wait([plugin_job])
    assert run["status"] == "succeeded" and run["enqueued_by"] == "plugin", (run, site.worker_output())
    assert run["result"]["updated"] == 5, run
    assert all(post["score"] == expected_score(post) for post in site.do("scores")["posts"])
    recomputed = f"recomputed 5 SEO scores (task {plugin_job})"
    assert any(recomputed in line for line in site.guest_lines("seo", recomputed))
    assert [t["key"] for t in site.do("tasks", ids=[plugin_job])["tasks"]] == [plugin_job]


def test_a_trap_is_retried_on_rq_with_the_same_key_after_its_backoff(site: RQSite) -> None:
    site.install_job_guest("rq-flaky")
    [job_id] = site.enqueue("rq-flaky", "flaky", {"n": 1})
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["attempts"] == 2 and run["result"] == {"ok": True}, run
    # Two RQ jobs, one per attempt, both carrying the key the guest saw; the second was deferred.
    tasks = site.do("tasks", ids=[job_id])["tasks"]
    assert sorted(t["attempt"] for t in tasks) == [1, 2] and {t["key"] for t in tasks} == {job_id}, tasks
    assert site.guest_lines("rq-flaky", expect=1) == [f"ran {job_id}"]
    host = site.host_lines("rq-flaky", f"{job_id}: trap on attempt 1")
    assert any(f"retry 1 of 2 in {RETRY_BASE:g} s" in line for line in host), host


def test_max_retries_holds_on_rq(site: RQSite) -> None:
    site.install_job_guest("rq-trap", max_retries=1)
    [job_id] = site.enqueue("rq-trap", "trap")
    [run] = site.wait([job_id])
    assert run["status"] == "failed" and run["attempts"] == 2 and run["error_code"] == "trap", run
    assert len(site.do("tasks", ids=[job_id])["tasks"]) == 2  # the first delivery and one retry
    [fail_id] = site.enqueue("rq-trap", "fail")
    [run] = site.wait([fail_id])
    assert run["status"] == "failed" and run["attempts"] == 1 and run["error_code"] == "error", run
    assert len(site.do("tasks", ids=[fail_id])["tasks"]) == 1  # a guest error is not retried


def test_the_quota_counts_jobs_waiting_in_redis(site: RQSite) -> None:
    """Deferred jobs wait in RQ's scheduled registry; the quota (counted on the records) still holds,
    and a refused job leaves nothing in Redis."""
    site.install_job_guest("rq-quota")
    ids = site.enqueue("rq-quota", "echo", {"n": 1}, delay=60, count=MAX_QUEUED)
    refused = site.do("enqueue", slug="rq-quota", job="echo", payload={"n": 2}, ok=False)
    assert refused["error"] == "job_quota_exceeded", refused
    runs = site.do("runs", ids=ids)["runs"]
    assert [r["status"] for r in runs] == ["queued"] * MAX_QUEUED
    tasks = site.do("tasks", ids=ids)["tasks"]
    assert sorted(t["key"] for t in tasks) == sorted(ids) and {t["status"] for t in tasks} == {"scheduled"}
    other = site.enqueue("rq-echo", "echo", {"other": True})  # another plugin's budget is its own
    assert site.wait(other)[0]["status"] == "succeeded"


def test_a_deferred_job_runs_after_its_delay(site: RQSite) -> None:
    """RQ schedules to the whole second, rounded down: a job may start up to a second early."""
    site.install_job_guest("rq-later")
    queued_at = time.time()
    [job_id] = site.enqueue("rq-later", "echo", delay=3)
    assert site.do("runs", ids=[job_id])["runs"][0]["status"] == "queued"
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["started_at"] >= queued_at + 2, run


def test_the_api_lists_jobs_run_on_rq(site: RQSite) -> None:
    site.install_job_guest("rq-api")
    [ok_id] = site.enqueue("rq-api", "echo")
    [fail_id] = site.enqueue("rq-api", "fail")
    site.wait([ok_id, fail_id])
    answer = site.do("api_jobs", slug="rq-api")
    assert answer["status"] == 200, answer
    listed = {job["id"]: job for job in answer["body"]["results"]}
    assert listed[ok_id]["status"] == "succeeded" and listed[fail_id]["status"] == "failed", listed
    assert listed[fail_id]["error_code"] == "error", listed[fail_id]


def test_rq_settings_pass_the_apps_checks(site: RQSite) -> None:
    from .test_cross_process import manage

    out = manage(site.env, "check", "--deploy", "--fail-level", "ERROR")
    assert "gonext_plugins.E006" not in out.stdout + out.stderr
    assert "gonext_plugins.W004" not in out.stdout + out.stderr  # RQ defers: retries keep their backoff


def test_a_settings_file_cannot_pick_rq_without_redis(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import REPO

    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "TASKS_BACKEND": "rq",
                               "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}, timeout=120)
    assert done.returncode != 0 and "TASKS_BACKEND=rq needs REDIS_URL" in done.stderr, done.stderr



def test_a_job_redis_refuses_is_failed_not_left_queued(tmp_path: Path) -> None:
    """Redis down when the record commits: site code gets JobQueueUnavailable, and the record is
    failed (``queue_unavailable``) instead of waiting for ever for a task that was never sent."""
    with redis_server(tmp_path) as redis_url:
        site = RQSite(tmp_path, REDIS_URL=redis_url, TASKS_BACKEND="rq")
        site.install_job_guest("rq-down")
        [waiting] = site.enqueue("rq-down", "echo")  # no worker in this test: it waits in Redis
    try:  # redis-server is stopped now
        refused = site.do("enqueue", slug="rq-down", job="echo", ok=False, wait_for=120)
        assert refused["error"] == "job_queue_unavailable", refused
        [line] = [line for line in site.host_lines("rq-down", "not queued") if "not queued" in line]
        key = line.split()[2].rstrip(":")
        [run] = site.do("runs", ids=[key])["runs"]
        assert run["status"] == "failed" and run["error_code"] == "queue_unavailable", run
        assert run["attempts"] == 0 and "ConnectionError" in run["error"], run
        assert site.do("runs", ids=[waiting])["runs"][0]["status"] == "queued"  # committed before: kept
        # Queued inside the site's own transaction: its commit is not failed for it; the record is.
        [inside] = site.enqueue("rq-down", "echo", atomic=True, wait_for=120)
        [run] = site.do("runs", ids=[inside])["runs"]
        assert run["status"] == "failed" and run["error_code"] == "queue_unavailable", run
    finally:
        site.close()
