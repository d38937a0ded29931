"""Background jobs in one process: queueing and its refusals, the ``jobs.enqueue`` host function's
refusals through a real guest, registration per (plugin, job), outcomes recorded by the real
``db_worker`` loop (run here in batch mode), the API endpoint and the admin section.

The multi-process behaviour (workers in their own processes, two at once, hot reload, deactivation
mid-queue) is in ``test_jobs_worker.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
import wasmtime
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from gonext_plugins import jobs, lifecycle, logs
from gonext_plugins.checks import check_task_backend
from gonext_plugins.errors import InvalidPayload, PayloadTooLarge, PluginInactive, PluginNotFound, UnknownJob
from gonext_plugins.jobs import recovery
from gonext_plugins.jobs.worker import _claim
from gonext_plugins.models import PluginJobRun, PluginKV, PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry
from gonext_plugins.tasks import run_plugin_job

from .conftest import GUESTS, guest_wasm

# No real commits needed: the worker loop runs in this process, on this connection; installs run
# the lifecycle's on-commit work through captured on-commit callbacks.
pytestmark = pytest.mark.django_db

JOB_NAMES = ("echo", "flaky", "fail", "trap", "whoami")


@cache
def job_wasm() -> bytes:
    return wasmtime.wat2wasm((GUESTS / "job_guest.wat").read_text())


@pytest.fixture(autouse=True)
def _fast_retries(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "JOB_RETRY_BASE_SECONDS": 0.05}


@pytest.fixture
def job_plugin(make_bundle: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., LoadedPlugin]:
    """``job_plugin(slug, jobs=JOB_NAMES, max_retries=2, wasm=job guest, caps=(...))``: installed,
    active, and loaded here."""

    def factory(slug: str = "jobs", jobs: tuple[str, ...] = JOB_NAMES, max_retries: int = 2,
                wasm: bytes | None = None, caps: tuple[str, ...] = ("kv", "jobs.enqueue")) -> LoadedPlugin:
        fields: dict[str, Any] = {"slug": slug, "capabilities": list(caps)}
        if jobs:
            fields["jobs"] = [{"name": name, "maxRetries": max_retries} for name in jobs]
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(make_bundle(wasm=wasm or job_wasm(), **fields), list(caps), "tests",
                              activate=True)
        loaded = registry.get(slug)
        assert loaded is not None
        return loaded

    return factory


def work() -> None:
    """Run every ready task of the ``plugin`` queue with the real ``db_worker`` loop, in this process
    (batch mode: it returns when nothing is ready)."""
    from django_tasks_db.management.commands.db_worker import Worker

    Worker(queue_names=["plugin"], interval=0, batch=True, backend_name="default", startup_delay=False,
           max_tasks=None, worker_id="tests", excluded_queue_names=[]).run()


def work_until_final(key: str, timeout: float = 60) -> PluginJobRun:  # only a failing run waits long
    deadline = time.monotonic() + timeout
    while True:
        work()
        run = PluginJobRun.objects.get(pk=key)
        if run.finished:
            return run
        assert time.monotonic() < deadline, (run.status, run.attempts, run.error)
        time.sleep(0.02)


def host_lines(slug: str) -> list[str]:
    logs.flush()
    return list(PluginLogEntry.objects.filter(plugin=slug, source="host").order_by("id")
                .values_list("message", flat=True))


def guest_lines(slug: str) -> list[str]:
    logs.flush()
    return list(PluginLogEntry.objects.filter(plugin=slug, source="guest").order_by("id")
                .values_list("message", flat=True))


# --- queueing from site code ------------------------------------------------------------------------


def test_enqueue_records_the_job_and_one_task(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "echo", {"n": 1})
    assert run.status == "queued" and run.attempts == 0 and run.max_retries == 2
    assert run.version == "1.0.0" and run.enqueued_by == "site" and run.payload == {"n": 1}
    task = DBTaskResult.objects.get(pk=run.id)  # the key is the task's own id
    assert task.queue_name == "plugin" and task.task_path == "gonext_plugins.tasks.run_plugin_job"
    assert task.args_kwargs == {"args": ["jobs", "echo", {"n": 1}], "kwargs": {}}
    assert any(f"job echo queued (id {run.id}, by site)" in line for line in host_lines("jobs"))


def test_enqueue_refusals_are_typed(job_plugin: Any) -> None:
    job_plugin()
    with pytest.raises(PluginNotFound):
        jobs.enqueue("nope", "echo")
    with pytest.raises(UnknownJob, match="declares no job 'nope'"):
        jobs.enqueue("jobs", "nope")
    with pytest.raises(InvalidPayload):
        jobs.enqueue("jobs", "echo", {"x": object()})
    with pytest.raises(PayloadTooLarge):
        jobs.enqueue("jobs", "echo", "x" * (1024 * 1024 + 1))
    with pytest.raises(ValueError, match="aware"):
        from datetime import datetime

        jobs.enqueue("jobs", "echo", run_after=datetime(2030, 1, 1))
    lifecycle.deactivate("jobs", "tests")
    with pytest.raises(PluginInactive, match="inactive"):
        jobs.enqueue("jobs", "echo")
    assert not PluginJobRun.objects.exists() and not DBTaskResult.objects.exists()


def test_enqueue_with_run_after_defers_the_task(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "echo", run_after=timedelta(hours=1))
    assert run.run_after is not None
    work()  # not ready yet
    assert PluginJobRun.objects.get(pk=run.id).status == "queued"


# --- registration ------------------------------------------------------------------------------------


def declared_jobs() -> list[tuple[str, str, int]]:
    """(slug, job, max_retries) of every job of these tests' plugins this process has registered."""
    found = (jobs.declared(slug, name) for slug in ("alpha", "beta") for name in ("echo", "whoami"))
    return [(job.slug, job.name, job.max_retries) for job in found if job is not None]


