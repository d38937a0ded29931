"""The ``env`` host module of ABI.md, the host-function registry, and per-instance host state.

The four ``env`` imports, and the WASI subset of :mod:`.wasi` through the same machinery
(:func:`define_import`, :func:`link_imports`), are defined per store with
``wasmtime_func_new_unchecked`` and our own cffi trampolines, not ``wasmtime.Func``. Two
reasons: wasmtime-py's trampoline parks a Python exception in a process-global
(``LAST_EXCEPTION``) that another thread's call may pick up, and the unchecked form skips the
per-call ``Val`` conversions. Our trampolines never raise: they record what went
wrong in the instance's :class:`HostContext` and return a wasm trap, and the dispatcher asks the
context (``take_error``) what the trap meant. Both dispatchers share this module.

A host call is on the page's hot path (the SEO plugin's ``settings.get`` in every ``wp_head``), so
its C side is prepared once per instance (:meth:`HostContext.attach`): cffi callbacks (arguments
read as plain cffi fields), the memory's base address read once (it never moves), guest memory
read and written with cffi, the ``gn_alloc`` that places a result called with a ready argument
array, all through C calls that keep the GIL except ``gn_alloc`` under the ``"release"`` policy
(wasmtime-py's bindings released and re-took it around each of about ten calls per host call).

Two rules of ABI.md are enforced here, in the one trampoline every import goes through, and one
of our own:

- Host functions are not re-entrant. While the host is inside ``gn_alloc``/``gn_free`` (placing a
  result or a payload: ``HostContext.placing`` names which), ``gn_log`` is dropped, ``gn_time_ms``
  runs, and any other ``env`` import ends the call as ``ReentrantHostCall`` (``gn_panic`` keeping
  its message). Without this a guest whose ``gn_alloc`` calls ``gn_host_call`` makes the host call
  ``gn_alloc`` again, without end. WASI functions never call back into the guest, so they run
  there (``fd_write`` drops its output, as ``gn_log`` is dropped).
- A trap inside ``gn_alloc`` while a host call's result is placed keeps its real reason
  (:func:`_guest_alloc`): the call ends with that error, saying where it happened.
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
    MalformedHostCallPayload,
    PluginError,
    PluginTimeout,
    PluginTrap,
    ReentrantHostCall,
)
from gonext_plugins.runtime import _wasmtime_ffi as cffi_wasmtime
from gonext_plugins.runtime import levels
from gonext_plugins.runtime.gil import GilPolicy
from gonext_plugins.runtime.levels import DEBUG, ERROR, INFO, WARNING  # noqa: F401  (ABI.md levels, re-exported)
from gonext_plugins.runtime.trap_errors import trap_error

if TYPE_CHECKING:
    from gonext_plugins.runtime.limits import Limits

logger = logging.getLogger("gonext_plugins.runtime")

LogSink = Callable[[str, int, str, str], object]
"""``log_sink(plugin_name, level, message, source)``; source is ``"guest"`` or ``"host"``. What it
returns is ignored (the app's sink says whether the line was kept or dropped)."""


# gn_host_call statuses (negative lens of the packed result).
HC_ERROR, HC_OUT_OF_MEMORY, HC_BAD_PAYLOAD, HC_CAPABILITY_DENIED, HC_UNKNOWN_FUNCTION = -1, -2, -3, -5, -6

ENV_MODULE = "env"


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

    def first_denial(self, capability: str) -> str | None:
        """The log line's hint the first time since load (or since the grants last changed) that a
        call was denied for ``capability``; None afterwards, so a denial is not logged per call."""
        ...


HostCallable = Callable[[PluginHandle, Any], Any]


@dataclass(frozen=True, slots=True)
class HostFunction:
    name: str
    capability: str
    func: HostCallable
    pure: bool = False
    """Its answer is fixed for a loaded plugin until its settings or grants change (``settings.get``):
    a guest call that made no other host call keeps its "pure" standing (``HostContext.tainted``)."""


class HostFunctions:
    """Name → (capability, callable) for ``gn_host_call``.

    ``callable(plugin_handle, payload)`` gets the decoded JSON payload and returns a JSON-able
    value. Thread-safe for registration; lookups are lock-free dict reads.
    """

    def __init__(self) -> None:
        self._funcs: dict[str, HostFunction] = {}
        self._lock = threading.Lock()

    def register(self, name: str, capability: str, func: HostCallable | None = None, *,
                 pure: bool = False) -> Any:
        """Register ``func`` (or use as a decorator when ``func`` is omitted)."""
        if func is None:
            def decorator(f: HostCallable) -> HostCallable:
                self.register(name, capability, f, pure=pure)
                return f
            return decorator
        with self._lock:
            self._funcs = {**self._funcs, name: HostFunction(name, capability, func, pure)}
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
    ``tainted`` says the call did something whose outcome is not fixed by its payload: any import
    but ``gn_host_call`` (the clock, a log line, WASI), or a host function that is not ``pure``. A
    pure hook's result is remembered only when its call was not tainted (``Plugin``).
    """

    __slots__ = ("alloc", "alloc_arg", "alloc_func", "alloc_trap", "alloc_trap_arg", "alloc_vals",
                 "alloc_vals_arg", "call_hook", "call_started", "deadline", "deadline_ticks", "error", "gil",
                 "handle", "host_calls", "host_functions", "limits", "log_calls", "log_sink", "memory",
                 "memory_arg", "memory_base", "memory_handle", "name", "placing", "soft_at", "stdio",
                 "tainted")

    def __init__(self, name: str, handle: PluginHandle, limits: Limits, log_sink: LogSink,
                 host_functions: HostFunctions) -> None:
        self.name = name
        self.handle = handle
        self.limits = limits
        self.log_sink = log_sink
        self.host_functions = host_functions
        self.memory: Memory | None = None  # set once the instance exists (attach)
        self.alloc: Func | None = None
        # What the trampolines use of them, prepared once by attach (see there): None before.
        self.memory_handle: Any = None  # the cffi handle memory_arg points to: kept alive here
        self.memory_arg: ctypes.c_void_p | None = None
        self.memory_base: Any = _NULL  # a cffi ``char *``: slicing it reads guest memory without ctypes
        self.alloc_func: Any = None
        self.alloc_arg: ctypes.c_void_p | None = None
        self.alloc_vals: Any = None
        self.alloc_vals_arg: ctypes.c_void_p | None = None
        self.alloc_trap: Any = None
        self.alloc_trap_arg: ctypes.c_void_p | None = None
        self.host_calls = 0
        self.log_calls = 0
        self.tainted = False
        self.error: PluginTrap | None = None
        self.deadline_ticks = 1 << 62  # the runtime sets the real one from hard_timeout_ms
        # The plugin's adaptive GIL state (gil.GilPolicy), set by the runtime; None: always release.
        self.gil: GilPolicy | None = None
        # The call's hard deadline on the monotonic clock, for time spent in host functions.
        self.deadline = math.inf
        # "gn_alloc" or "gn_free" while the host is inside that export; "" otherwise.
        self.placing = ""
        # The call in flight, for the ticker's soft-deadline watch (perf_counter seconds).
        self.call_hook = ""
        self.call_started = 0.0
        self.soft_at = 0.0
        # WASI fd_write's unfinished line per fd (1 stdout, 2 stderr); flush_stdio ends each call.
        self.stdio: dict[int, bytearray] = {}

    def attach(self, store: Store, memory: Memory, alloc: Func) -> None:
        """Bind the instance's memory and ``gn_alloc``, and prepare what every host call reuses:
        the memory's base address (read once: the engine is built with ``memory_may_move`` off,
        ``compiler.ENGINE_SETTINGS``), the memory and function handles as ready ``held_*``
        arguments, and the argument array and trap slot of the ``gn_alloc`` call that places a
        host function's result. Per host call that leaves two C calls that keep the GIL (caller
        context, memory size) and the ``gn_alloc`` call itself."""
        self.memory = memory
        self.alloc = alloc
        self.memory_handle = cffi_wasmtime.memory_of(memory)
        context = cffi_wasmtime.held_arg(cffi_wasmtime.context_of(store))
        self.memory_arg = cffi_wasmtime.held_arg(self.memory_handle)
        base = cffi_wasmtime.held_memory_data(context, self.memory_arg) or 0
        self.memory_base = cffi_wasmtime.ffi.cast("char *", base)
        self.alloc_func = cffi_wasmtime.func_of(alloc)
        self.alloc_arg = cffi_wasmtime.held_arg(self.alloc_func)
        self.alloc_vals = cffi_wasmtime.ffi.new("wasmtime_val_raw_t[1]")
        self.alloc_vals_arg = cffi_wasmtime.held_arg(self.alloc_vals)
        self.alloc_trap = cffi_wasmtime.ffi.new("wasm_trap_t **")
        self.alloc_trap_arg = cffi_wasmtime.held_arg(self.alloc_trap)

    def begin_call(self) -> None:
        self.host_calls = 0
        self.log_calls = 0
        self.tainted = False
        self.error = None
        self.placing = ""
        self.deadline = time.monotonic() + self.limits.hard_timeout_ms / 1000

    def take_error(self) -> PluginTrap | None:
        err, self.error = self.error, None
        return err

    def flush_stdio(self) -> None:
        """Log what WASI ``fd_write`` left without a newline: a call's output never waits for the next
        call (which may never come: the instance may be dropped)."""
        if not self.stdio:
            return
        pending, self.stdio = self.stdio, {}
        for fd, data in sorted(pending.items()):
            if data:
                guest_log(self, STDIO_LEVELS.get(fd, INFO), bytes(data))

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
_caller_context = cffi_wasmtime.held_caller_context
_memory_size = cffi_wasmtime.held_memory_data_size
_call_held = cffi_wasmtime.held_func_call
_call_releasing = cffi_wasmtime.lib.wasmtime_func_call_unchecked
_error_at = cffi_wasmtime.error_at
_NULL = cffi_wasmtime.ffi.NULL
_unpack = cffi_wasmtime.ffi.unpack
_memmove = cffi_wasmtime.ffi.memmove
_ONE = ctypes.c_size_t(1)

CALLBACK_CDECL = "uintptr_t(uintptr_t, uintptr_t, wasmtime_val_raw_t *, size_t)"
"""libwasmtime's ``wasmtime_func_unchecked_callback_t`` for a cffi callback: ``(env, caller, args,
nargs) -> trap``, with the pointers we only pass on (env, caller, the trap) as plain integers, so
no Python object is built for them. A cffi callback, not a ctypes one: ``args`` arrives as a cffi
pointer whose ``args[i].i32`` is a plain read (ctypes built a pointer object per argument and a
structure per element read)."""
_KEYS = itertools.count(1)
_U32 = 0xFFFFFFFF


def trap(message: str) -> int:
    """A new wasm trap for a trampoline to return (wasmtime takes ownership)."""
    data = message.encode("utf-8", "replace")
    ptr = ffi.wasmtime_trap_new(ctypes.create_string_buffer(data, len(data)), len(data))
    return ctypes.cast(ptr, ctypes.c_void_p).value or 0


def guest_memory(caller: int, ctx: HostContext) -> tuple[int, Any, int]:
    """(context address, base pointer, size) of the guest memory as seen from inside a host call:
    two C calls that keep the GIL (the base never moves, :meth:`HostContext.attach`). Memory only
    grows, so a range inside ``size`` stays inside memory for the rest of the host call."""
    cctx: int = _caller_context(caller)
    memory = ctx.memory_arg
    if memory is None:  # a start function, before the instance exists
        return cctx, 0, 0
    return cctx, ctx.memory_base, _memory_size(cctx, memory)


def read_guest(base: Any, size: int, ptr: int, length: int) -> bytes | None:
    """Bytes ``[ptr, ptr+length)`` or None when the range is outside memory (``base``, ``size``:
    from :func:`guest_memory`)."""
    ptr &= _U32
    if length < 0 or ptr + length > size:
        return None
    return _unpack(base + ptr, length) if length else b""


def write_guest(base: Any, size: int, ptr: int, data: bytes) -> bool:
    """Copy ``data`` to ``[ptr, ptr+len)``; False (nothing written) when the range is outside memory."""
    ptr &= _U32
    if ptr + len(data) > size:
        return False
    if data:
        _memmove(base + ptr, data, len(data))
    return True


# What an import does when the guest calls it from inside gn_alloc/gn_free (ABI.md).
RUN, DROP, REFUSE = "run", "drop", "refuse"

ImportBody = Callable[[HostContext, Any, Any], int]
"""``body(ctx, caller, args)``: the import's work; results go into ``args``; returns 0 or a trap."""


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One function a guest may import: where from, its exact core signature, its trampoline."""

    module: str
    name: str
    params: tuple[str, ...]  # "i32" / "i64"
    results: tuple[str, ...]
    callback: tuple[Any, Any]  # (the cffi callback, its address as wasmtime-py's callback type): held
    # here so the C function lives as long as the process

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"

    def func_type(self) -> FuncType:
        """A fresh ``FuncType`` (one gets tied to the first engine that uses it)."""
        def val(kind: str) -> ValType:
            return ValType.i64() if kind == "i64" else ValType.i32()
        return FuncType([val(p) for p in self.params], [val(r) for r in self.results])

    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"

    def matches(self, ty: FuncType) -> bool:
        return ([str(t) for t in ty.params] == list(self.params)
                and [str(t) for t in ty.results] == list(self.results))


def define_import(module: str, name: str, params: tuple[str, ...], results: tuple[str, ...],
                  body: ImportBody, while_placing: str) -> ImportSpec:
    """An import whose every call goes through :func:`_guarded` (the one place the rules live)."""
    native = cffi_wasmtime.ffi.callback(CALLBACK_CDECL, _guarded(name, body, while_placing))
    address = int(cffi_wasmtime.ffi.cast("uintptr_t", native))
    # wasmtime-py's binding takes its own ctypes callback type: the same C function, by address.
    callback = ffi.wasmtime_func_unchecked_callback_t(address)
    return ImportSpec(module, name, params, results, (native, callback))


def _guarded(name: str, fn: ImportBody, while_placing: str) -> Callable[..., int]:
    """Wrap the body of import ``name``: look up its context, apply the re-entrancy and deadline
    rules, and never let a Python exception escape (one escaping a ctypes callback leaves wasmtime
    with an undefined result: a wrong answer at best, a corrupted heap at worst). Every import
    but ``gn_host_call`` taints the call (``HostContext.tainted``); that one decides per function."""
    taints = name != "gn_host_call"

    def trampoline(env: int, caller: int, args: Any, nargs: int) -> int:
        ctx: HostContext | None = None
        try:
            ctx = _LIVE.get(env)
            if ctx is None:
                return trap("host context missing")
            if taints:
                ctx.tainted = True
            if ctx.placing and while_placing != RUN:
                if while_placing == DROP:
                    return 0
                return _refuse_reentry(ctx, name)
            status = fn(ctx, caller, args)
            if status == 0 and time.monotonic() > ctx.deadline:
                return _overran(ctx, name)
            return status
        except _GuestTrapped:
            return trap("guest trapped during a host call")
        except BaseException as exc:  # a ctypes callback must not raise
            return _failed(ctx, exc)

    return trampoline


def _refuse_reentry(ctx: HostContext, name: str) -> int:
    if ctx.error is None:
        ctx.error = ReentrantHostCall(
            f"{name} called from inside {ctx.placing}: host calls are not re-entrant (ABI.md); only "
            "gn_log (dropped), gn_time_ms and WASI functions may be called there", plugin=ctx.name)
    return trap("reentrant host call")


def _overran(ctx: HostContext, name: str) -> int:
    if ctx.error is None:
        ctx.error = PluginTimeout(
            f"call overran hard_timeout_ms={ctx.limits.hard_timeout_ms}: the deadline passed before {name} "
            "returned (time in host functions counts against the call)", plugin=ctx.name)
    return trap("deadline passed in a host function")


def _failed(ctx: HostContext | None, exc: BaseException) -> int:
    """The last line of defence of a trampoline: record, log, trap; never raise from here."""
    try:
        if ctx is not None:
            if ctx.error is None:
                ctx.error = PluginTrap(f"host function failed: {type(exc).__name__}", plugin=ctx.name)
            logger.error("host function failed for plugin %s", ctx.name, exc_info=exc)
    except BaseException:  # even logging may fail (a RecursionError, say); the trap still goes back
        pass
    return trap("host function failed")


STDIO_LEVELS = {1: INFO, 2: WARNING}
"""WASI stdout and stderr, as log levels."""


def guest_log(ctx: HostContext, level: int, data: bytes) -> None:
    """One line the guest logs (``gn_log``, or a line of WASI stdout/stderr): counted against
    ``max_host_calls`` per call (one warning, then dropped) and cut at ``max_log_bytes``."""
    ctx.log_calls += 1
    if ctx.log_calls > ctx.limits.max_host_calls:
        if ctx.log_calls == ctx.limits.max_host_calls + 1:
            ctx.log(WARNING, "gn_log called too often in one call; further lines dropped")
        return
    ctx.log(level, data[:ctx.limits.max_log_bytes].decode("utf-8", "replace"), "guest")


def _gn_log(ctx: HostContext, caller: Any, args: Any) -> int:
    level, ptr, length = args[0].i32, args[1].i32, args[2].i32
    if ctx.log_calls >= ctx.limits.max_host_calls:  # over the limit: count it, read nothing
        guest_log(ctx, level, b"")
        return 0
    _, base, size = guest_memory(caller, ctx)
    if length < 0:
        ctx.log(WARNING, f"gn_log with negative length {length}; line dropped")
        return 0
    data = read_guest(base, size, ptr, min(length, ctx.limits.max_log_bytes))
    if data is None:
        ctx.log(WARNING, "gn_log with a range outside guest memory; line dropped")
        return 0
    guest_log(ctx, level, data)
    return 0


def _gn_panic(ctx: HostContext, caller: Any, args: Any) -> int:
    """Runs even inside gn_alloc/gn_free (registered RUN), where it is still refused as re-entry
    (ABI.md), but the refusal keeps the guest's message: it is why the call ends."""
    ptr, length = args[0].i32, args[1].i32
    _, base, size = guest_memory(caller, ctx)
    data = read_guest(base, size, ptr, min(max(length, 0), ctx.limits.max_log_bytes)) or b""
    message = data.decode("utf-8", "replace")
    if ctx.placing:
        _refuse_reentry(ctx, "gn_panic")
        if isinstance(ctx.error, ReentrantHostCall):
            ctx.error = ReentrantHostCall(f"{ctx.error.message}; the guest panicked: {message}",
                                          plugin=ctx.name, guest_message=message)
        return trap("gn_panic")
    ctx.error = PluginTrap(f"guest panicked: {message}", plugin=ctx.name, guest_message=message)
    return trap("gn_panic")


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
        return trap("host call limit")
    args[0].i64 = _host_call(ctx, caller, name_ptr, name_len, payload_ptr, payload_len)
    return 0


