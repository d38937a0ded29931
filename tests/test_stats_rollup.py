"""The cross-process stats rollup: flushes of the runtime's real counters into ``PluginStatsBucket``,
``series``' shape and histogram percentiles, retention, and two OS processes calling a plugin on
one SQLite file whose figures add up in the rollup and on the admin pages (Django's test client,
in a third process)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from gonext_plugins.models import PluginStatsBucket
from gonext_plugins.runtime.metrics import LATENCY_BUCKETS, stats_for
from gonext_plugins.stats import BUCKETS, quantile, rollup, series, summaries

from .conftest import REPO
from .test_logs_cross_process import Site

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rollup_on(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "STATS_FLUSH_INTERVAL": 3600.0, "STATS_RETENTION_HOURS": 48}
    rollup.reset()


def histogram(**at: int) -> list[int]:
    """Counts per latency bucket, keyed by the bucket's upper bound in µs (``us1000`` = 1 ms)."""
    counts = [0] * BUCKETS
    for key, count in at.items():
        counts[LATENCY_BUCKETS.index(int(key[2:]) / 1_000_000)] += count
    return counts


def test_quantiles_interpolate_inside_the_bucket() -> None:
    # 100 calls in (0.5 ms, 1 ms]: the median is halfway, p99 near the top.
    counts = histogram(us1000=100)
    assert quantile(counts, 0.5) == pytest.approx(0.00075)
    assert quantile(counts, 0.99) == pytest.approx(0.000995)
    # 90 fast calls and 10 slow ones: p50 among the fast, p99 among the slow.
    counts = histogram(us100=90, us10000=10)
    assert quantile(counts, 0.5) is not None and quantile(counts, 0.5) <= 0.0001  # type: ignore[operator]
    assert 0.005 < quantile(counts, 0.99) <= 0.01  # type: ignore[operator]
    assert quantile([0] * BUCKETS, 0.5) is None
    over = [0] * BUCKETS
    over[-1] = 3  # past the last bound: the last bound is the honest answer
    assert quantile(over, 0.99) == LATENCY_BUCKETS[-1]


def test_flush_writes_deltas_of_the_runtime_counters() -> None:
    runtime = stats_for("rolled")
    for _ in range(3):
        runtime.record_call("filter", 0.002, 100)
    assert rollup.flush()
    row = PluginStatsBucket.objects.get(plugin_slug="rolled")
    assert (row.calls, row.fuel_sum, row.faults) == (3, 300, 0)
    assert row.time_sum == pytest.approx(0.006) and sum(row.histogram) == 3
    runtime.record_call("action", 0.0004, 5)
    runtime.traps += 1  # what PluginMetrics.trap counts
    rollup.count_job("rolled", failed=True)
    assert rollup.flush()
    # The same row (this process, this minute) holds the running totals: an upsert, not a second row.
    totals = PluginStatsBucket.objects.filter(plugin_slug="rolled")
    if totals.count() == 1:  # the two flushes fell in one minute (a new minute makes a second row)
        row = totals.get()
        assert (row.calls, row.faults, row.fuel_sum, row.jobs_run, row.jobs_failed) == (4, 1, 305, 1, 1)
    point = summaries(["rolled"], timezone.now() - timedelta(hours=1))["rolled"]
    assert (point.calls, point.faults, point.fuel, point.jobs_run, point.jobs_failed) == (4, 1, 305, 1, 1)
    assert rollup.flush() and sum(r.calls for r in totals) == 4  # nothing new: nothing added


def test_nothing_is_written_when_the_rollup_is_off(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "STATS_FLUSH_INTERVAL": None}
    stats_for("off").record_call("filter", 0.001, 1)
    assert not rollup.flush() and not PluginStatsBucket.objects.exists()


def bucket(slug: str, minute: datetime, process: str, calls: int, **fields: Any) -> PluginStatsBucket:
    return PluginStatsBucket.objects.create(
        plugin_slug=slug, minute=minute, process=process, calls=calls,
        histogram=fields.pop("histogram", histogram(us1000=calls)), **fields)


