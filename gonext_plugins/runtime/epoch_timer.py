"""A native epoch ticker: a POSIX timer whose expirations call ``wasmtime_engine_increment_epoch``
from a thread that never touches Python.

Why: the hard deadline traps a guest when the engine's epoch passes the store's deadline, so
something must advance the epoch while guest code runs. A Python thread can only do that when it
holds the GIL; a guest called *with the GIL held* (the fast dispatcher's adaptive policy,
``gil_policy``) would then never be interrupted. glibc's ``timer_create`` with ``SIGEV_THREAD`` runs
the notify function on a native thread per expiration, passing ``sigev_value``; ``union sigval`` is
passed like a pointer in the SysV x86-64 and AAPCS64 calling conventions, so the notify function
can be ``wasmtime_engine_increment_epoch`` itself with the engine as the value. ctypes only, no C.

Lifetime: the timer ticks on its own *clone* of the engine handle (``wasmtime_engine_clone``: a new
``wasm_engine_t*`` sharing the engine), never on wasmtime-py's, so freeing the Python ``Engine`` can
never leave the timer pointing at freed memory. :meth:`EpochTimer.stop` deletes the timer first;
glibc may still have started a notify thread for an expiration just before, so the clone is freed
only :data:`RETIRE_GRACE_S` later (by a later start or stop in this process; one left over at exit
is left to the operating system, never freed while a thread might still use it).

A forked child inherits no POSIX timer, and must not create one: glibc's ``SIGEV_THREAD`` helper
takes a process-wide lock (``__timer_active_sigev_thread_lock``) each time it starts a notify
thread, every tick, and a fork at that moment leaves the child's copy locked for good; the child's
``timer_create`` then never returns (a test caught a forked child hanging there about once in 25
forks). So in a child of a process that ever started a timer, every timer is marked stopped
(``os.register_at_fork``), no new one is made (a runtime created later in the child ticks from
Python), and the runtimes from before the fork fall back to their Python ticker and to releasing
the GIL (``Runtime._after_fork_in_child``). A child of a process that never started one (a
server that forks its workers before any plugin loads) makes its own timers as usual.

Where any of this is missing (not Linux/glibc, no clone symbol, ``timer_create`` failing),
:meth:`EpochTimer.start` returns None and the runtime keeps advancing the epoch from Python.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
import weakref
from typing import Any

from wasmtime import Engine
from wasmtime import _ffi as _wffi

CLOCK_MONOTONIC = 1
SIGEV_THREAD = 2
RETIRE_GRACE_S = 2.0
"""How long a stopped timer's engine clone outlives it: far longer than glibc needs to run a notify
thread it had already created when ``timer_delete`` returned."""


class _SigevThread(ctypes.Structure):
    _fields_ = [("function", ctypes.c_void_p), ("attributes", ctypes.c_void_p)]


class _SigevUnion(ctypes.Union):
    _fields_ = [("pad", ctypes.c_int * 12), ("tid", ctypes.c_int), ("thread", _SigevThread)]


class _Sigevent(ctypes.Structure):
    """glibc's 64-byte ``struct sigevent`` on 64-bit targets (bits/types/sigevent_t.h)."""

    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("un", _SigevUnion)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


