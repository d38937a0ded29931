"""The ``env`` host module of ABI.md, the host-function registry, and per-instance host state.

The four imports are defined per store with ``wasmtime_func_new_unchecked`` and our own ctypes
trampolines, not ``wasmtime.Func``. Two reasons: wasmtime-py's trampoline parks a Python exception
in a process-global (``LAST_EXCEPTION``) that another thread's call may pick up, and the unchecked
form skips the per-call ``Val`` conversions. Our trampolines never raise: they record what went
wrong in the instance's :class:`HostContext` and return a wasm trap, and the dispatcher asks the
context (``take_error``) what the trap meant. Both dispatchers share this module.

Two rules of ABI.md are enforced here, in the one trampoline every import goes through:

- Host functions are not re-entrant. While the host is inside ``gn_alloc``/``gn_free`` (placing a
  result or a payload: ``HostContext.placing`` names which), ``gn_log`` is dropped, ``gn_time_ms``
  runs, and any other import ends the call as ``ReentrantHostCall``. Without this a guest whose
  ``gn_alloc`` calls ``gn_host_call`` makes the host call ``gn_alloc`` again, without end.
- Time in host functions counts against the call: a host function runs with the call's remaining
  budget (:func:`time_left`), and an import that returns after the hard deadline ends the call as
  ``PluginTimeout``, whatever it returned (a failing host call never re-enters wasm, so the
  epoch alone would not stop a guest that loops over slow host calls).

It stays one module although it is long: the registry, :class:`HostContext` and the trampolines
are one mechanism (every import, and both rules above, go through :func:`_guarded`), and splitting
them would spread the guard's invariants over several files.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from wasmtime import Func, FuncType, Memory, Store, ValType
from wasmtime import _ffi as ffi

from gonext_plugins.errors import (
    PluginError,
    PluginTimeout,
    PluginTrap,
    ReentrantHostCall,
    UnknownPayloadFields,
)
from gonext_plugins.runtime import levels
from gonext_plugins.runtime.levels import DEBUG, ERROR, INFO, WARNING  # noqa: F401  (ABI.md levels, re-exported)

if TYPE_CHECKING:
    from gonext_plugins.runtime.limits import Limits

logger = logging.getLogger("gonext_plugins.runtime")

LogSink = Callable[[str, int, str, str], None]
"""``log_sink(plugin_name, level, message, source)``; source is ``"guest"`` or ``"host"``."""


# gn_host_call statuses (negative lens of the packed result).
HC_ERROR, HC_OUT_OF_MEMORY, HC_BAD_PAYLOAD, HC_CAPABILITY_DENIED, HC_UNKNOWN_FUNCTION = -1, -2, -3, -5, -6

_I32, _I64 = ValType.i32(), ValType.i64()
ENV_SIGNATURES: dict[str, FuncType] = {
    "gn_log": FuncType([_I32, _I32, _I32], []),
    "gn_panic": FuncType([_I32, _I32], []),
    "gn_time_ms": FuncType([], [_I64]),
    "gn_host_call": FuncType([_I32, _I32, _I32, _I32], [_I64]),
}
"""The only imports a guest may have, all from module ``env``; ABI.md's table.

For comparing signatures only: a ``FuncType`` gets tied to the first engine that uses it, so
:func:`make_env` builds fresh ones for each store.
"""

_ENV_SHAPES: dict[str, tuple[int, bool]] = {"gn_log": (3, False), "gn_panic": (2, False),
                                            "gn_time_ms": (0, True), "gn_host_call": (4, True)}


def _fresh_type(name: str) -> FuncType:
    params, returns_i64 = _ENV_SHAPES[name]
    return FuncType([ValType.i32() for _ in range(params)], [ValType.i64()] if returns_i64 else [])


def default_log_sink(plugin: str, level: int, message: str, source: str) -> None:
    """Used when the runtime has no sink: Python logging, tagged with plugin and source."""
    logger.log(levels.PYTHON.get(level, logging.INFO), "[%s:%s] %s", plugin, source, message)


def pack(ptr: int, length: int) -> int:
    """ABI.md's packed i64, ``(ptr << 32) | (len & 0xffffffff)``, as a signed 64-bit value."""
    value = ((ptr & 0xFFFFFFFF) << 32) | (length & 0xFFFFFFFF)
    return value - (1 << 64) if value >= (1 << 63) else value


