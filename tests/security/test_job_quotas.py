"""Issue #13, class 8: jobs have per-plugin quotas.

Before, one anonymous page view could queue as many jobs as the guest's host-call budget allowed
(26 jobs and 63 MiB of payload in the report). Now a plugin has at most ``JOB_MAX_QUEUED``
unfinished jobs holding at most ``JOB_MAX_QUEUED_BYTES`` of payload; past either, ``jobs.enqueue``
answers -1 with a log line saying why, and nothing is queued. The guest is the real
``hostcall_guest``: its hook ``loop:jobs.enqueue`` calls ``jobs.enqueue`` ten times in one call,
as a plugin's hook on a page view would. Every test runs on SQLite here and again on PostgreSQL
(``test_every_quota_test_on_postgresql``), where concurrent enqueues are not serialized for free.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django_tasks_db.models import DBTaskResult

from gonext_plugins import capabilities, jobs, lifecycle, logs
from gonext_plugins.checks import check_settings
from gonext_plugins.errors import JobQuotaExceeded
from gonext_plugins.models import PluginJobRun, PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry
from tests.conftest import guest_wasm
from tests.test_cross_process import postgres_url  # noqa: F401  (a fixture)
from tests.test_jobs import work

from .postgres_child import on_the_expected_database, run_module_on_postgresql  # noqa: F401  (autouse)

# Real commits: the same module runs again on PostgreSQL (postgres_child), where what is under test
# (row locks under READ COMMITTED, what the server refuses) needs committed transactions.
pytestmark = pytest.mark.django_db(transaction=True)

PAGE_VIEW = "loop:jobs.enqueue"  # one guest call, ten jobs.enqueue host calls


@pytest.fixture
def spammer(make_bundle: Any) -> LoadedPlugin:
    logs.writer.reset()  # no queued line of an earlier test lands in this one's log
    lifecycle.install(make_bundle(wasm=guest_wasm("hostcall_guest"), slug="spammer",
                                  capabilities=["jobs.enqueue"], jobs=[{"name": "own", "maxRetries": 0}]),
                      ["jobs.enqueue"], "tests", activate=True)
    loaded = registry.get("spammer")
    assert loaded is not None
    return loaded


def quotas(settings: Any, **values: int) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, **values}


def unfinished() -> int:
    return PluginJobRun.objects.filter(plugin_slug="spammer").exclude(status__in=PluginJobRun.FINAL).count()


def log_lines() -> list[str]:
    logs.flush()
    return list(PluginLogEntry.objects.filter(plugin="spammer").values_list("message", flat=True))


def test_one_page_view_queues_at_most_job_max_queued(spammer: LoadedPlugin, settings: Any) -> None:
    quotas(settings, JOB_MAX_QUEUED=4)
    assert spammer.invoke("filter", PAGE_VIEW, {"job": "own"}) == {"hc": -1}  # the 10th call was refused
    assert unfinished() == 4
    assert DBTaskResult.objects.count() == 4  # nothing queued past the cap, not even a task row
    refusals = [line for line in log_lines() if "jobs.enqueue refused" in line]
    assert len(refusals) == 6 and all("JOB_MAX_QUEUED=4" in line for line in refusals), refusals

    assert spammer.invoke("filter", PAGE_VIEW, {"job": "own"}) == {"hc": -1}  # ten more views change
    assert unfinished() == 4                                                  # nothing
    work()  # the queue drains: finished jobs no longer count
    assert unfinished() == 0
    assert spammer.invoke("filter", PAGE_VIEW, {"job": "own"}) == {"hc": -1}
    assert unfinished() == 4


def test_payload_bytes_are_capped(spammer: LoadedPlugin, settings: Any) -> None:
    quotas(settings, JOB_MAX_QUEUED=100, JOB_MAX_QUEUED_BYTES=2048)
    payload = {"job": "own", "payload": "x" * 900}  # 902 bytes of JSON per job
    assert spammer.invoke("filter", PAGE_VIEW, payload) == {"hc": -1}
    runs = PluginJobRun.objects.filter(plugin_slug="spammer")
    assert runs.count() == 2 and sum(run.payload_bytes for run in runs) == 1804
    refusals = [line for line in log_lines() if "jobs.enqueue refused" in line]
    assert len(refusals) == 8 and all("JOB_MAX_QUEUED_BYTES=2048" in line for line in refusals), refusals


def test_site_code_gets_a_typed_error_and_nothing_is_queued(spammer: LoadedPlugin, settings: Any) -> None:
    quotas(settings, JOB_MAX_QUEUED=2)
    jobs.enqueue("spammer", "own")
    jobs.enqueue("spammer", "own")
    with pytest.raises(JobQuotaExceeded) as caught:
        jobs.enqueue("spammer", "own")
    assert caught.value.code == "job_quota_exceeded" and caught.value.plugin == "spammer"
    assert unfinished() == 2 and DBTaskResult.objects.count() == 2


def test_the_capability_says_what_it_allows_and_the_settings_are_range_checked(settings: Any) -> None:
    capability = capabilities.get("jobs.enqueue")
    assert capability.risk == "medium"
    assert "JOB_MAX_QUEUED" in capability.description and "JOB_MAX_QUEUED_BYTES" in capability.description
    quotas(settings, JOB_MAX_QUEUED=0, JOB_MAX_QUEUED_BYTES=10)
    problems = {message.msg for message in check_settings() if message.id == "gonext_plugins.E003"}
    assert any("JOB_MAX_QUEUED'" in text for text in problems), problems
    assert any("JOB_MAX_QUEUED_BYTES" in text for text in problems), problems


def test_concurrent_enqueues_never_pass_the_cap_together(spammer: LoadedPlugin, settings: Any) -> None:
    """Twelve threads enqueue at once against JOB_MAX_QUEUED=5: exactly five jobs are queued (a
    count-then-insert without the plugin row lock lets several through on PostgreSQL). A thread
    retries only on the test SQLite's "table is locked"."""
    quotas(settings, JOB_MAX_QUEUED=5)
    outcomes: list[str] = []
    start = threading.Barrier(12)

    def enqueuer() -> None:
        try:
            start.wait()
            for _ in range(200):
                try:
                    jobs.enqueue("spammer", "own")
                except JobQuotaExceeded:
                    outcomes.append("refused")
                except OperationalError:  # in-memory SQLite under concurrent writers
                    time.sleep(0.005)
                    continue
                else:
                    outcomes.append("queued")
                return
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueuer) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["queued"] * 5 + ["refused"] * 7
    assert unfinished() == 5 and DBTaskResult.objects.count() == 5


@pytest.mark.slow
def test_every_quota_test_on_postgresql(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    """Every test above again, on a real PostgreSQL server."""
    run_module_on_postgresql(__file__, postgres_url, tmp_path)
