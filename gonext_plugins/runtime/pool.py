"""A bounded pool of instances of one plugin.

Checkout hands an idle instance to exactly one thread (stores are not thread-safe), creating one
when fewer than ``max_instances`` exist, and otherwise waits up to ``checkout_timeout_ms``. Checkin
returns it, or throws it away when it trapped or reached ``max_uses``; idle instances beyond
``min_instances`` are evicted after ``idle_seconds``. ``close`` refuses new checkouts, waits for
the ones out to come back, then drops everything.

Checkout of an idle instance takes no lock: ``list.pop()`` is atomic, so one instance goes to one
thread, and every other place that takes instances off the idle list does it by ``pop``/``remove``
too (never by replacing the list), so nothing is handed out twice. The count of instances out is
derived (``total - idle - filling``) instead of kept, and the checkout figures are recorded at
checkin, under the lock it takes anyway: a call takes the lock once, not twice.

Checkin takes no lock either (``list.append`` is atomic too; the figures go to
:meth:`PluginStats.record_checkin`, which never waits). A thread that keeps the GIL through its
guest calls (``runtime.gil``) can be switched out by the interpreter while it holds a lock; the
other thread blocking on it at its own checkin handed the GIL back, after which the two handed it
to each other at every call (two threads on one plugin ran at 0.4x of one). Waiters and ``close``
are told through the lock; :meth:`InstancePool._given_back` says why that is safe.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from gonext_plugins.errors import PluginClosed, PoolTimeout
from gonext_plugins.runtime.instance import PluginInstance
from gonext_plugins.runtime.limits import Limits
from gonext_plugins.runtime.metrics import PluginMetrics

MEMORY_SAMPLE_EVERY = 8
"""An instance's memory size is read at every 8th of its calls (and at its discard): see checkin."""


