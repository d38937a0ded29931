"""Plugin logs: the sink, the rate limit, the writer, host events and the log page, through real
wasmtime guests and the real database. The writer runs synchronously here (``logs.flush``): the
suite turns its thread off (``tests/conftest.py``); one test starts the real background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, TestCase

from gonext_plugins import lifecycle, logs
from gonext_plugins.models import PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry

from .conftest import guest_wasm

# Real commits only for the test of the background writer (a thread with its own connection); the
# lifecycle's on-commit log events run through captured on-commit callbacks elsewhere.
pytestmark = pytest.mark.django_db

HOOKS = [
    {"name": "flood", "kind": "action"},
    {"name": "levels", "kind": "action"},
    {"name": "crash", "kind": "action"},
    {"name": "the_content", "kind": "filter"},
]
CAPS = ["hooks.subscribe", "kv"]


@pytest.fixture(autouse=True)
def clean_writer() -> Iterator[logs.LogWriter]:
    """Nothing queued from earlier tests, settings re-read, no thread left behind."""
    logs.writer.stop()
    logs.writer.reset()
    yield logs.writer
    logs.writer.stop()
    logs.writer.reset()


def install_flood(make_bundle: Any, slug: str = "demo") -> LoadedPlugin:
    """The log_flood guest, installed, activated and loaded here."""
    bundle = make_bundle(wasm=guest_wasm("log_flood"), slug=slug, capabilities=CAPS, hooks=HOOKS)
    with TestCase.captureOnCommitCallbacks(execute=True):  # "activated ..." is logged on commit
        lifecycle.install(bundle, CAPS, "tests", activate=True)
    registry.sync(force=True)
    loaded = registry.get(slug)
    assert loaded is not None
    return loaded


def messages(slug: str = "demo", source: str | None = None) -> list[str]:
    rows = PluginLogEntry.objects.filter(plugin=slug).order_by("id")
    if source:
        rows = rows.filter(source=source)
    return list(rows.values_list("message", flat=True))


@pytest.fixture
def flood(make_bundle: Any) -> LoadedPlugin:
    return install_flood(make_bundle)


def test_guest_lines_become_records(flood: LoadedPlugin) -> None:
    flood.invoke("action", "levels")
    assert logs.flush()
    rows = list(PluginLogEntry.objects.filter(plugin="demo", source="guest").order_by("id"))
    assert [(r.level, r.message) for r in rows] == [
        (0, "debug line"), (1, "info line"), (2, "warning line"), (3, "error line")]
    record = rows[1].as_record()
    assert set(record) == {"id", "time", "plugin", "version", "level", "message", "source"}
    assert record["plugin"] == "demo" and record["version"] == "1.0.0" and record["source"] == "guest"


def test_activation_and_deactivation_are_logged(flood: LoadedPlugin,
                                                django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.deactivate("demo", "tests")
    logs.flush()
    assert messages(source="host") == ["activated version 1.0.0 by tests", "deactivated by tests"]


def test_a_trap_is_logged_with_the_guest_message(flood: LoadedPlugin, settings: Any) -> None:
    from gonext_plugins import hooks

    hooks.do_action("crash")  # the bridge passes the fault through; the registry records it
    logs.flush()
    [line] = PluginLogEntry.objects.filter(plugin="demo", level=logs.ERROR)
    assert line.source == "host" and line.version == "1.0.0"
    assert line.message.startswith("trap in crash: ") and "flood guest gave up" in line.message


def test_quarantine_is_logged(flood: LoadedPlugin, settings: Any,
                              django_capture_on_commit_callbacks: Any) -> None:
    from gonext_plugins import hooks

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "QUARANTINE_FAULTS": 2}
    with django_capture_on_commit_callbacks(execute=True):
        hooks.do_action("crash")
        hooks.do_action("crash")
    logs.flush()
    host = messages(source="host")
    assert sum(m.startswith("trap in crash") for m in host) == 2
    assert host[-1].startswith("quarantined: 2 faults in the last 60 s; last: trap")


def test_rate_limit_drops_and_reports_once(flood: LoadedPlugin, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 0.001, "LOG_BURST": 10}
    flood.invoke("action", "flood", 50)
    flood.invoke("action", "flood", 25)
    logs.flush()
    guest = messages(source="guest")
    assert guest == ["flood line"] * 10
    [report] = PluginLogEntry.objects.filter(plugin="demo", dropped__gt=0)
    assert report.dropped == 65 and report.level == logs.WARNING and report.source == "host"
    assert report.message == "65 lines dropped: over the log rate limit"
    assert report.as_record()["dropped"] == 65
    logs.flush()  # nothing new dropped: no second report
    assert PluginLogEntry.objects.filter(plugin="demo", dropped__gt=0).count() == 1


class CountingLock:
    """A real lock that counts how often it was taken: shows which lines took the bucket's lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_dry_bucket_drops_until_its_next_token_without_the_lock(settings: Any, monkeypatch: Any) -> None:
    """Past the burst a line is dropped without taking the bucket's lock until the moment the next
    token comes (``dry_until``), and the first line at that moment is kept: the shortcut never
    drops a line a token was there for. The sink's clock is set by hand."""
    from gonext_plugins.logs import sink

    now = [1000.0]
    monkeypatch.setattr(sink, "_monotonic", lambda: now[0])
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 10.0, "LOG_BURST": 2}
    submit = logs.writer.submit
    assert submit("demo", 1, "line 0", "guest") is True
    bucket = logs.writer.buckets["demo"]
    bucket.lock = lock = CountingLock()  # type: ignore[assignment]
    assert [submit("demo", 1, f"line {i}", "guest") for i in (1, 2)] == [True, False]
    assert lock.taken == 2 and bucket.dry_until == pytest.approx(1000.1)  # one token at 10/s
    now[0] = 1000.099
    assert [submit("demo", 1, "too soon", "guest") for _ in range(50)] == [False] * 50
    assert lock.taken == 2  # dropped without the lock
    now[0] = 1000.1
    assert submit("demo", 1, "kept", "guest") is True
    assert submit("demo", 1, "dry again", "guest") is False
    assert lock.taken == 4
    assert bucket.total_dropped == 52 and bucket.dropped == 52
    [report] = logs.writer.drop_reports(force=True)
    assert report[4] == "52 lines dropped: over the log rate limit" and report[6] == 52
    assert bucket.dropped == 0 and bucket.total_dropped == 52  # reported once, still in the total
    assert [line[4] for line in logs.writer.queue] == ["line 0", "line 1", "kept"]