def test_two_plugins_may_declare_the_same_job_name(job_plugin: Any) -> None:
    job_plugin("alpha", jobs=("echo",))
    job_plugin("beta", jobs=("echo", "whoami"), max_retries=5)
    assert declared_jobs() == [("alpha", "echo", 2), ("beta", "echo", 5), ("beta", "whoami", 5)]
    a, b = jobs.enqueue("alpha", "echo", "a"), jobs.enqueue("beta", "echo", "b")
    work()
    for run, slug, payload in ((a, "alpha", "a"), (b, "beta", "b")):
        run.refresh_from_db()
        assert run.status == "succeeded" and run.plugin_slug == slug
        assert run.result == {"kind": "job", "job": "echo", "id": run.id, "payload": payload}
    assert guest_lines("alpha") == [f"ran {a.id}"] and guest_lines("beta") == [f"ran {b.id}"]
    lifecycle.deactivate("beta", "tests")
    registry.sync(force=True)
    assert declared_jobs() == [("alpha", "echo", 2)]


# --- outcomes ----------------------------------------------------------------------------------------


def test_success_records_result_timings_and_log_lines(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "echo", [1, 2])
    work()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 1 and run.version == "1.0.0"
    assert run.result["payload"] == [1, 2] and run.error == "" and run.duration_ms is not None
    assert run.enqueued_at <= run.started_at <= run.finished_at
    lines = host_lines("jobs")
    assert any(f"job echo {run.id}: started (attempt 1 of 3)" in line for line in lines), lines
    assert any(f"job echo {run.id}: succeeded in" in line for line in lines), lines
    assert DBTaskResult.objects.get(pk=run.id).status == "SUCCESSFUL"


def test_guest_error_fails_at_once(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "fail")
    work()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_code) == ("failed", 1, "error")
    assert DBTaskResult.objects.count() == 1  # no retry queued
    assert any("failed (error)" in line and "not retried" in line for line in host_lines("jobs"))


def test_unknown_job_in_the_guest_fails_at_once(job_plugin: Any) -> None:
    job_plugin(jobs=("echo", "undeclared-in-wasm"))
    run = jobs.enqueue("jobs", "undeclared-in-wasm")
    work()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_code) == ("failed", 1, "unknown_hook")


def test_trap_is_retried_with_backoff_and_the_same_key(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "flaky")
    work()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_code) == ("retrying", 1, "trap")
    assert run.run_after is not None  # the backoff
    assert PluginKV.objects.filter(plugin_slug="jobs", key=run.id).exists()  # the guest saw this key
    retry = DBTaskResult.objects.exclude(pk=run.id).get()
    assert retry.args_kwargs["kwargs"] == {"job_id": run.id, "attempt": 2}
    run = work_until_final(run.id)
    assert (run.status, run.attempts, run.result) == ("succeeded", 2, {"ok": True})
    assert guest_lines("jobs") == [f"ran {run.id}"]


def test_traps_past_max_retries_fail_and_are_faults(job_plugin: Any) -> None:
    job_plugin(max_retries=1)
    run = work_until_final(jobs.enqueue("jobs", "trap").id)
    assert (run.status, run.attempts, run.error_code) == ("failed", 2, "trap")
    assert "no retries left" in host_lines("jobs")[-1]
    from gonext_plugins.models import PluginFault

    assert PluginFault.objects.filter(plugin__slug="jobs", kind="trap", hook="trap").count() == 2