def _host_call(ctx: HostContext, caller: Any, name_ptr: int, name_len: int, payload_ptr: int,
               payload_len: int) -> int:
    cctx, base, size = guest_memory(caller, ctx)
    raw_name = read_guest(base, size, name_ptr, name_len) if name_len <= 256 else None
    entry = None if raw_name is None else ctx.host_functions.get(raw_name.decode("utf-8", "replace"))
    if entry is None:
        return _refused(ctx, HC_UNKNOWN_FUNCTION)
    name = entry.name
    if not entry.pure:
        ctx.tainted = True
    if entry.capability not in ctx.handle.capabilities:
        hint = ctx.handle.first_denial(entry.capability)
        if hint is not None:  # once per load and capability: a denied call on every page view is no news
            ctx.log(WARNING, f"host call {name} denied: capability {entry.capability!r} not granted; "
                             f"{hint} (logged once until the plugin is loaded again or its grants change)")
        return _refused(ctx, HC_CAPABILITY_DENIED)
    if payload_len > ctx.limits.max_input_bytes:
        return _refused(ctx, HC_BAD_PAYLOAD)
    raw_payload = read_guest(base, size, payload_ptr, payload_len)
    if raw_payload is None:
        return _refused(ctx, HC_BAD_PAYLOAD)
    try:
        payload = orjson.loads(raw_payload)
    except orjson.JSONDecodeError:
        return _refused(ctx, HC_BAD_PAYLOAD)
    if time.monotonic() >= ctx.deadline:  # no budget left: do not start it (the trampoline traps)
        return _refused(ctx, HC_ERROR)
    token = _DEADLINE.set(ctx.deadline)
    try:
        result = orjson.dumps(entry.func(ctx.handle, payload))
    except Exception as exc:
        return _refused(ctx, _refusal(ctx, name, exc))
    finally:
        _DEADLINE.reset(token)
    ptr = _guest_alloc(ctx, cctx, len(result))
    if ptr is None:  # the guest trapped inside gn_alloc; ctx.error says why
        raise _GuestTrapped
    ptr &= _U32
    end = ptr + len(result)
    if end > size and ctx.memory_arg is not None:  # past the size read before: gn_alloc may have grown it
        size = _memory_size(cctx, ctx.memory_arg)
    if ptr == 0 or end > size:
        return _refused(ctx, HC_OUT_OF_MEMORY)
    _memmove(base + ptr, result, len(result))
    return pack(ptr, len(result))