def test_an_infinite_rate_keeps_every_line(settings: Any, monkeypatch: Any) -> None:
    """No time between two lines times an infinite rate is NaN tokens: a full bucket, not an empty
    one (the system check refuses such a rate; a coarse clock makes "no time" common)."""
    from gonext_plugins.logs import sink

    monkeypatch.setattr(sink, "_monotonic", lambda: 5.0)
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": float("inf"), "LOG_BURST": 5}
    assert [logs.writer.submit("demo", 1, "line", "guest") for _ in range(3)] == [True] * 3


def test_drops_are_counted_exactly_from_many_threads(settings: Any) -> None:
    """Eight threads flood one plugin while a ninth reads the count and makes the "N lines dropped"
    reports, as the writer and the metrics do: every line is queued or counted, each drop is
    reported once. (CPython 3.11's GIL happens to make ``+= 1`` on an attribute whole too, so this
    guards the promise, not the choice of ``itertools.count``.)"""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 0.001, "LOG_BURST": 100}
    kept = [0] * 8
    reported: list[int] = []
    done = threading.Event()

    def flood(slot: int) -> None:
        kept[slot] = sum(logs.writer.submit("demo", 1, "flood line", "guest") for _ in range(20_000))

    def report() -> None:
        while not done.is_set():
            reported.extend(line[6] for line in logs.writer.drop_reports(force=True))
            bucket = logs.writer.buckets.get("demo")
            assert bucket is None or bucket.dropped >= 0

    reader = threading.Thread(target=report)
    reader.start()
    threads = [threading.Thread(target=flood, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    reported.extend(line[6] for line in logs.writer.drop_reports(force=True))
    bucket = logs.writer.buckets["demo"]
    assert sum(kept) == 100 and sum(line[4] == "flood line" for line in logs.writer.queue) == 100
    assert bucket.total_dropped == sum(reported) == 8 * 20_000 - 100
    logs.writer.queue.clear()


def test_rate_limit_is_per_plugin(make_bundle: Any, settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 0.001, "LOG_BURST": 5}
    a = install_flood(make_bundle, "alpha")
    b = install_flood(make_bundle, "beta")
    a.invoke("action", "flood", 100)
    b.invoke("action", "flood", 3)
    logs.flush()
    assert messages("alpha", "guest") == ["flood line"] * 5
    assert messages("beta", "guest") == ["flood line"] * 3
    assert not PluginLogEntry.objects.filter(plugin="beta", dropped__gt=0).exists()


def test_tokens_refill_at_the_rate(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 200.0, "LOG_BURST": 1}
    assert logs.writer.submit("demo", 1, "one", "guest", version="1")
    assert not logs.writer.submit("demo", 1, "two", "guest", version="1")
    time.sleep(0.02)  # 200/s: one token back after 5 ms
    assert logs.writer.submit("demo", 1, "three", "guest", version="1")


def test_the_sink_never_touches_the_database(flood: LoadedPlugin, django_assert_num_queries: Any) -> None:
    before = len(logs.writer.queue)
    with django_assert_num_queries(0):
        flood.invoke("action", "flood", 500)
    assert len(logs.writer.queue) == before + 500


def test_messages_cut_at_4_kib_and_invalid_utf8_replaced() -> None:
    cap = 4096
    assert logs.clean_message(b"ok \xff\xfe bytes", cap) == "ok \ufffd\ufffd bytes"
    assert logs.clean_message("lone \udcff surrogate", cap) == "lone \ufffd surrogate"  # storable's rule
    cut = logs.clean_message("é" * 3000, cap)  # 6000 bytes: cut on a character boundary
    assert cut == "é" * 2048 and len(cut.encode()) == cap
    logs.runtime_log_sink("demo", 1, "x" * 1_000_000, "guest")
    logs.runtime_log_sink("demo", 1, "ü" * 3000, "guest")
    logs.flush()
    long, umlauts = messages()
    assert long == "x" * cap
    assert len(umlauts.encode()) <= cap and set(umlauts) == {"ü"}


def test_guest_log_of_a_huge_range_is_cut(make_bundle: Any) -> None:
    hooks = [{"name": "hugelog", "kind": "action"}, {"name": "badlog", "kind": "action"}]
    lifecycle.install(make_bundle(capabilities=CAPS, hooks=hooks), CAPS, "tests", activate=True)
    registry.sync(force=True)
    loaded = registry.get("demo")
    assert loaded is not None
    loaded.invoke("action", "hugelog")  # 100,000 bytes of guest memory from address 0
    loaded.invoke("action", "badlog")  # bad ranges: the host's own warnings, no guest line
    logs.flush()
    rows = list(PluginLogEntry.objects.filter(plugin="demo").exclude(message__startswith="activated"))
    assert len(rows[0].message.encode()) <= 4096 and rows[0].source == "guest"
    assert [r.source for r in rows[1:]] == ["host", "host"]
    assert "outside guest memory" in rows[1].message and "negative length" in rows[2].message


def test_backlog_is_trimmed_to_the_newest(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS,
                               "LOG_BACKLOG": 100, "LOG_RATE": 1e9, "LOG_BURST": 1e9}
    for i in range(1000):
        logs.runtime_log_sink("demo", 1, f"line {i}", "guest")
    logs.runtime_log_sink("other", 1, "keep me", "guest")
    logs.flush()
    assert messages() == [f"line {i}" for i in range(900, 1000)]
    assert messages("other") == ["keep me"]


def test_the_queue_stays_bounded_under_a_flood(settings: Any) -> None:
    """Nothing drains (no writer thread): the queue stops at QUEUE_MAX and counts the rest."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "LOG_RATE": 1e9, "LOG_BURST": 1e9}
    total = logs.QUEUE_MAX + 5_000
    for i in range(total):
        logs.runtime_log_sink(f"p{i % 50}", 1, "flood line", "guest")
    assert len(logs.writer.queue) == logs.QUEUE_MAX
    assert sum(b.dropped for b in logs.writer.buckets.values()) == 5_000
    logs.writer.queue.clear()  # do not write 20,000 rows in this test


@pytest.mark.django_db(transaction=True)  # the writer thread stores through its own connection
def test_the_background_writer_stores_and_stops(flood: LoadedPlugin) -> None:
    logs.writer.start()
    flood.invoke("action", "levels")
    deadline = time.monotonic() + 60  # only a failing run waits this long
    while len(messages(source="guest")) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert messages(source="guest") == ["debug line", "info line", "warning line", "error line"]
    flood.invoke("action", "flood", 3)
    logs.writer.stop()  # writes what is queued before the thread ends
    assert messages(source="guest")[-3:] == ["flood line"] * 3


# --- the page -------------------------------------------------------------------------------------


def staff(username: str = "watcher", *, perm: bool = True) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="view_plugin_logs"))
    return user


def test_log_page_for_staff_with_the_permission(flood: LoadedPlugin) -> None:
    client = Client()
    client.force_login(staff())
    response = client.get("/_/plugins/logs/demo/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-ws-path="/_/plugins/dev/logs/demo/"' in html
    assert "gonext_plugins/logs.js" in html and "Live log" in html
    assert "Django administration" in html  # the admin's frame


def test_log_page_refusals(flood: LoadedPlugin) -> None:
    client = Client()
    assert client.get("/_/plugins/logs/demo/").status_code == 302  # to the admin login
    client.force_login(staff("noperm", perm=False))
    assert client.get("/_/plugins/logs/demo/").status_code == 403
    client.force_login(staff())
    assert client.get("/_/plugins/logs/nope/").status_code == 404


def test_with_a_shared_budget_a_spent_window_drops_without_the_lock(settings: Any, monkeypatch: Any) -> None:
    """Once the cluster's budget for a window is spent (the shared counter refused a lease), the
    rest of that window's lines are dropped without the bucket's lock or the cache, and the next
    window leases again. A clock set back before the spent window drops nothing by shortcut. The
    shared cache is a real LocMem cache; the windows' wall clock is set by hand."""
    from gonext_plugins import cluster
    from gonext_plugins.logs import sink

    now = [1_000_050.0]  # inside window 10_000 of 100 s: [1_000_000, 1_000_100)
    monkeypatch.setattr(sink, "_wall", lambda: now[0])
    monkeypatch.setattr(cluster, "_wall", lambda: now[0])
    shared = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "test-log-budget"}
    settings.CACHES = {**settings.CACHES, "shared": shared}
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "SHARED_CACHE": "shared", "LOG_RATE": 1.0,
                               "LOG_BURST": 100}
    submit = logs.writer.submit
    kept = [submit("demo", 1, f"line {i}", "guest") for i in range(101)]
    assert kept == [True] * 100 + [False]  # the window's budget of 100, then a refused lease
    bucket = logs.writer.buckets["demo"]
    assert bucket.lease.dry == (1_000_000.0, 1_000_100.0)
    bucket.lock = lock = CountingLock()  # type: ignore[assignment]
    now[0] = 1_000_099.9
    assert [submit("demo", 1, "spent", "guest") for _ in range(50)] == [False] * 50
    assert lock.taken == 0 and bucket.total_dropped == 51
    now[0] = 999_000.0  # set back: not inside the spent window, so the locked path decides
    assert submit("demo", 1, "back in time", "guest") is True  # that window's own lease
    assert lock.taken > 0
    now[0] = 1_000_100.0  # the next window: a new lease
    assert submit("demo", 1, "next window", "guest") is True
    assert bucket.lease.dry == (0.0, 0.0)  # the spent window is no longer this lease's
    taken = lock.taken
    now[0] = 1_000_050.0  # set back into the spent window: its counter may have expired, so the
    submit("demo", 1, "back again", "guest")  # shared counter decides again, under the lock
    assert lock.taken > taken
    logs.writer.queue.clear()