def test_duplicate_delivery_is_skipped(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "echo")
    work()
    run_plugin_job.enqueue("jobs", "echo", None, job_id=run.id, attempt=1)  # delivered again
    run_plugin_job.enqueue("jobs", "echo", None, job_id=run.id, attempt=5)  # a stale retry
    work()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.duplicates) == ("succeeded", 1, 2)
    assert guest_lines("jobs") == [f"ran {run.id}"]


def test_inactive_plugin_waits_then_fails_plugin_inactive(job_plugin: Any) -> None:
    job_plugin(max_retries=2)
    run = jobs.enqueue("jobs", "echo")
    lifecycle.deactivate("jobs", "tests")
    work()
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_code) == ("waiting", 1, "plugin_inactive")
    run = work_until_final(run.id)
    assert (run.status, run.attempts) == ("plugin_inactive", 3)
    assert "plugin 'jobs' is inactive after 3 attempts" in run.error
    assert guest_lines("jobs") == []


def test_uninstalled_plugin_skips_its_jobs(job_plugin: Any) -> None:
    job_plugin()
    run = jobs.enqueue("jobs", "echo")
    lifecycle.uninstall("jobs", "tests")
    work()
    run.refresh_from_db()
    assert (run.status, run.error_code) == ("skipped", "plugin_uninstalled")


def test_a_task_queued_directly_gets_a_record(job_plugin: Any) -> None:
    job_plugin()
    task = run_plugin_job.enqueue("jobs", "echo", {"direct": True})
    work()
    run = PluginJobRun.objects.get(pk=str(task.id))
    assert run.status == "succeeded" and run.result["id"] == str(task.id)


# --- the jobs.enqueue host function ------------------------------------------------------------------


@cache
def hostcall_wasm() -> bytes:
    return guest_wasm("hostcall_guest")


def host_call(loaded: LoadedPlugin, payload: Any) -> Any:
    """One guest call making one ``jobs.enqueue`` host call: its answer, or {"hc": -N}."""
    return loaded.invoke("filter", "jobs.enqueue", payload)


def test_host_function_queues_the_plugins_own_jobs_only(job_plugin: Any) -> None:
    caller = job_plugin("caller", jobs=("own",), wasm=hostcall_wasm())
    job_plugin("other", jobs=("theirs",))
    answer = host_call(caller, {"job": "own", "payload": {"k": 1}, "delaySeconds": 30})
    run = PluginJobRun.objects.get(pk=answer["id"])
    assert (run.plugin_slug, run.job, run.payload, run.enqueued_by) == ("caller", "own", {"k": 1}, "plugin")
    assert run.run_after is not None
    refused = [
        {"job": "theirs"},  # another plugin's job
        {"job": "undeclared"},
        {"job": "own", "delaySeconds": -1},
        {"job": "own", "delaySeconds": True},
        {"job": ""},
    ]
    for payload in refused:
        assert host_call(caller, payload) == {"hc": -1}, payload
    # Malformed (-3): no way to name another plugin (an unknown field), a missing field, not an object.
    for payload in ({"job": "own", "plugin": "other"}, {"payload": {}}, "own"):
        assert host_call(caller, payload) == {"hc": -3}, payload
    assert PluginJobRun.objects.count() == 1


def test_host_function_without_the_capability_is_denied(job_plugin: Any) -> None:
    caller = job_plugin("nocap", jobs=(), wasm=hostcall_wasm(), caps=("kv",))
    assert host_call(caller, {"job": "anything"}) == {"hc": -5}
    assert not PluginJobRun.objects.exists()


# --- API, admin, checks ------------------------------------------------------------------------------


def user_with(name: str, *perms: str) -> User:
    user = User.objects.create_user(name, is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm,
                                                         content_type__app_label="gonext_plugins"))
    return user


def test_api_lists_a_plugins_jobs(job_plugin: Any, settings: Any) -> None:
    from django.core.cache import cache

    # Throttling has its own tests; budgets used by earlier tests must not leak into this one.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"gonext_plugins.read": "10000/min",
                                                          "gonext_plugins.write": "10000/min"}}
    cache.clear()
    job_plugin()
    ok, bad = jobs.enqueue("jobs", "echo", {"a": 1}), jobs.enqueue("jobs", "fail")
    work()
    client = APIClient()
    client.force_authenticate(user_with("viewer", "view_plugin"))
    data = client.get("/api/plugins/jobs/jobs/").json()
    assert data["count"] == 2
    by_id = {row["id"]: row for row in data["results"]}
    assert by_id[ok.id]["status"] == "succeeded" and by_id[ok.id]["result"]["payload"] == {"a": 1}
    assert by_id[bad.id]["status"] == "failed" and by_id[bad.id]["error_code"] == "error"
    assert {"attempts", "max_retries", "enqueued_at", "started_at", "finished_at", "duration_ms",
            "version", "job", "plugin"} <= set(by_id[ok.id])
    failed = client.get("/api/plugins/jobs/jobs/?status=failed").json()
    assert [row["id"] for row in failed["results"]] == [bad.id]
    assert client.get("/api/plugins/jobs/jobs/?job=echo").json()["count"] == 1
    assert client.get("/api/plugins/jobs/jobs/?status=bogus").status_code == 400
    assert client.get("/api/plugins/jobs/jobs/?bogus=1").status_code == 400
    assert client.get("/api/plugins/nope/jobs/").status_code == 404
    nobody = APIClient()
    nobody.force_authenticate(user_with("nobody"))
    assert nobody.get("/api/plugins/jobs/jobs/").status_code == 403