def test_series_sums_processes_per_step_and_keeps_empty_steps() -> None:
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    bucket("charted", start, "a", 10, fuel_sum=100, faults=1, time_sum=0.01)
    bucket("charted", start + timedelta(minutes=2), "b", 30, fuel_sum=300, jobs_run=2, jobs_failed=1,
           time_sum=0.03)
    bucket("charted", start + timedelta(minutes=2), "a", 60, histogram=histogram(us10000=60), time_sum=0.6)
    bucket("other", start, "a", 999)
    points = series("charted", start + timedelta(seconds=20), timedelta(minutes=5),
                    until=start + timedelta(minutes=15))
    assert [p.start for p in points] == [start + timedelta(minutes=m) for m in (0, 5, 10)]
    first = points[0]
    assert (first.calls, first.faults, first.fuel, first.jobs_run, first.jobs_failed) == (100, 1, 400, 2, 1)
    assert first.mean_ms == pytest.approx(6.4)
    # 40 calls at ≤ 1 ms, 60 at ≤ 10 ms: the median is a slow one, and so is p99.
    assert first.p50_ms is not None and 5 < first.p50_ms <= 10
    assert first.p99_ms is not None and 9.5 < first.p99_ms <= 10
    assert [p.calls for p in points[1:]] == [0, 0] and points[1].p50_ms is None
    with pytest.raises(ValueError, match="whole number of minutes"):
        series("charted", start, timedelta(seconds=30))


def test_retention_deletes_old_minutes_on_flush() -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    bucket("kept", now - timedelta(hours=47), "old", 1)
    bucket("gone", now - timedelta(hours=49), "old", 1)
    assert rollup.flush()
    assert set(PluginStatsBucket.objects.values_list("plugin_slug", flat=True)) == {"kept"}


CALLER = r"""
import json
from gonext_plugins.hooks import apply_filters
from gonext_plugins.stats import rollup
for _ in range(CALLS):
    apply_filters("the_content", "<p>hi</p>")
print(json.dumps({"flushed": rollup.flush(), "process": rollup.process}))
"""

ADMIN = r"""
import json
from django.contrib.auth.models import User
from django.test import Client
from gonext_plugins.models import Plugin, PluginStatsBucket
user = User.objects.create_superuser("boss", "boss@example.com", "pw")
client = Client(HTTP_HOST="localhost")
client.force_login(user)
plugin = Plugin.objects.get(slug="demo")
listing = client.get("/admin/gonext_plugins/plugin/").content.decode()
page = client.get(f"/admin/gonext_plugins/plugin/{plugin.pk}/change/").content.decode()
rows = list(PluginStatsBucket.objects.filter(plugin_slug="demo").values_list("process", "calls"))
print(json.dumps({"listing": listing, "page": page, "rows": rows}))
"""


@pytest.mark.slow
def test_two_processes_add_up_in_the_rollup_and_the_admin(tmp_path: Path) -> None:
    site = Site(tmp_path, GONEXT_STATS_FLUSH_INTERVAL="3600")  # flushed explicitly below
    site.setup()
    callers = [subprocess.Popen([sys.executable, "manage.py", "shell", "-c",
                                 CALLER.replace("CALLS", str(calls))], cwd=REPO, env=site.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for calls in (30, 20)]
    outs = [proc.communicate(timeout=180) for proc in callers]
    for proc, (_, err) in zip(callers, outs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert all(r["flushed"] for r in results) and results[0]["process"] != results[1]["process"]

    admin = json.loads(site.manage("shell", "-c", ADMIN).strip().splitlines()[-1])
    per_process: dict[str, int] = {}
    for process, calls in admin["rows"]:
        per_process[process] = per_process.get(process, 0) + calls
    assert per_process == {results[0]["process"]: 30, results[1]["process"]: 20}
    assert "all processes, last hour" in admin["listing"] and "this server process" not in admin["listing"]
    assert ">50<br>" in admin["listing"]  # 30 + 20 calls in the calls column
    assert "50 calls · p50 " in admin["page"] and "all processes, last hour" in admin["page"]
