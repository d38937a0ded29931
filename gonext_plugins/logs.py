"""Plugin log lines: where ``gn_log`` and the host's own events about a plugin go.

Every line becomes one record ``{time, plugin, version, level, message, source}``. The runtime
calls :func:`runtime_log_sink` from inside a guest call, so the sink does as little as it can: a
per-plugin token bucket (``LOG_RATE`` lines/s, ``LOG_BURST`` burst), a length cap and an append to a
bounded in-memory queue. Everything slow happens on one background writer thread: batched inserts
into :class:`~gonext_plugins.models.PluginLogEntry` (trimmed to the last ``LOG_BACKLOG`` lines per
plugin), one "N lines dropped" line per plugin and report period, and fan-out to the Channels group
``gonext-logs.<slug>`` that :class:`~gonext_plugins.consumers.PluginLogConsumer` listens on.

Memory stays bounded under a flood: the rate limit drops most lines before they are queued, and
the queue itself holds at most :data:`QUEUE_MAX` lines (messages at most ``LOG_MAX_MESSAGE_BYTES``).

The writer starts its thread on the first line queued unless ``writer.auto_start`` is False. A test
suite sets it False (its thread's own database connection would fight each test's transaction) and
drains the queue with :func:`flush`, which does the same work synchronously in the calling thread;
``writer.start()`` starts the thread anyway.

The backlog is read through :func:`backlog` alone (the WebSocket consumer and the API's log
endpoint), and the version a line is tagged with comes from :data:`version_source`, which the
registry's owner fills in ``AppConfig.ready`` (this module sits beside the registry and does not
import it).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver

from .conf import settings
from .models import PluginLogEntry
from .runtime import levels
from .runtime.levels import DEBUG, ERROR, INFO, WARNING
from .signals import (
    plugin_activated,
    plugin_deactivated,
    plugin_faulted,
    plugin_installed,
    plugin_quarantined,
    plugin_upgraded,
)
from .storable import storable_text

logger = logging.getLogger("gonext_plugins.plugin")

__all__ = ["DEBUG", "ERROR", "INFO", "LEVEL_NAMES", "WARNING", "LogWriter", "backlog", "clean_message",
           "flush", "group_name", "last_line_id", "log_event", "record_fault", "runtime_log_sink",
           "version_source", "writer"]

LEVEL_NAMES = levels.NAMES

QUEUE_MAX = 20_000
"""Lines waiting for the writer, across plugins. Past it lines are dropped (and counted), so a
stalled database cannot make a flood grow memory without bound."""

BATCH_MAX = 1_000
"""Lines per database insert."""

SEND_MAX = 200
"""Lines per channel-layer message (keeps each message small for channels-redis)."""

REPORT_INTERVAL = 1.0
"""Seconds between two "N lines dropped" lines of one plugin during a sustained flood."""

WRITER_INTERVAL = 0.05
"""Longest a queued line waits for the writer (it is also woken at once when the queue fills up)."""

GROUP_PREFIX = "gonext-logs."

# A queued line: (unix time, plugin, version, level, message, source, dropped count).
Line = tuple[float, str, str, int, str, str, int]


def group_name(slug: str) -> str:
    """The Channels group of one plugin's log (slugs are already group-name safe)."""
    return GROUP_PREFIX + slug


class _Bucket:
    """Token bucket and drop counter of one plugin. Its lock is never contended for long: it only
    guards a few float operations, so the guest call never waits on the writer."""

    __slots__ = ("dropped", "last", "lock", "reported_at", "tokens", "total_dropped")

    def __init__(self, burst: float) -> None:
        self.tokens = burst
        self.last = time.monotonic()
        self.dropped = 0  # since the last report
        self.total_dropped = 0  # since the process started (benchmarks, metrics)
        self.reported_at = 0.0
        self.lock = threading.Lock()