def _refused(ctx: HostContext, status: int) -> int:
    """A host call's negative ``status``. Every refusal taints the call: even a pure function's
    refusal (denied, out of memory, out of time) is no fixed answer for the guest to build on."""
    ctx.tainted = True
    return pack(0, status)


def _refusal(ctx: HostContext, name: str, exc: Exception) -> int:
    """The negative status for host function ``name`` raising ``exc``, logged where it belongs."""
    if isinstance(exc, MalformedHostCallPayload):  # ABI.md: a missing or unknown field is -3
        ctx.log(ERROR, f"host function {name} refused: {exc.message}")
        logger.info("host function %s refused a bad payload for plugin %s: %s", name, ctx.name, exc.message)
        return HC_BAD_PAYLOAD
    if isinstance(exc, PluginError):  # an expected refusal (quota, host not allowed): no traceback
        ctx.log(ERROR, f"host function {name} refused: {exc.message}")
        logger.info("host function %s refused for plugin %s: %s", name, ctx.name, exc.message)
        return HC_ERROR
    ctx.log(ERROR, f"host function {name} failed: {type(exc).__name__}: {exc}")
    logger.warning("host function %s failed for plugin %s", name, ctx.name, exc_info=exc)
    return HC_ERROR


class _GuestTrapped(Exception):
    """gn_alloc trapped while a host call was answering; ``ctx.error`` already says why."""