# --- the registry ----------------------------------------------------------------------------


class PluginHandle(Protocol):
    """What a host function sees of the calling plugin."""

    name: str
    capabilities: frozenset[str]
    context: Any


HostCallable = Callable[[PluginHandle, Any], Any]


@dataclass(frozen=True, slots=True)
class HostFunction:
    name: str
    capability: str
    func: HostCallable


class HostFunctions:
    """Name → (capability, callable) for ``gn_host_call``.

    ``callable(plugin_handle, payload)`` gets the decoded JSON payload and returns a JSON-able
    value. Thread-safe for registration; lookups are lock-free dict reads.
    """

    def __init__(self) -> None:
        self._funcs: dict[str, HostFunction] = {}
        self._lock = threading.Lock()

    def register(self, name: str, capability: str, func: HostCallable | None = None) -> Any:
        """Register ``func`` (or use as a decorator when ``func`` is omitted)."""
        if func is None:
            def decorator(f: HostCallable) -> HostCallable:
                self.register(name, capability, f)
                return f
            return decorator
        with self._lock:
            self._funcs = {**self._funcs, name: HostFunction(name, capability, func)}
        return func

    def unregister(self, name: str) -> None:
        with self._lock:
            self._funcs = {k: v for k, v in self._funcs.items() if k != name}

    def get(self, name: str) -> HostFunction | None:
        return self._funcs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._funcs

    def __iter__(self) -> Iterator[HostFunction]:
        return iter(list(self._funcs.values()))

    def __len__(self) -> int:
        return len(self._funcs)


# --- per-instance state ----------------------------------------------------------------------


class HostContext:
    """Host state of one instance, read by the host functions and by both dispatchers.

    ``begin_call`` resets the per-call counters; after a guest call fails, ``take_error`` returns
    the typed error a host function recorded (panic message, host-call limit), if any.
    """

    __slots__ = ("alloc", "call_hook", "call_started", "deadline", "deadline_ticks", "error", "handle",
                 "host_calls", "host_functions", "limits", "log_calls", "log_sink", "memory", "name",
                 "placing", "soft_at")

    def __init__(self, name: str, handle: PluginHandle, limits: Limits, log_sink: LogSink,
                 host_functions: HostFunctions) -> None:
        self.name = name
        self.handle = handle
        self.limits = limits
        self.log_sink = log_sink
        self.host_functions = host_functions
        self.memory: Memory | None = None  # set once the instance exists
        self.alloc: Func | None = None
        self.host_calls = 0
        self.log_calls = 0
        self.error: PluginTrap | None = None
        self.deadline_ticks = 1 << 62  # the runtime sets the real one from hard_timeout_ms
        # The call's hard deadline on the monotonic clock, for time spent in host functions.
        self.deadline = math.inf
        # "gn_alloc" or "gn_free" while the host is inside that export; "" otherwise.
        self.placing = ""
        # The call in flight, for the ticker's soft-deadline watch (perf_counter seconds).
        self.call_hook = ""
        self.call_started = 0.0
        self.soft_at = 0.0

    def begin_call(self) -> None:
        self.host_calls = 0
        self.log_calls = 0
        self.error = None
        self.placing = ""
        self.deadline = time.monotonic() + self.limits.hard_timeout_ms / 1000

    def take_error(self) -> PluginTrap | None:
        err, self.error = self.error, None
        return err

    def log(self, level: int, message: str, source: str = "host") -> None:
        """Send one line to the sink; a failing sink must never break a call."""
        try:
            self.log_sink(self.name, level, message, source)
        except Exception:
            logger.exception("log sink failed for plugin %s", self.name)