class LogWriter:
    """The sink's queue, the rate limiter and the background writer thread of this process."""

    def __init__(self) -> None:
        self.queue: deque[Line] = deque()
        self.buckets: dict[str, _Bucket] = {}
        self._buckets_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._drain_lock = threading.Lock()  # one drainer at a time (the thread or flush())
        self._config: tuple[float, float, int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's own, for channels-redis
        self.consumer_loop: asyncio.AbstractEventLoop | None = None  # set by consumers (in-memory layer)
        self.auto_start = True
        self.written = 0  # lines stored, for tests and the benchmark
        self.sent = 0  # channel-layer messages sent

    # --- configuration ---------------------------------------------------------------------

    def config(self) -> tuple[float, float, int, int]:
        """(rate, burst, max message chars, backlog), read once and re-read on setting changes."""
        cfg = self._config
        if cfg is None:
            cfg = self._config = (float(settings.LOG_RATE), float(settings.LOG_BURST),
                                  int(settings.LOG_MAX_MESSAGE_BYTES), int(settings.LOG_BACKLOG))
        return cfg

    def reset(self) -> None:
        """Forget buckets, queued lines and cached settings (tests, after ``override_settings``)."""
        with self._drain_lock:
            self.queue.clear()
            self.buckets.clear()
            self._config = None

    # --- the hot path ----------------------------------------------------------------------

    def _bucket(self, plugin: str) -> _Bucket:
        bucket = self.buckets.get(plugin)
        if bucket is None:
            with self._buckets_lock:
                bucket = self.buckets.setdefault(plugin, _Bucket(self.config()[1]))
        return bucket

    def submit(self, plugin: str, level: int, message: str, source: str, version: str | None = None) -> bool:
        """Queue one rate-limited line; False when it was dropped (and counted). Never blocks on I/O."""
        rate, burst, max_chars, _ = self._config or self.config()
        bucket = self.buckets.get(plugin) or self._bucket(plugin)
        with bucket.lock:
            now = time.monotonic()
            tokens = bucket.tokens + (now - bucket.last) * rate
            bucket.last = now
            if tokens > burst:
                tokens = burst
            if tokens < 1.0 or len(self.queue) >= QUEUE_MAX:
                bucket.tokens = tokens
                bucket.dropped += 1
                bucket.total_dropped += 1
                return False
            bucket.tokens = tokens - 1.0
        if len(message) > max_chars:  # bytes are cut exactly by the writer; this bounds memory
            message = message[:max_chars]
        if version is None:
            version = _version_of(plugin)
        self.queue.append((time.time(), plugin, version, level, message, source, 0))
        self._kick()
        return True

    def event(self, plugin: str, level: int, message: str, version: str | None = None) -> None:
        """Queue a host event about a plugin (activated, trap, ...): rare, so not rate limited."""
        if version is None:
            version = _version_of(plugin)
        self.queue.append((time.time(), plugin, version, level, message, "host", 0))
        self._kick()

    def _kick(self) -> None:
        if self._thread is None:
            self._maybe_start()
        elif not self._wake.is_set() and len(self.queue) >= BATCH_MAX:
            self._wake.set()

    # --- the writer thread -----------------------------------------------------------------

    def _maybe_start(self) -> None:
        if self.auto_start:
            self.start()

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        with self._buckets_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="gonext-log-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the thread (at exit)."""
        thread = self._thread
        if thread is None:
            return
        self._stop = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(WRITER_INTERVAL)
            self._wake.clear()
            try:
                self.drain(force_report=self._stop)
            except Exception:  # the writer must survive a database hiccup
                logger.exception("plugin log writer failed; lines of this batch are lost")
            finally:
                with contextlib.suppress(Exception):
                    connection.close()  # never hold a connection (or a SQLite lock) between batches
            if self._stop and not self.queue:
                break
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    # --- draining --------------------------------------------------------------------------

    def drain(self, *, force_report: bool = False) -> int:
        """Write and fan out everything queued now, plus due drop reports. Returns lines handled."""
        with self._drain_lock:
            handled = 0
            while True:
                batch = self._take(BATCH_MAX)
                batch.extend(self._reports(force_report and not self.queue))
                if not batch:
                    return handled
                self._write(batch)
                handled += len(batch)

    def _take(self, limit: int) -> list[Line]:
        batch: list[Line] = []
        popleft = self.queue.popleft
        with contextlib.suppress(IndexError):
            while len(batch) < limit:
                batch.append(popleft())
        return batch

    def _reports(self, force: bool) -> list[Line]:
        """One "N lines dropped" line per plugin that dropped some, at most once per period."""
        now = time.monotonic()
        lines: list[Line] = []
        for plugin, bucket in list(self.buckets.items()):
            if not bucket.dropped or (not force and now - bucket.reported_at < REPORT_INTERVAL):
                continue
            with bucket.lock:
                dropped, bucket.dropped = bucket.dropped, 0
            bucket.reported_at = now
            noun = "line" if dropped == 1 else "lines"
            lines.append((time.time(), plugin, _version_of(plugin), WARNING,
                          f"{dropped} {noun} dropped: over the log rate limit", "host", dropped))
        return lines

    def _write(self, batch: list[Line]) -> None:
        _, _, max_bytes, backlog = self.config()
        entries = [
            PluginLogEntry(time=datetime.fromtimestamp(ts, UTC), plugin=plugin[:64], version=version[:64],
                           level=levels.clamp(level),
                           message=clean_message(message, max_bytes), source=source[:10], dropped=dropped)
            for ts, plugin, version, level, message, source, dropped in batch
        ]
        stored = self._store(entries)
        if stored:
            self.written += len(stored)
            self._trim({e.plugin for e in stored}, backlog)
        by_plugin: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_plugin.setdefault(entry.plugin, []).append(entry.as_record())
        self._fan_out(by_plugin)

    def _store(self, entries: list[PluginLogEntry]) -> list[PluginLogEntry]:
        """Insert the batch in one statement; if the database refuses it, insert line by line, so
        one line it cannot store never costs the other lines of the batch (other plugins' lines and
        host events included). Returns the entries stored."""
        try:
            with transaction.atomic():
                return PluginLogEntry.objects.bulk_create(entries)
        except DatabaseError:
            logger.warning("could not store a batch of %d plugin log lines; storing them one by one",
                           len(entries), exc_info=True)
        stored = []
        for entry in entries:
            entry.pk = None
            try:
                with transaction.atomic():
                    entry.save(force_insert=True)
            except DatabaseError:
                logger.exception("could not store a log line of plugin %s; the line is lost", entry.plugin)
            else:
                stored.append(entry)
        return stored

    def _trim(self, plugins: Iterable[str], backlog: int) -> None:
        """Keep the newest ``backlog`` lines of each plugin; trims only once 10% over, in one delete."""
        slack = max(backlog // 10, 50)
        for plugin in plugins:
            rows = PluginLogEntry.objects.filter(plugin=plugin).order_by("-id")
            cutoff = rows.values_list("id", flat=True)[backlog + slack:backlog + slack + 1]
            if cutoff:
                first_kept = rows.values_list("id", flat=True)[backlog - 1:backlog][0]
                PluginLogEntry.objects.filter(plugin=plugin, id__lt=first_kept).delete()

    def _fan_out(self, by_plugin: dict[str, list[dict[str, Any]]]) -> None:
        layer = get_channel_layer()
        if layer is None or not by_plugin:
            return

        async def send_all() -> None:
            for plugin, records in by_plugin.items():
                for start in range(0, len(records), SEND_MAX):
                    await layer.group_send(group_name(plugin),
                                           {"type": "log.lines", "lines": records[start:start + SEND_MAX]})
                    self.sent += 1

        try:
            self._run_async(send_all)
        except Exception:
            logger.exception("could not send plugin log lines to the channel layer")

    def _run_async(self, make_coro: Any) -> None:
        """Run a channel-layer coroutine from this (sync) thread. The in-memory layer's queues belong
        to the consumers' event loop, so when one is running the coroutine goes there; otherwise
        (channels-redis in a worker process) the writer keeps one loop of its own, so the redis
        connection pool is reused across batches instead of rebuilt per ``async_to_sync`` call."""
        loop = self.consumer_loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            asyncio.run_coroutine_threadsafe(make_coro(), loop).result(timeout=10)
            return
        if threading.current_thread() is self._thread:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(make_coro())
            return
        async_to_sync(make_coro)()

    # --- tests and shutdown ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Write and send every queued line and pending drop report now, in this thread (or wait for
        the writer thread to finish its batch). True when the queue is empty afterwards."""
        if not self._drain_lock.acquire(timeout=timeout):
            return False
        self._drain_lock.release()
        self.drain(force_report=True)
        return not self.queue


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _not_loaded(plugin: str) -> str:
    return ""


version_source: Callable[[str], str] = _not_loaded
"""``version_source(slug)``: the version this process runs of a plugin ("" when not loaded here).
A hook, not an import of the registry (which logs through this module): ``AppConfig.ready`` sets it
to the registry's answer."""


def _version_of(plugin: str) -> str:
    return version_source(plugin)


def clean_message(message: str | bytes, max_bytes: int) -> str:
    """Valid UTF-8 of at most ``max_bytes`` bytes, cut on a character boundary, and storable on
    every database (``storable``'s rule: NUL shown as ``\\x00``, invalid bytes and lone surrogates
    replaced), so the live page shows exactly what the backlog keeps."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    raw = storable_text(text).encode("utf-8")  # escaped first: escaping lengthens the text
    if len(raw) > max_bytes:
        return raw[:max_bytes].decode("utf-8", "ignore")
    return raw.decode("utf-8")


writer = LogWriter()


def runtime_log_sink(plugin: str, level: int, message: str, source: str) -> None:
    """The runtime's ``log_sink``: one line from a guest (``source="guest"``) or the host. Called
    inside the guest call, so it only rate-limits and queues."""
    writer.submit(plugin, level, message, source)


def log_event(plugin: str, level: int, message: str, *, version: str | None = None) -> None:
    """A host event about a plugin (activation, fault, job start and end): one line in its log."""
    writer.event(plugin, level, message, version)


def flush(timeout: float = 5.0) -> bool:
    """Store and send everything queued (tests; shutdown)."""
    return writer.flush(timeout)


# --- reading the backlog --------------------------------------------------------------------------


def backlog(slug: str, *, limit: int, min_level: int = DEBUG, after_id: int | None = None,
            since: datetime | None = None, text: str = "") -> list[PluginLogEntry]:
    """Stored lines of one plugin, oldest first: the first ``limit`` lines after line ``after_id``
    (tailing), or else the newest ``limit`` lines (at or after ``since`` when given). ``min_level``
    and ``text`` (already casefolded; matched like the live page matches, after the database
    narrowed the lines) filter them. The one backlog query of the WebSocket consumer and the API."""
    rows = PluginLogEntry.objects.filter(plugin=slug)
    if min_level:
        rows = rows.filter(level__gte=min_level)
    if text:
        rows = rows.filter(message__icontains=text)
    if after_id is not None:
        lines = list(rows.filter(id__gt=after_id).order_by("id")[:limit])
    else:
        if since is not None:
            rows = rows.filter(time__gte=since)
        lines = list(reversed(rows.order_by("-id")[:limit]))
    if text:
        lines = [line for line in lines if text in line.message.casefold()]
    return lines


def last_line_id(slug: str) -> int:
    """The id of the newest stored line of one plugin (0 when it has none), whatever its level."""
    newest = PluginLogEntry.objects.filter(plugin=slug).order_by("-id").values_list("id", flat=True)
    return newest.first() or 0


def record_fault(slug: str, kind: str, message: str, *, version: str = "", hook: str = "",
                 guest_message: str = "", report: dict[str, Any] | None = None) -> None:
    """The log line of a trap, timeout or bad result (called where faults are recorded); with a
    trap report, one more line per wasm frame: ``#0 function @0x1f2  main.zig:27:23``."""
    where = f" in {hook}" if hook else ""
    text = f"{kind}{where}: {message}"
    if guest_message and guest_message not in message:
        text += f" (guest: {guest_message})"
    for number, frame in enumerate((report or {}).get("frames") or []):
        offset = frame.get("module_offset")
        at = f" @{offset:#x}" if isinstance(offset, int) else ""
        text += f"\n  #{number} {frame.get('function')}{at}  {frame.get('location')}"
    log_event(slug, ERROR, text, version=version or None)


# --- host events from lifecycle signals -----------------------------------------------------------


def _actor_label(actor: Any) -> str:
    if actor is None:
        return ""
    label = getattr(actor, "get_username", None)
    return f" by {label() if callable(label) else actor}"


@receiver(plugin_activated, dispatch_uid="gonext_logs_activated")
def _on_activated(sender: Any, plugin: Any, version: Any = None, actor: Any = None, **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"activated version {number}{_actor_label(actor)}", version=number)


@receiver(plugin_deactivated, dispatch_uid="gonext_logs_deactivated")
def _on_deactivated(sender: Any, plugin: Any, version: Any = None, actor: Any = None, **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"deactivated{_actor_label(actor)}", version=number)


@receiver(plugin_quarantined, dispatch_uid="gonext_logs_quarantined")
def _on_quarantined(sender: Any, plugin: Any, version: Any = None, details: Any = None,
                    **kwargs: Any) -> None:
    number = getattr(version, "version", "") or ""
    reason = (details or {}).get("reason") or plugin.state_reason
    log_event(plugin.slug, ERROR, f"quarantined: {reason}", version=number)


@receiver(plugin_faulted, dispatch_uid="gonext_logs_faulted")
def _on_faulted(sender: Any, slug: str, kind: str, message: str, version: str = "", hook: str = "",
                guest_message: str = "", report: dict[str, Any] | None = None, **kwargs: Any) -> None:
    record_fault(slug, kind, message, version=version, hook=hook, guest_message=guest_message,
                 report=report)


@receiver(plugin_installed, dispatch_uid="gonext_logs_dev_installed")
@receiver(plugin_upgraded, dispatch_uid="gonext_logs_dev_upgraded")
def _on_dev_build(sender: Any, plugin: Any, version: Any = None, details: Any = None,
                  **kwargs: Any) -> None:
    details = details or {}
    if not details.get("dev"):
        return
    number = getattr(version, "version", "") or ""
    log_event(plugin.slug, INFO, f"dev build {number} installed ({details.get('status')})", version=number)


@receiver(setting_changed, dispatch_uid="gonext_logs_settings")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "GONEXT_PLUGINS":
        writer._config = None
        writer.buckets.clear()


def _shutdown() -> None:
    """At exit: write what is queued (a server's last lines), then stop the thread."""
    if writer._thread is not None:
        writer.stop(timeout=5.0)


atexit.register(_shutdown)