def _guest_alloc(ctx: HostContext, cctx: int, size: int) -> int | None:
    """Call the guest's gn_alloc from inside a host function (imports there follow ``placing``'s
    rules); None if it trapped, with the trap's real reason in ``ctx.error``.

    It keeps the GIL when the plugin runs under the adaptive policy (``ctx.gil``: a native timer
    advances the epoch, so a looping gn_alloc still meets the deadline); otherwise it releases it,
    as any guest code does, so a Python epoch ticker keeps ticking."""
    vals = ctx.alloc_vals
    if vals is None:
        return 0
    vals[0].i32 = size
    trap_slot = ctx.alloc_trap
    ctx.placing = "gn_alloc"
    try:
        if ctx.gil is not None:
            failed = _call_held(cctx, ctx.alloc_arg, ctx.alloc_vals_arg, _ONE, ctx.alloc_trap_arg)
            err = _error_at(failed) if failed else _NULL
        else:
            context = cffi_wasmtime.ffi.cast("wasmtime_context_t *", cctx)
            err = _call_releasing(context, ctx.alloc_func, vals, 1, trap_slot)
    finally:
        ctx.placing = ""
    if err != _NULL or trap_slot[0] != _NULL:
        # wasmtime-py's objects take ownership (and free the C objects) and carry the frames.
        fault = cffi_wasmtime.fault_from(err, trap_slot)
        inner = trap_error(fault, ctx, ctx.limits)  # what gn_alloc's own trap means (takes ctx.error)
        ctx.error = type(inner)(f"guest trapped in gn_alloc during a host call: {inner.message}",
                                plugin=ctx.name, guest_message=inner.guest_message, frames=inner.frames)
        return None
    return int(vals[0].i32)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]  # typeshed leaves CFUNCTYPE untyped
