"""The dispatcher contract: how one ABI call is driven through one instance.

A *dispatcher* owns the guest side of a single instance's calls. The instance wrapper
(:mod:`gonext_plugins.runtime.instance`) builds one per instance, right after instantiation, and only
ever uses it from the thread that has the instance checked out, so a dispatcher needs no locking.
Two implementations exist: ``dispatch_slow.SlowDispatcher`` (wasmtime-py's high-level API, the
reference) and ``dispatch_fast.FastDispatcher`` (raw ``wasmtime_func_call_unchecked``). They must
behave identically; everything they share lives here.

Construction::

    Dispatcher(store, exports, memory, limits, ctx)

- ``store``: the instance's ``wasmtime.Store`` (fuel on, epoch interruption on, store limiter set).
- ``exports``: ``dict[str, wasmtime.Func | wasmtime.Memory | ...]`` of the instance. The loader has
  already checked that ``gn_alloc``, ``gn_free``, ``gn_handle_hook`` and ``memory`` exist with
  ABI.md's signatures, and ``gn_handle_job`` too when present.
- ``memory``: the exported ``wasmtime.Memory``.
- ``limits``: the plugin's effective :class:`~gonext_plugins.runtime.limits.Limits`.
- ``ctx``: the instance's :class:`~gonext_plugins.runtime.host.HostContext` (``ctx.name`` is the
  plugin name for errors, ``ctx.deadline_ticks`` the epoch deadline to arm).

``call(export, name, payload) -> bytes | None`` runs ``gn_handle_hook`` or ``gn_handle_job``:

1. :func:`arm` the store: ``ctx.begin_call()``, fuel to ``limits.fuel`` (``UNLIMITED_FUEL`` when
   None: the engine always meters fuel), epoch deadline to ``ctx.deadline_ticks``. Once per
   ``call``: gn_alloc/gn_free share the budget.
2. Put ``name`` (UTF-8) and ``payload`` (JSON, already checked against ``max_input_bytes`` by the
   caller) into guest memory obtained from ``gn_alloc``. Reusing a block across calls is allowed
   (ABI.md); grow it with ``gn_free`` + ``gn_alloc``. ``gn_alloc`` returning 0 (or a block that does
   not fit in memory) raises ``HookError(status="out_of_memory")``.
3. Call the export with ``(name_ptr, name_len, payload_ptr, payload_len)``; :func:`decode_result`
   the i64 against the memory size *after* the call and ``limits.max_output_bytes``.
4. With a body: copy it out, call ``gn_free(ptr, len)``, return the bytes. No body: return None.
5. Set ``self.fuel_used`` (0 when fuel is off) whether the call succeeded or not.

Every ``gn_alloc``/``gn_free`` call a dispatcher makes for the host (steps 2 and 4) runs with
``ctx.placing`` set to that export's name, and cleared after: the ``env`` trampolines refuse imports
made from there (ABI.md: host calls are not re-entrant; ``gn_log`` is dropped, ``gn_time_ms`` runs).

Errors: a wasmtime ``Trap``/``WasmtimeError`` from any guest call becomes :func:`trap_error`'s
result (``PluginTrap``, ``PluginTimeout`` for the deadline, the guest's ``gn_panic`` message in
``guest_message``); bad results are ``HookError`` from :func:`decode_result`. After a trap the
instance is thrown away by the caller, so a dispatcher need not clean up.

``call_raw(export, *args: int)`` arms the store the same way, calls any exported function with
integer arguments and returns its result as wasmtime-py would (None, a value, or a list); for
``plugin.call`` and tools. An unknown export raises ``HookError(status="unknown_hook")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from wasmtime import Memory, Store

from gonext_plugins.errors import HookError
from gonext_plugins.runtime.host import HostContext
from gonext_plugins.runtime.limits import Limits
from gonext_plugins.runtime.trap_errors import TRAP_TYPES, trap_error

__all__ = ["HOOK_EXPORT", "JOB_EXPORT", "STATUS_BY_LEN", "TRAP_TYPES", "UNLIMITED_FUEL", "Dispatcher", "arm",
           "decode_result", "trap_error", "unpack"]

HOOK_EXPORT = "gn_handle_hook"
JOB_EXPORT = "gn_handle_job"

STATUS_BY_LEN: dict[int, str] = {-1: "error", -2: "out_of_memory", -3: "bad_payload", -4: "unknown_hook"}
"""ABI.md's negative lens (with ptr 0) of a hook or job result."""

_STATUS_TEXT = {
    "error": "the guest reported an error",
    "out_of_memory": "the guest ran out of memory",
    "bad_payload": "the guest could not decode the payload",
    "unknown_hook": "the guest does not handle this hook or job",
}


class Dispatcher(Protocol):
    """One instance's call driver; see the module docstring for the full contract."""

    fuel_used: int

    def __init__(self, store: Store, exports: Mapping[str, Any], memory: Memory, limits: Limits,
                 ctx: HostContext) -> None: ...

    def call(self, export: str | bytes, name: bytes, payload: bytes) -> bytes | None: ...

    def call_raw(self, export: str, *args: int) -> Any: ...

    def memory_bytes(self) -> int:
        """The instance's linear memory size now (the pool records its peak per plugin)."""
        ...


UNLIMITED_FUEL = (1 << 63) - 1
"""What ``fuel=None`` sets: the engine always consumes fuel, so "off" means a budget never reached."""


def arm(store: Store, limits: Limits, ctx: HostContext) -> None:
    """Reset per-call host state, refill fuel, set the hard deadline. Before every guest call."""
    ctx.begin_call()
    store.set_fuel(UNLIMITED_FUEL if limits.fuel is None else limits.fuel)
    store.set_epoch_deadline(ctx.deadline_ticks)


def unpack(packed: int) -> tuple[int, int]:
    """Split ABI.md's packed i64 into (unsigned 32-bit ptr, signed 32-bit len)."""
    ptr = (packed >> 32) & 0xFFFFFFFF
    length = packed & 0xFFFFFFFF
    if length >= 0x80000000:
        length -= 0x100000000
    return ptr, length


def decode_result(packed: int, memory_size: int, max_output: int, plugin: str) -> tuple[int, int] | None:
    """Check a packed hook/job result; ``(ptr, len)`` of the body, None for "no body".

    Raises ``HookError`` with the ABI status for a negative len, and ``bad_result`` for anything
    else ABI.md does not allow: another negative len, a range outside memory, a body over the cap.
    """
    ptr, length = unpack(packed)
    if ptr == 0:
        if length == 0:
            return None
        status = STATUS_BY_LEN.get(length)
        if status is not None:
            raise HookError(_STATUS_TEXT[status], status=status, plugin=plugin)
        raise HookError(f"invalid result: ptr 0 with len {length}", status="bad_result", plugin=plugin)
    if length <= 0:
        raise HookError(f"invalid result: ptr {ptr} with len {length}", status="bad_result", plugin=plugin)
    if length > max_output:
        raise HookError(f"result of {length} bytes is over max_output_bytes={max_output}",
                        status="bad_result", plugin=plugin)
    if ptr + length > memory_size:
        raise HookError(f"result range [{ptr}, {ptr + length}) is outside guest memory ({memory_size} bytes)",
                        status="bad_result", plugin=plugin)
    return ptr, length