# --- the call's budget, as host functions see it ----------------------------------------------

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("gonext_host_call_deadline",
                                                                         default=None)


def time_left() -> float | None:
    """Seconds left before the hard deadline of the guest call whose host function is running now
    (0 once passed), or None outside a host function. A host function that waits (network, locks)
    uses it as its own timeout: the trampoline ends the call as ``PluginTimeout`` when it returns
    late anyway, so waiting longer only holds the request."""
    deadline = _DEADLINE.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# --- the trampolines -------------------------------------------------------------------------

_LIVE: dict[int, HostContext] = {}
_KEYS = itertools.count(1)
_U32 = 0xFFFFFFFF


def _trap(message: str) -> int:
    data = message.encode("utf-8", "replace")
    ptr = ffi.wasmtime_trap_new(ctypes.create_string_buffer(data, len(data)), len(data))
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


def _memory(caller: Any, ctx: HostContext) -> tuple[Any, int, int]:
    """(context, base address, size) of the guest memory as seen from inside a host call."""
    cctx = ffi.wasmtime_caller_context(caller)
    mem = ctx.memory
    if mem is None:
        return cctx, 0, 0
    raw = ctypes.byref(mem._memory)
    base = ctypes.cast(ffi.wasmtime_memory_data(cctx, raw), ctypes.c_void_p).value or 0
    return cctx, base, ffi.wasmtime_memory_data_size(cctx, raw)


def _read(base: int, size: int, ptr: int, length: int) -> bytes | None:
    """Bytes ``[ptr, ptr+length)`` or None when the range is outside memory."""
    ptr &= _U32
    if length < 0 or ptr + length > size:
        return None
    return ctypes.string_at(base + ptr, length) if length else b""


# What an import does when the guest calls it from inside gn_alloc/gn_free (ABI.md).
RUN, DROP, REFUSE = "run", "drop", "refuse"


def _guarded(name: str, fn: Callable[[HostContext, Any, Any], int], while_placing: str) -> Callable[..., int]:
    """Wrap the body of import ``name``: look up its context, apply the re-entrancy and deadline
    rules, and never let a Python exception escape (one escaping a ctypes callback leaves wasmtime
    with an undefined result: a wrong answer at best, a corrupted heap at worst)."""

    def trampoline(env: int | None, caller: Any, args: Any, nargs: int) -> int:
        ctx: HostContext | None = None
        try:
            ctx = _LIVE.get(env or 0)
            if ctx is None:
                return _trap("host context missing")
            if ctx.placing and while_placing != RUN:
                if while_placing == DROP:
                    return 0
                return _refuse_reentry(ctx, name)
            status = fn(ctx, caller, args)
            if status == 0 and time.monotonic() > ctx.deadline:
                return _overran(ctx, name)
            return status
        except _GuestTrapped:
            return _trap("guest trapped during a host call")
        except BaseException as exc:  # a ctypes callback must not raise
            return _failed(ctx, exc)

    return trampoline


def _refuse_reentry(ctx: HostContext, name: str) -> int:
    if ctx.error is None:
        ctx.error = ReentrantHostCall(
            f"{name} called from inside {ctx.placing}: host calls are not re-entrant (ABI.md); only "
            "gn_log (dropped) and gn_time_ms may be called there", plugin=ctx.name)
    return _trap("reentrant host call")


def _overran(ctx: HostContext, name: str) -> int:
    if ctx.error is None:
        ctx.error = PluginTimeout(
            f"call overran hard_timeout_ms={ctx.limits.hard_timeout_ms}: the deadline passed before {name} "
            "returned (time in host functions counts against the call)", plugin=ctx.name)
    return _trap("deadline passed in a host function")