class InstancePool:
    def __init__(self, name: str, factory: Callable[[], PluginInstance], limits: Limits,
                 metrics: PluginMetrics) -> None:
        self.name = name
        self._factory = factory
        self._limits = limits
        self._metrics = metrics
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle: list[PluginInstance] = []  # a stack: the warmest instance is reused first
        self._total = 0  # idle + in use + being created
        self._filling = 0  # being created by fill(), so neither idle nor in use
        self._closed = False
        self._waiters = 0  # threads blocked in checkout; checkin notifies only when there are some
        self._stats = metrics.stats
        self._max_uses = limits.max_uses
        metrics.bind_pool(self, lambda: float(self._total), lambda: float(self.in_use))

    @property
    def size(self) -> int:
        return self._total

    @property
    def in_use(self) -> int:
        """Checked out, or being created for a checkout."""
        return self._total - len(self._idle) - self._filling

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    def fill(self) -> None:
        """Create instances up to ``min_instances`` (at load; errors propagate)."""
        while True:
            with self._cond:
                if self._closed or self._total >= self._limits.min_instances:
                    return
                self._total += 1
                self._filling += 1
            self._create_idle()

    def checkout(self) -> PluginInstance:
        try:
            inst = self._idle.pop()  # the fast path: atomic, no lock, no clock
        except IndexError:
            return self._checkout_slow()
        if self._closed:  # close() began before our pop: drop it, as close() would have
            with self._cond:
                self._total -= 1
                self._cond.notify_all()
            self._metrics.recycle("closed")
            self._metrics.checkout_errors.inc()
            raise PluginClosed("plugin is closed", plugin=self.name)
        inst.waited = 0.0
        return inst

    def _checkout_slow(self) -> PluginInstance:
        """Wait for an idle instance, or create one while under ``max_instances``."""
        inst: PluginInstance | None  # None: a slot was reserved, the instance is made outside the lock
        metrics = self._metrics
        start = time.monotonic()
        deadline = start + self._limits.checkout_timeout_ms / 1000
        with self._cond:
            while True:
                if self._closed:
                    metrics.checkout_errors.inc()
                    raise PluginClosed("plugin is closed", plugin=self.name)
                try:
                    inst = self._idle.pop()
                    break
                except IndexError:
                    pass
                if self._total < self._limits.max_instances:
                    self._total += 1
                    inst = None
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    metrics.checkout_errors.inc()
                    raise PoolTimeout(f"no instance free within {self._limits.checkout_timeout_ms} ms "
                                      f"(max_instances={self._limits.max_instances})", plugin=self.name)
                self._waiters += 1
                try:
                    try:  # once more, now counted: a checkin (no lock) reads the count after it
                        inst = self._idle.pop()  # puts its instance back (_given_back)
                        break
                    except IndexError:
                        pass
                    self._cond.wait(remaining)
                finally:
                    self._waiters -= 1
        if inst is None:
            try:
                inst = self._factory()
            except BaseException:
                with self._cond:
                    self._total -= 1
                    self._cond.notify()
                metrics.checkout_errors.inc()
                raise
        inst.waited = time.monotonic() - start
        return inst

    def checkin(self, inst: PluginInstance, discard: str | None = None, kind: str | None = None,
                seconds: float = 0.0, fuel: int = 0) -> None:
        """Give ``inst`` back; ``discard`` names why it must not be reused (e.g. ``"trap"``).

        ``kind``/``seconds``/``fuel`` record the call just made (with, now and then, the instance's
        memory size, for the plugin's peak), and the checkout's own figures are recorded here too.
        """
        uses = inst.uses = inst.uses + 1
        if discard is None and uses >= self._max_uses:
            discard = "max_uses"
        # The memory size is a C call (~0.5 µs, 6% of a small hook call), so it is read at an
        # instance's 1st, 9th, 17th... call and when it is thrown away: memory only grows, so the
        # plugin's peak is at most MEMORY_SAMPLE_EVERY calls of one instance late, never more than it was.
        sample = discard is not None or uses % MEMORY_SAMPLE_EVERY == 1
        memory = inst.dispatcher.memory_bytes() if kind is not None and sample else 0
        self._stats.record_checkin((memory, inst.waited, kind, seconds, fuel))
        if discard is None and not self._closed:
            inst.last_used = time.monotonic()
            self._idle.append(inst)  # lock-free; _given_back only when someone must be told
            if self._closed or self._waiters:
                self._given_back(inst)
            return
        with self._lock:
            self._total -= 1
            self._cond.notify_all()
            refill = not self._closed and self._total < self._limits.min_instances
        self._metrics.recycle(discard or "closed")
        if refill:
            with contextlib.suppress(Exception):  # the next checkout retries and reports it
                self.fill()

    def _given_back(self, inst: PluginInstance) -> None:
        """After ``checkin`` put ``inst`` back on the idle list without taking the lock: tell a
        waiter, or undo it when the pool closed meanwhile.

        A waiter counts itself (``_waiters``) and then looks at the idle list once more before it
        waits, and ``close`` sets ``_closed`` before it empties the list; ``checkin`` puts the
        instance on the list *before* it reads those two. So either a waiter's last look finds the
        instance, or checkin reads its count and wakes it here; either ``close`` takes the instance
        off the list, or this sees ``_closed`` and does so itself (``remove`` is atomic: never both)."""
        if self._closed:
            try:
                self._idle.remove(inst)
            except ValueError:
                pass  # close() took it and counts it
            else:
                with self._cond:
                    self._total -= 1
                    self._cond.notify_all()
                self._metrics.recycle("closed")
                return
        if self._waiters or self._closed:
            with self._cond:
                self._cond.notify_all()

    def evict_idle(self, now: float | None = None) -> int:
        """Drop instances idle for ``idle_seconds``, down to ``min_instances``; returns how many."""
        now = time.monotonic() if now is None else now
        cutoff = now - self._limits.idle_seconds
        evicted: list[PluginInstance] = []
        with self._cond:
            # Oldest first: the stack's bottom has waited longest. remove() is atomic, like the
            # lock-free pop in checkout: an instance taken meanwhile is simply not evicted.
            for inst in list(self._idle):
                if inst.last_used < cutoff and self._total > self._limits.min_instances:
                    try:
                        self._idle.remove(inst)
                    except ValueError:
                        continue
                    self._total -= 1
                    evicted.append(inst)
        for _ in evicted:
            self._metrics.recycle("idle")
        return len(evicted)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new checkouts, wait for in-flight ones, drop all. False if the wait timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self.in_use:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            drained = self.in_use == 0
            idle: list[PluginInstance] = []
            while True:  # pop, never swap the list: a lock-free checkout may be popping it too
                try:
                    idle.append(self._idle.pop())
                except IndexError:
                    break
            self._total -= len(idle)
        for _ in idle:
            self._metrics.recycle("closed")
        self._metrics.unbind_pool(self)
        return drained

    def _create_idle(self) -> None:
        try:
            inst = self._factory()
        except BaseException:
            with self._cond:
                self._total -= 1
                self._filling -= 1
                self._cond.notify()
            raise
        inst.last_used = time.monotonic()
        with self._cond:
            self._filling -= 1
            if self._closed:
                self._total -= 1
                self._cond.notify_all()
                return
            self._idle.append(inst)
            self._cond.notify()