def _load_timer_api() -> tuple[tuple[Any, Any, Any], tuple[Any, Any, int]] | None:
    """``((timer_create, timer_settime, timer_delete), (wasmtime_engine_clone, wasm_engine_delete,
    address of wasmtime_engine_increment_epoch))`` bound with argtypes, or None where the layout
    above is not the platform's (not 64-bit Linux) or a symbol is missing."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    if ctypes.sizeof(_Sigevent) != 64 or _Sigevent.un.offset != 16:  # pragma: no cover - layout guard
        return None
    for name in (None, "librt.so.1"):  # glibc >= 2.34 has them in libc; older ones in librt
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            create, settime, delete = libc.timer_create, libc.timer_settime, libc.timer_delete
        except (OSError, AttributeError):
            continue
        create.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigevent), ctypes.POINTER(ctypes.c_void_p)]
        settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        delete.argtypes = [ctypes.c_void_p]
        create.restype = settime.restype = delete.restype = ctypes.c_int
        wasmtime_lib = _wffi.dll
        try:
            clone, free, tick = (wasmtime_lib.wasmtime_engine_clone, wasmtime_lib.wasm_engine_delete,
                                 wasmtime_lib.wasmtime_engine_increment_epoch)
        except AttributeError:
            return None
        clone.restype = ctypes.c_void_p
        clone.argtypes = [ctypes.c_void_p]
        free.restype = None
        free.argtypes = [ctypes.c_void_p]
        tick_address = ctypes.cast(tick, ctypes.c_void_p).value
        return ((create, settime, delete), (clone, free, tick_address)) if tick_address else None
    return None


_API = _load_timer_api()
_retired: list[tuple[float, int]] = []  # (monotonic time stopped, engine clone address)
_retired_lock = threading.Lock()


def _free_retired(now: float) -> None:
    """Free the engine clones of timers stopped more than the grace period ago."""
    if _API is None:
        return
    free = _API[1][1]
    with _retired_lock:
        due = [clone for stopped, clone in _retired if now - stopped >= RETIRE_GRACE_S]
        _retired[:] = [(stopped, clone) for stopped, clone in _retired if now - stopped < RETIRE_GRACE_S]
    for clone in due:
        free(clone)


def available() -> bool:
    """Whether this platform can tick natively (the runtime then may keep the GIL in guest calls)."""
    return _API is not None


def _new_timer(clone: int, tick_ms: int) -> ctypes.c_void_p | None:
    """A periodic timer calling increment_epoch(``clone``) every ``tick_ms``; None if refused."""
    assert _API is not None
    (create, settime, delete), (_clone, _free, tick) = _API
    event = _Sigevent()
    event.value = clone
    event.notify = SIGEV_THREAD
    event.un.thread.function = tick
    timer_id = ctypes.c_void_p()
    if create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)) != 0:
        return None
    seconds, millis = divmod(tick_ms, 1000)
    period = _Timespec(seconds, millis * 1_000_000)
    if settime(timer_id, 0, ctypes.byref(_Itimerspec(period, period)), None) != 0:
        delete(timer_id)
        return None
    return timer_id


_running: weakref.WeakSet[EpochTimer] = weakref.WeakSet()
_state = {"started": False, "forked_after_start": False}
"""``started``: this process created a timer (glibc's helper thread exists from then on);
``forked_after_start``: this process is a fork of one that had, so it creates none (module doc)."""


class EpochTimer:
    """One periodic native timer advancing one engine's epoch; :meth:`stop` before forgetting it."""

    def __init__(self, timer_id: ctypes.c_void_p, clone: int) -> None:
        self._timer_id = timer_id
        self._clone = clone
        self._lock = threading.Lock()
        self._stopped = False
        _running.add(self)

    @classmethod
    def start(cls, engine: Engine, tick_ms: int) -> EpochTimer | None:
        """A running timer ticking ``engine`` every ``tick_ms``, or None when the platform has none
        (the caller then ticks from Python)."""
        if _API is None or _state["forked_after_start"]:
            return None
        clone_engine, free = _API[1][0], _API[1][1]
        _free_retired(time.monotonic())
        clone = clone_engine(ctypes.cast(engine.ptr(), ctypes.c_void_p).value)
        if not clone:
            return None
        _state["started"] = True  # before the call: the helper thread may exist even if it fails
        timer_id = _new_timer(clone, tick_ms)
        if timer_id is None:
            free(clone)  # no timer exists, so nothing can tick on it
            return None
        return cls(timer_id, clone)

    def _stop_in_child(self) -> None:
        """After a fork: the child has no timer and creates none (see the module's docstring). The
        engine clone is kept: the parent's timer still ticks on it."""
        self._lock = threading.Lock()
        self._stopped = True

    @property
    def running(self) -> bool:
        return not self._stopped

    def stop(self) -> None:
        """Delete the timer, then retire the engine clone (freed after the grace period).
        Idempotent and safe from any thread (in a forked child the timer is already stopped)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        _running.discard(self)
        assert _API is not None  # an EpochTimer exists only when the API loaded
        _API[0][2](self._timer_id)  # its result is not needed: the timer is gone either way
        now = time.monotonic()
        with _retired_lock:
            _retired.append((now, self._clone))
        _free_retired(now)


def _after_fork_in_child() -> None:
    global _retired_lock
    _retired_lock = threading.Lock()  # another thread may have held it at the fork
    for timer in list(_running):
        timer._stop_in_child()
    _running.clear()
    if _state["started"]:  # not even for a runtime made later in this child
        _state["forked_after_start"] = True


if _API is not None:
    os.register_at_fork(after_in_child=_after_fork_in_child)