def _failed(ctx: HostContext | None, exc: BaseException) -> int:
    """The last line of defence of a trampoline: record, log, trap; never raise from here."""
    try:
        if ctx is not None:
            if ctx.error is None:
                ctx.error = PluginTrap(f"host function failed: {type(exc).__name__}", plugin=ctx.name)
            logger.error("host function failed for plugin %s", ctx.name, exc_info=exc)
    except BaseException:  # even logging may fail (a RecursionError, say); the trap still goes back
        pass
    return _trap("host function failed")


def _gn_log(ctx: HostContext, caller: Any, args: Any) -> int:
    level, ptr, length = args[0].i32, args[1].i32, args[2].i32
    ctx.log_calls += 1
    if ctx.log_calls > ctx.limits.max_host_calls:
        if ctx.log_calls == ctx.limits.max_host_calls + 1:
            ctx.log(WARNING, "gn_log called too often in one call; further lines dropped")
        return 0
    _, base, size = _memory(caller, ctx)
    if length < 0:
        ctx.log(WARNING, f"gn_log with negative length {length}; line dropped")
        return 0
    data = _read(base, size, ptr, min(length, ctx.limits.max_log_bytes))
    if data is None:
        ctx.log(WARNING, "gn_log with a range outside guest memory; line dropped")
        return 0
    ctx.log(level, data.decode("utf-8", "replace"), "guest")
    return 0


def _gn_panic(ctx: HostContext, caller: Any, args: Any) -> int:
    ptr, length = args[0].i32, args[1].i32
    _, base, size = _memory(caller, ctx)
    data = _read(base, size, ptr, min(max(length, 0), ctx.limits.max_log_bytes)) or b""
    message = data.decode("utf-8", "replace")
    ctx.error = PluginTrap(f"guest panicked: {message}", plugin=ctx.name, guest_message=message)
    return _trap("gn_panic")


def _gn_time_ms(ctx: HostContext, caller: Any, args: Any) -> int:
    args[0].i64 = time.time_ns() // 1_000_000
    return 0


def _gn_host_call(ctx: HostContext, caller: Any, args: Any) -> int:
    name_ptr, name_len, payload_ptr, payload_len = args[0].i32, args[1].i32, args[2].i32, args[3].i32
    ctx.host_calls += 1
    if ctx.host_calls > ctx.limits.max_host_calls:
        ctx.error = PluginTrap(
            f"more than max_host_calls={ctx.limits.max_host_calls} host calls in one call",
            plugin=ctx.name)
        return _trap("host call limit")
    args[0].i64 = _host_call(ctx, caller, name_ptr, name_len, payload_ptr, payload_len)
    return 0