def _finalize(env: int | None) -> None:
    with contextlib.suppress(BaseException):  # a ctypes callback must not raise
        _LIVE.pop(env or 0, None)


ENV_IMPORTS: dict[str, ImportSpec] = {
    spec.name: spec for spec in (
        define_import(ENV_MODULE, "gn_log", ("i32", "i32", "i32"), (), _gn_log, DROP),
        define_import(ENV_MODULE, "gn_panic", ("i32", "i32"), (), _gn_panic, RUN),  # refuses itself
        define_import(ENV_MODULE, "gn_time_ms", (), ("i64",), _gn_time_ms, RUN),
        define_import(ENV_MODULE, "gn_host_call", ("i32", "i32", "i32", "i32"), ("i64",), _gn_host_call,
                      REFUSE),
    )
}
"""ABI.md's ``env`` table: with :data:`.wasi.WASI_IMPORTS`, the only imports a guest may have."""

ENV_SIGNATURES: dict[str, FuncType] = {name: spec.func_type() for name, spec in ENV_IMPORTS.items()}
"""For comparing signatures only (a ``FuncType`` gets tied to the first engine that uses it)."""


def link_imports(store: Store, ctx: HostContext, specs: list[ImportSpec]) -> list[Func]:
    """Create the module's imports in ``store``, in import order, bound to ``ctx``: only what the
    module imports is linked.

    The binding lives as long as the store: wasmtime calls the finalizer when the store is dropped.
    """
    if not specs:
        return []  # no function would hold the key, so nothing would finalize it
    key = next(_KEYS)
    _LIVE[key] = ctx
    made: dict[str, Func] = {}
    funcs: list[Func] = []
    for spec in specs:
        func = made.get(spec.qualified)
        if func is None:
            raw = ffi.wasmtime_func_t()
            ty = spec.func_type()  # held in a local: the C call must not outlive it
            ffi.wasmtime_func_new_unchecked(store._context(), ty.ptr(), spec.callback[1], key, _finalize,
                                            ctypes.byref(raw))
            func = made[spec.qualified] = Func._from_raw(raw)
        funcs.append(func)
    return funcs
