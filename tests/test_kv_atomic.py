"""``kv.incr``, ``kv.cas`` and ``kv.set``'s ``ttlSeconds`` (issue #16, item 2), through real guests.

In-process tests call ``tests/guests/hostcall_guest.wat`` (a guest written from ABI.md's table: the
filter's name is the host function, its value the payload). The cross-process tests run real child
processes (``tests/procs/kv_actor.py``), each with its own registry, wasmtime and database
connection, against a shared SQLite file and a throwaway PostgreSQL cluster: 4 x 250 increments
must end at exactly 1000, with every intermediate value handed out once.

Expiry is checked without sleeping through ``kv.clock``, the one place kv reads the time (a seam:
the code under test runs unchanged, only "now" is chosen), plus one real-clock check.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from gonext_plugins import bundle, lifecycle, signing
from gonext_plugins.host_functions import kv
from gonext_plugins.models import PluginKV
from gonext_plugins.registry import LoadedPlugin, registry
from tests.conftest import guest_wasm, make_manifest
from tests.test_cross_process import (
    PROCS,
    JsonProcess,
    base_env,
    manage,
    postgres_url,  # noqa: F401  (a fixture)
)

ERROR = {"hc": -1}


@pytest.fixture
def demo(make_bundle, django_capture_on_commit_callbacks) -> LoadedPlugin:  # type: ignore[no-untyped-def]
    """An active hostcall_guest plugin "demo" granted ``kv``."""
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.install(make_bundle(wasm=guest_wasm("hostcall_guest"), slug="demo", capabilities=["kv"]),
                          ["kv"], "tests", activate=True)
    loaded = registry.get("demo")
    assert loaded is not None
    return loaded


def call(loaded: LoadedPlugin, function: str, payload: Any) -> Any:
    """One guest call that makes one host call: the host's answer, or {"hc": -N}."""
    return loaded.invoke("filter", function, payload)