def _host_call(ctx: HostContext, caller: Any, name_ptr: int, name_len: int, payload_ptr: int,
               payload_len: int) -> int:
    cctx, base, size = _memory(caller, ctx)
    raw_name = _read(base, size, name_ptr, name_len) if name_len <= 256 else None
    if raw_name is None:
        return pack(0, HC_UNKNOWN_FUNCTION)
    name = raw_name.decode("utf-8", "replace")
    entry = ctx.host_functions.get(name)
    if entry is None:
        return pack(0, HC_UNKNOWN_FUNCTION)
    if entry.capability not in ctx.handle.capabilities:
        ctx.log(WARNING, f"host call {name} denied: capability {entry.capability!r} not granted")
        return pack(0, HC_CAPABILITY_DENIED)
    if payload_len > ctx.limits.max_input_bytes:
        return pack(0, HC_BAD_PAYLOAD)
    raw_payload = _read(base, size, payload_ptr, payload_len)
    if raw_payload is None:
        return pack(0, HC_BAD_PAYLOAD)
    try:
        payload = orjson.loads(raw_payload)
    except orjson.JSONDecodeError:
        return pack(0, HC_BAD_PAYLOAD)
    if time.monotonic() >= ctx.deadline:  # no budget left: do not start it (the trampoline traps)
        return pack(0, HC_ERROR)
    token = _DEADLINE.set(ctx.deadline)
    try:
        result = orjson.dumps(entry.func(ctx.handle, payload))
    except PluginError as exc:  # an expected refusal (quota, host not allowed): no traceback
        ctx.log(ERROR, f"host function {name} refused: {exc.message}")
        logger.info("host function %s refused for plugin %s: %s", name, ctx.name, exc.message)
        # ABI.md: an unknown field is a bad payload (-3), like bad JSON.
        return pack(0, HC_BAD_PAYLOAD if isinstance(exc, UnknownPayloadFields) else HC_ERROR)
    except Exception as exc:
        ctx.log(ERROR, f"host function {name} failed: {type(exc).__name__}: {exc}")
        logger.warning("host function %s failed for plugin %s", name, ctx.name, exc_info=True)
        return pack(0, HC_ERROR)
    finally:
        _DEADLINE.reset(token)
    ptr = _guest_alloc(ctx, cctx, len(result))
    if ptr is None:  # the guest trapped inside gn_alloc; ctx.error says why
        raise _GuestTrapped
    _, base, size = _memory(caller, ctx)  # gn_alloc may have grown memory
    ptr &= _U32
    if ptr == 0 or ptr + len(result) > size:
        return pack(0, HC_OUT_OF_MEMORY)
    ctypes.memmove(base + ptr, result, len(result))
    return pack(ptr, len(result))


class _GuestTrapped(Exception):
    """gn_alloc trapped while a host call was answering."""


def _guest_alloc(ctx: HostContext, cctx: Any, size: int) -> int | None:
    """Call the guest's gn_alloc from inside a host function (imports there follow ``placing``'s
    rules); None if it trapped."""
    func = ctx.alloc
    if func is None:
        return 0
    vals = (ffi.wasmtime_val_raw_t * 1)()
    vals[0].i32 = size
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    ctx.placing = "gn_alloc"
    try:
        err = ffi.wasmtime_func_call_unchecked(cctx, ctypes.byref(func._func), vals, 1, ctypes.byref(trap))
    finally:
        ctx.placing = ""
    if err or trap:
        if err:
            ffi.wasmtime_error_delete(err)
        if trap:
            ffi.wasm_trap_delete(trap)
        if ctx.error is None:
            ctx.error = PluginTrap("guest trapped in gn_alloc during a host call", plugin=ctx.name)
        return None
    return vals[0].i32


_CALLBACKS: dict[str, Any] = {
    name: ffi.wasmtime_func_unchecked_callback_t(_guarded(name, body, while_placing))
    for name, body, while_placing in (("gn_log", _gn_log, DROP), ("gn_panic", _gn_panic, REFUSE),
                                      ("gn_time_ms", _gn_time_ms, RUN),
                                      ("gn_host_call", _gn_host_call, REFUSE))
}


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]  # typeshed leaves CFUNCTYPE untyped
def _finalize(env: int | None) -> None:
    with contextlib.suppress(BaseException):  # a ctypes callback must not raise
        _LIVE.pop(env or 0, None)


def make_env(store: Store, ctx: HostContext, names: list[str]) -> dict[str, Func]:
    """Create the requested ``env`` functions in ``store``, bound to ``ctx``.

    The binding lives as long as the store: wasmtime calls the finalizer when the store is dropped.
    """
    key = next(_KEYS)
    _LIVE[key] = ctx
    funcs: dict[str, Func] = {}
    for name in names:
        raw = ffi.wasmtime_func_t()
        ty = _fresh_type(name)
        ffi.wasmtime_func_new_unchecked(store._context(), ty.ptr(), _CALLBACKS[name], key, _finalize,
                                        ctypes.byref(raw))
        funcs[name] = Func._from_raw(raw)
    if not names:
        # No function holds the key, so nothing will finalize it: tie it to the store instead.
        _LIVE.pop(key, None)
    return funcs
