"""The batching writer of plugin log lines, and this process's one instance of it (:data:`writer`).

Every line becomes one record ``{time, plugin, version, level, message, source}``. The sink
(:class:`~.sink.Sink`, which :class:`LogWriter` extends) only rate-limits and queues; everything slow
happens on one background writer thread: batched inserts into
:class:`~gonext_plugins.models.PluginLogEntry` (trimmed to the last ``LOG_BACKLOG`` lines per
plugin), the sink's "N lines dropped" lines, and fan-out to the Channels groups (:mod:`.fanout`).

The writer starts its thread on the first line queued unless ``writer.auto_start`` is False. A test
suite sets it False (its thread's own database connection would fight each test's transaction) and
drains the queue with :func:`flush`, which does the same work synchronously in the calling thread;
``writer.start()`` starts the thread anyway.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.dispatch import receiver

from ..models import PluginLogEntry
from ..runtime import levels
from ..storable import storable_text
from .fanout import ChannelFanOut
from .sink import Line, Sink

logger = logging.getLogger("gonext_plugins.plugin")

BATCH_MAX = 1_000
"""Lines per database insert."""

WRITER_INTERVAL = 0.05
"""Longest a queued line waits for the writer (it is also woken at once when the queue fills up)."""


class LogWriter(Sink):
    """The sink's queue and rate limiter, plus the background writer thread of this process."""

    def __init__(self) -> None:
        super().__init__()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._drain_lock = threading.Lock()  # one drainer at a time (the thread or flush())
        self.fan_out = ChannelFanOut()
        self.auto_start = True
        self.written = 0  # lines stored, for tests and the benchmark

    @property
    def consumer_loop(self) -> asyncio.AbstractEventLoop | None:
        """The consumers' event loop (set by them; the in-memory layer's queues live there)."""
        return self.fan_out.consumer_loop

    @consumer_loop.setter
    def consumer_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.fan_out.consumer_loop = loop

    def reset(self) -> None:
        with self._drain_lock:
            super().reset()

    def _kick(self) -> None:
        if self._thread is None:
            if self.auto_start:
                self.start()
        elif not self._wake.is_set() and len(self.queue) >= BATCH_MAX:
            self._wake.set()

    # --- the writer thread -----------------------------------------------------------------

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
        self.fan_out.close()

    # --- draining --------------------------------------------------------------------------

    def drain(self, *, force_report: bool = False) -> int:
        """Write and fan out everything queued now, plus due drop reports. Returns lines handled."""
        with self._drain_lock:
            handled = 0
            while True:
                batch = self._take(BATCH_MAX)
                batch.extend(self.drop_reports(force_report and not self.queue))
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
        self.fan_out.send(by_plugin, own_loop=threading.current_thread() is self._thread)

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

    # --- tests and shutdown ----------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Write and send every queued line and pending drop report now, in this thread (or wait for
        the writer thread to finish its batch). True when the queue is empty afterwards."""
        if not self._drain_lock.acquire(timeout=timeout):
            return False
        self._drain_lock.release()
        self.drain(force_report=True)
        return not self.queue


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


runtime_log_sink = writer.submit
"""The runtime's ``log_sink``: one line from a guest (``source="guest"``) or the host, as
``(plugin, level, message, source)``. Called inside the guest call, so it only rate-limits and
queues. The writer's own method, not a function around it: a guest logging in a loop calls it once
a line, and a wrapper's frame was a sixth of what a dropped line cost."""


def log_event(plugin: str, level: int, message: str, *, version: str | None = None) -> None:
    """A host event about a plugin (activation, fault, job start and end): one line in its log."""
    writer.event(plugin, level, message, version)


def flush(timeout: float = 5.0) -> bool:
    """Store and send everything queued (tests; shutdown)."""
    return writer.flush(timeout)


@receiver(setting_changed, dispatch_uid="gonext_logs_settings")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("GONEXT_PLUGINS", "CACHES"):
        writer._config = None
        writer._shared = False
        writer.buckets.clear()


def _shutdown() -> None:
    """At exit: write what is queued (a server's last lines), then stop the thread."""
    if writer._thread is not None:
        writer.stop(timeout=5.0)


atexit.register(_shutdown)