class Clock:
    """A settable "now" for ``kv.clock``."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fixed = Clock()
    monkeypatch.setattr(kv, "clock", fixed)
    yield fixed


# --- kv.incr --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_incr_counts_from_zero_and_returns_the_new_value(demo: LoadedPlugin) -> None:
    assert call(demo, "kv.incr", {"key": "views"}) == {"value": 1}
    assert call(demo, "kv.incr", {"key": "views"}) == {"value": 2}
    assert call(demo, "kv.incr", {"key": "views", "by": 40}) == {"value": 42}
    assert call(demo, "kv.incr", {"key": "views", "by": -50}) == {"value": -8}
    assert call(demo, "kv.incr", {"key": "fresh", "by": 0}) == {"value": 0}
    assert call(demo, "kv.get", {"key": "views"}) == {"found": True, "value": -8}
    assert call(demo, "loop:kv.incr", {"key": "loop"}) == {"value": 10}  # ten calls in one guest call
    assert call(demo, "kv.list", {}) == {"keys": ["fresh", "loop", "views"]}


@pytest.mark.django_db
@pytest.mark.parametrize("stored", ["7", 1.5, True, None, [1], {"n": 1}])
def test_incr_of_a_non_integer_is_an_error_and_changes_nothing(demo: LoadedPlugin, stored: Any) -> None:
    assert call(demo, "kv.set", {"key": "k", "value": stored}) == {"ok": True}
    assert call(demo, "kv.incr", {"key": "k"}) == ERROR
    assert call(demo, "kv.get", {"key": "k"}) == {"found": True, "value": stored}


@pytest.mark.django_db
def test_incr_refuses_to_overflow_64_bits(demo: LoadedPlugin) -> None:
    assert call(demo, "kv.incr", {"key": "k", "by": 2**63 - 2}) == {"value": 2**63 - 2}
    assert call(demo, "kv.incr", {"key": "k"}) == {"value": 2**63 - 1}
    assert call(demo, "kv.incr", {"key": "k"}) == ERROR
    assert call(demo, "kv.incr", {"key": "low", "by": -(2**63)}) == {"value": -(2**63)}
    assert call(demo, "kv.incr", {"key": "low", "by": -1}) == ERROR
    assert call(demo, "kv.get", {"key": "k"}) == {"found": True, "value": 2**63 - 1}


# --- kv.cas ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cas_sets_only_when_the_expected_value_is_stored(demo: LoadedPlugin) -> None:
    lock = {"owner": "a", "n": 1}
    assert call(demo, "kv.cas", {"key": "lock", "expected": None, "value": lock}) == \
        {"ok": True, "value": lock}
    # expected null means "absent": the key is there now, so a second taker loses and sees the owner.
    assert call(demo, "kv.cas", {"key": "lock", "expected": None, "value": "b"}) == \
        {"ok": False, "value": lock}
    assert call(demo, "kv.cas", {"key": "lock", "expected": {"owner": "x", "n": 1}, "value": "b"}) == \
        {"ok": False, "value": lock}
    # Object key order does not matter; the value now stored comes back.
    assert call(demo, "kv.cas", {"key": "lock", "expected": {"n": 1, "owner": "a"}, "value": [1, 2]}) == \
        {"ok": True, "value": [1, 2]}
    assert call(demo, "kv.get", {"key": "lock"}) == {"found": True, "value": [1, 2]}
    # A key holding null matches expected null as well (both read as null).
    assert call(demo, "kv.set", {"key": "nul", "value": None}) == {"ok": True}
    assert call(demo, "kv.cas", {"key": "nul", "expected": None, "value": 0}) == {"ok": True, "value": 0}


@pytest.mark.django_db
@pytest.mark.parametrize(("stored", "expected"),
                         [(1, 1.0), (1, True), (0, False), ("1", 1), ([1, 2], [2, 1])])
def test_cas_compares_json_strictly(demo: LoadedPlugin, stored: Any, expected: Any) -> None:
    """1 is not 1.0 nor true, "1" is not 1, and arrays are ordered."""
    assert call(demo, "kv.set", {"key": "k", "value": stored}) == {"ok": True}
    assert call(demo, "kv.cas", {"key": "k", "expected": expected, "value": "new"}) == \
        {"ok": False, "value": stored}


# --- ttlSeconds -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_expired_key_reads_as_absent_everywhere(demo: LoadedPlugin, clock: Clock) -> None:
    assert call(demo, "kv.set", {"key": "cache", "value": "v", "ttlSeconds": 60}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "count", "value": 5, "ttlSeconds": 60}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "lock", "value": "a", "ttlSeconds": 60}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "gone", "value": "a", "ttlSeconds": 60}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "keep", "value": "forever"}) == {"ok": True}
    clock.advance(59.9)
    assert call(demo, "kv.get", {"key": "cache"}) == {"found": True, "value": "v"}
    assert call(demo, "kv.list", {}) == {"keys": ["cache", "count", "gone", "keep", "lock"]}
    clock.advance(0.1)  # exactly 60 s: expired
    assert call(demo, "kv.get", {"key": "cache"}) == {"found": False, "value": None}
    assert call(demo, "kv.list", {}) == {"keys": ["keep"]}
    assert call(demo, "kv.delete", {"key": "gone"}) == {"deleted": False}
    assert call(demo, "kv.incr", {"key": "count"}) == {"value": 1}  # counts from 0 again
    assert call(demo, "kv.cas", {"key": "lock", "expected": None, "value": "b"}) == {"ok": True, "value": "b"}
    # The writes cleaned the expired rows up (lazily, under the plugin's lock).
    assert dict(PluginKV.objects.filter(plugin_slug="demo").values_list("key", "value")) == \
        {"count": 1, "keep": "forever", "lock": "b"}


@pytest.mark.django_db
def test_set_without_ttl_clears_it_and_incr_keeps_it(demo: LoadedPlugin, clock: Clock) -> None:
    assert call(demo, "kv.set", {"key": "a", "value": 1, "ttlSeconds": 10}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "a", "value": 2}) == {"ok": True}  # no ttl: never expires
    assert call(demo, "kv.set", {"key": "window", "value": 0, "ttlSeconds": 10}) == {"ok": True}
    assert call(demo, "kv.incr", {"key": "window"}) == {"value": 1}  # a counter per time window
    assert call(demo, "kv.set", {"key": "short", "value": 1, "ttlSeconds": 0.5}) == {"ok": True}
    clock.advance(0.5)
    assert call(demo, "kv.get", {"key": "short"}) == {"found": False, "value": None}
    clock.advance(10)
    assert call(demo, "kv.get", {"key": "a"}) == {"found": True, "value": 2}
    assert call(demo, "kv.get", {"key": "window"}) == {"found": False, "value": None}


@pytest.mark.django_db
def test_ttl_expires_on_the_real_clock(demo: LoadedPlugin) -> None:
    """No seam: a 10 ms TTL has passed after a 20 ms sleep (only the "after" side is asserted)."""
    assert call(demo, "kv.set", {"key": "blink", "value": 1, "ttlSeconds": 0.01}) == {"ok": True}
    time.sleep(0.02)
    assert call(demo, "kv.get", {"key": "blink"}) == {"found": False, "value": None}


# --- quotas ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_incr_and_cas_are_under_the_key_quota(demo: LoadedPlugin, settings, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_KEYS": 2}
    assert call(demo, "kv.incr", {"key": "a"}) == {"value": 1}
    assert call(demo, "kv.cas", {"key": "b", "expected": None, "value": "x"}) == {"ok": True, "value": "x"}
    assert call(demo, "kv.incr", {"key": "c"}) == ERROR
    assert call(demo, "kv.cas", {"key": "c", "expected": None, "value": "x"}) == ERROR
    assert call(demo, "kv.incr", {"key": "a"}) == {"value": 2}  # existing keys still change
    # An expired key does not count against the quota.
    assert call(demo, "kv.set", {"key": "b", "value": "x", "ttlSeconds": 1}) == {"ok": True}
    clock.advance(1)
    assert call(demo, "kv.incr", {"key": "c"}) == {"value": 1}
    assert sorted(PluginKV.objects.filter(plugin_slug="demo").values_list("key", flat=True)) == ["a", "c"]


@pytest.mark.django_db
def test_incr_and_cas_are_under_the_byte_quotas(demo: LoadedPlugin, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_VALUE_BYTES": 10, "KV_MAX_TOTAL_BYTES": 12}
    assert call(demo, "kv.cas", {"key": "s", "expected": None, "value": "x" * 9}) == ERROR  # 11 bytes
    assert call(demo, "kv.cas", {"key": "s", "expected": None, "value": "x" * 8}) == \
        {"ok": True, "value": "x" * 8}
    assert call(demo, "kv.incr", {"key": "n", "by": 9}) == {"value": 9}  # 1 byte: 11 in all
    assert call(demo, "kv.incr", {"key": "n", "by": 90}) == {"value": 99}  # 2 bytes: 12 in all
    assert call(demo, "kv.incr", {"key": "n"}) == ERROR  # 100 would make 13 bytes
    assert call(demo, "kv.get", {"key": "n"}) == {"found": True, "value": 99}


# --- across processes -----------------------------------------------------------------------------

SLUG = "counter"


def _install(env: dict[str, str], workdir: Path) -> None:
    """Sign a hostcall_guest bundle granted ``kv``, trust its key and install it active, all
    through real commands and a real lifecycle process."""
    private, public = signing.generate_key()
    path = workdir / f"{SLUG}.gnplugin"
    path.write_bytes(bundle.sign(bundle.pack(make_manifest(slug=SLUG, capabilities=["kv"]),
                                             guest_wasm("hostcall_guest")), private))
    manage(env, "plugin", "trust-key", "kv publisher", public)
    actor = JsonProcess([sys.executable, str(PROCS / "lifecycle_actor.py")], env, "lifecycle")
    try:
        actor.expect(event="ready")
        actor.send(op="install", bundle=str(path), grant=["kv"], activate=True)
        assert actor.expect(event="done")["ok"] is True
    finally:
        actor.stop()


def _stored(env: dict[str, str], key: str) -> Any:
    done = manage(env, "shell", "-c", "import json; from gonext_plugins.models import PluginKV; "
                  f"print(json.dumps(PluginKV.objects.get(plugin_slug={SLUG!r}, key={key!r}).value))")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_races(database_url: str, workdir: Path) -> None:
    """4 processes x 250 kv.incr; 2 processes racing kv.cas on 50 keys; 2 x 100 cas increments."""
    (workdir / "media").mkdir()
    # Atomicity is under test, not latency: a call waiting its turn for the write lock (SQLite's busy
    # handler sleeps and retries, unfairly) on a loaded machine must not hit the 1 s hard deadline.
    env = {**base_env(database_url, workdir / "media"), "GONEXT_HARD_TIMEOUT_MS": "60000"}
    manage(env, "migrate", "--noinput", "-v0")
    _install(env, workdir)
    actors = [JsonProcess([sys.executable, str(PROCS / "kv_actor.py"), SLUG], env, f"kv actor {n}")
              for n in range(4)]
    try:
        for actor in actors:
            actor.expect(event="ready")
            actor.send(op="load")  # load and compile first, so the race is only the calls
            assert actor.expect(event="done", timeout=60)["ok"] is True

        def each(group: list[JsonProcess], make: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
            for n, actor in enumerate(group):  # all sent before any answer is read: they overlap
                actor.send(**make(n))
            answers = [actor.expect(event="done", timeout=300) for actor in group]
            assert all(answer["ok"] for answer in answers), answers
            return answers

        values = [v for a in each(actors, lambda n: {"op": "incr", "key": "views", "times": 250})
                  for v in a["values"]]
        assert sorted(values, key=str) == sorted(range(1, 1001), key=str), \
            [v for v in values if not isinstance(v, int)][:5]  # every value handed out exactly once
        assert _stored(env, "views") == 1000

        results = each(actors[:2],
                       lambda n: {"op": "cas_race", "prefix": "lock", "rounds": 50, "me": f"p{n}"})
        for first, second in zip(results[0]["results"], results[1]["results"], strict=True):
            assert [first["ok"], second["ok"]].count(True) == 1, (first, second)  # one winner per key
            assert first["value"] == second["value"]  # and both see the winner's value

        each(actors[2:], lambda n: {"op": "cas_count", "key": "cas", "times": 100})
        assert _stored(env, "cas") == 200
    finally:
        for actor in actors:
            actor.stop()


@pytest.mark.slow
def test_incr_and_cas_are_atomic_across_processes_on_sqlite(tmp_path: Path) -> None:
    run_races(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path)


@pytest.mark.slow
def test_incr_and_cas_are_atomic_across_processes_on_postgresql(  # type: ignore[no-untyped-def]
        postgres_url: str, tmp_path: Path) -> None:  # noqa: F811  (the fixture imported above)
    run_races(postgres_url, tmp_path)