def test_admin_plugin_page_shows_recent_jobs(job_plugin: Any) -> None:
    loaded = job_plugin()
    ok, bad = jobs.enqueue("jobs", "echo"), jobs.enqueue("jobs", "fail")
    work()
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    from gonext_plugins.models import Plugin

    plugin = Plugin.objects.get(slug=loaded.slug)
    page = client.get(reverse("admin:gonext_plugins_plugin_change", args=[plugin.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="gn-jobs"' in html
    for run in (ok, bad):
        assert f'data-job-id="{run.id}"' in html
    assert "Succeeded" in html and "Failed" in html and "1 of 3" in html
    from django.utils.html import escape

    ok.refresh_from_db()
    assert isinstance(ok.result, dict | list), ok.result
    assert escape(json.dumps(ok.result, ensure_ascii=False, sort_keys=True)) in html  # JSON, not repr
    assert client.get(reverse("admin:gonext_plugins_pluginjobrun_changelist")).status_code == 200


def test_task_backend_check_passes_with_the_demo_settings() -> None:
    assert list(check_task_backend()) == []


def _leave_running(run: PluginJobRun, minutes: float) -> None:
    """What a worker killed mid-job leaves behind: the attempt claimed, no end recorded."""
    assert _claim(run.pk, run.attempts + 1, "a-worker-that-died")
    PluginJobRun.objects.filter(pk=run.pk).update(
        last_attempt_at=timezone.now() - timedelta(minutes=minutes))


def test_a_run_whose_worker_died_is_retried_then_succeeds(job_plugin: Any, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "JOB_RETRY_BASE_SECONDS": 0.01}
    job_plugin()
    run = jobs.enqueue("jobs", "echo", {"n": 1})
    _leave_running(run, minutes=1)
    assert jobs.recover_stalled() == []  # a minute is not stalled: calls are bounded far below 5
    PluginJobRun.objects.filter(pk=run.pk).update(last_attempt_at=timezone.now() - timedelta(minutes=10))
    assert jobs.recover_stalled() == [run.pk]
    assert jobs.recover_stalled() == []  # taken back once
    run.refresh_from_db()
    assert (run.status, run.error_code) == ("retrying", "worker_lost")
    time.sleep(0.05)
    final = work_until_final(run.pk)
    assert (final.status, final.attempts) == ("succeeded", 2)
    assert any("stopped answering" in line for line in host_lines("jobs"))


def test_job_stall_seconds_sets_when_a_lost_run_is_taken_back(job_plugin: Any, settings: Any) -> None:
    """A cluster that wants a killed worker's job back sooner than five minutes says so."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "JOB_STALL_SECONDS": 30}
    job_plugin()
    run = jobs.enqueue("jobs", "echo")
    _leave_running(run, minutes=0.25)
    assert recovery.stall_limit() == 30.0
    assert jobs.recover_stalled() == []  # 15 s is not 30 s
    PluginJobRun.objects.filter(pk=run.pk).update(last_attempt_at=timezone.now() - timedelta(seconds=31))
    assert jobs.recover_stalled() == [run.pk]
    unset = {key: value for key, value in settings.GONEXT_PLUGINS.items() if key != "JOB_STALL_SECONDS"}
    settings.GONEXT_PLUGINS = {**unset, "HARD_TIMEOUT_MS": 60_000}
    assert recovery.stall_limit() == 600.0  # unset: ten hard timeouts when that is over five minutes


def test_a_run_whose_worker_died_with_no_retries_left_fails(job_plugin: Any) -> None:
    job_plugin(max_retries=0)
    run = jobs.enqueue("jobs", "echo")
    _leave_running(run, minutes=10)
    assert jobs.recover_stalled() == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.error_code, run.attempts) == ("failed", "worker_lost", 1)
    assert run.finished_at is not None
