"""Cluster-wide state through a real ``redis-server`` started here: the log rate limit's leases from
a shared counter (two sinks with their own local state share one budget, within the bound
``gonext_plugins.cluster`` states), the fall-back to the local bucket when Redis stops mid-flood,
and the API throttle counted across two processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from gonext_plugins.api.throttles import PluginAPIThrottle
from gonext_plugins.cluster import LEASE_MAX, SharedLogBudget
from gonext_plugins.logs.sink import Sink

from .conftest import REPO
from .test_logs_cross_process import redis_server

RATE, BURST = 1.0, 1_000  # one window of 1000 s holding 1000 lines: a flood sits inside one window


def redis_caches(url: str) -> dict[str, Any]:
    """The default cache stays per process (LocMem); "shared" is the Redis every process sees."""
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                       "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1}}}


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


@pytest.fixture
def shared(redis_url: str, settings: Any) -> str:
    settings.CACHES = redis_caches(redis_url)
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "SHARED_CACHE": "shared", "LOG_RATE": RATE, "LOG_BURST": BURST}
    return redis_url


def flood(sinks: list[Sink], lines_each: int, plugin: str = "flood") -> list[int]:
    """Interleave ``lines_each`` lines on every sink; how many each accepted."""
    accepted = [0] * len(sinks)
    for n in range(lines_each):
        for i, sink in enumerate(sinks):
            accepted[i] += sink.submit(plugin, 20, f"line {n}", "guest", version="1.0.0")
            sink.queue.clear()  # no writer here: keep the queue from filling up
    return accepted


def test_two_sinks_share_one_budget_within_the_stated_bound(shared: str) -> None:
    a, b = Sink(), Sink()
    budget = a.shared()
    assert isinstance(budget, SharedLogBudget) and budget.budget == BURST
    assert budget.lease_size == min(LEASE_MAX, BURST // 20)
    window_before = int(time.time() // budget.window_seconds)
    accepted = flood([a, b], 3_000)
    window_after = int(time.time() // budget.window_seconds)
    # Each process alone would take its own 1000 (its local bucket): 2000 together. Shared, the
    # cluster gets one budget per window (two if the flood straddled a window boundary), less at
    # most one unused lease per process.
    windows = window_after - window_before + 1
    assert sum(accepted) <= BURST * windows
    assert sum(accepted) >= BURST - 2 * (budget.lease_size - 1)
    assert min(accepted) > 0  # both processes got leases, interleaved
    assert a.buckets["flood"].total_dropped + b.buckets["flood"].total_dropped == 6_000 - sum(accepted)
    # The counter in Redis holds what was leased: the budget, plus refused requests past it.
    client = redis.Redis.from_url(shared)
    counted = sum(int(client.get(key) or 0) for key in client.keys("*gonext_plugins:lograte:flood:*"))
    assert counted >= sum(accepted)


def test_without_a_shared_cache_each_process_keeps_its_own_budget(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": RATE, "LOG_BURST": BURST}
    a, b = Sink(), Sink()
    assert a.shared() is None
    assert flood([a, b], 1_500) == [BURST, BURST]


def test_redis_stopped_mid_flood_falls_back_to_the_local_bucket(shared: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    first = flood([sink], 300)[0]
    assert first == 300  # well inside the shared budget
    redis.Redis.from_url(shared).shutdown(nosave=True)
    with caplog.at_level(logging.WARNING, logger="gonext_plugins.cluster"):
        after = flood([sink], 3_000)[0]  # never raises: the hot path falls back
    # The lease in hand is spent first, then the local bucket (a full burst: untouched so far).
    assert BURST <= after <= BURST + LEASE_MAX + 10  # + the local refill, 1 line/s
    warnings = [r.getMessage() for r in caplog.records if r.name == "gonext_plugins.cluster"]
    assert len(warnings) == 1 and "per process" in warnings[0]


THROTTLE_SCRIPT = r"""
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from gonext_plugins.api.throttles import PluginAPIThrottle

caches, gonext, rest, count = json.loads(sys.argv[1])
allowed = 0
with override_settings(CACHES=caches, GONEXT_PLUGINS=gonext, REST_FRAMEWORK=rest):
    for _ in range(count):
        request = Request(APIRequestFactory().get("/api/plugins/"))
        request.user = User(pk=4242, username="throttled")
        allowed += PluginAPIThrottle().allow_request(request, None)
print(json.dumps({"allowed": allowed}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "PYTEST_CURRENT_TEST")}
    return {**env, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}


def allow(count: int) -> int:
    """Requests of user 4242 this process's throttle lets through, out of ``count``."""
    allowed = 0
    for _ in range(count):
        request = Request(APIRequestFactory().get("/api/plugins/"))
        request.user = User(pk=4242, username="throttled")
        allowed += PluginAPIThrottle().allow_request(request, None)
    return allowed


@pytest.mark.parametrize("shared_cache", [True, False])
def test_throttle_counts_across_two_processes(redis_url: str, shared_cache: bool) -> None:
    caches = redis_caches(redis_url)
    gonext = {"SHARED_CACHE": "shared"} if shared_cache else {}
    rest = {"DEFAULT_THROTTLE_RATES": {"gonext_plugins.read": "8/min"}}
    args = json.dumps([caches, gonext, rest, 5])
    done = subprocess.run([sys.executable, "-c", THROTTLE_SCRIPT, args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"allowed": 5}
    with override_settings(CACHES=caches, GONEXT_PLUGINS=gonext, REST_FRAMEWORK=rest):
        # Shared: the other process's 5 count, 3 are left. Per process: a fresh 8 here.
        assert allow(10) == (3 if shared_cache else 8)
