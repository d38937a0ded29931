"""The fast dispatcher: the hook hot path straight onto libwasmtime's C API.

Same contract and results as ``dispatch_slow.SlowDispatcher`` (see :mod:`.dispatch`); the difference
is cost. Profiling the reference path showed almost all time in wasmtime-py's per-call machinery
(``Func.__call__`` re-reads the function type and boxes each ``Val``; ``Memory.read/write`` build
ctypes arrays), not in the guest. Here, per call:

- no Python object is built for the call: one preallocated ``wasmtime_val_raw_t[4]`` array and one
  trap slot per instance feed ``wasmtime_func_call_unchecked`` (cffi ABI mode, about 0.3 µs a call);
- only guest code may run with the GIL released (the hook call and the ``gn_free`` of its body: two
  releases a call). Fuel, the epoch deadline and the memory size go through the ``prepared_*``
  functions of ``_wasmtime_ffi`` (its ``held_*`` ones without per-argument checks), which keep the
  GIL: releasing it for a call of nanoseconds let another thread take it, and under two threads
  every call waited for it several times over;
- with the runtime's ``gil_policy="adaptive"`` (and a native epoch ticker), a plugin whose recent
  calls were all short (:class:`~gonext_plugins.runtime.gil.GilPolicy`, measured in fuel) runs
  the hook call and ``gn_free`` through ``prepared_func_call``, keeping the GIL too: no release at all
  for a tiny call. A held call that turns out long switches the plugin back to releasing;
- name and payload are copied into one ``gn_alloc`` block reused across calls, and the body out,
  by slicing one ``ffi.buffer`` over linear memory from its base pointer, read once per instance
  (the engine is built with ``memory_may_move`` off, ``compiler.ENGINE_SETTINGS``) and re-sliced
  when the memory grows (cheaper than ``ffi.memmove``/``ffi.unpack`` on a new pointer), and
  every guest pointer is bounds-checked against the memory size: first the size last read (memory
  only grows, so a range inside it is inside memory now), then, only when that check fails, the
  size read *after* the call.

Faults become wasmtime-py ``Trap``/``WasmtimeError`` objects (which own and free the C objects) and
go through the shared ``trap_error``, so errors are exactly the slow dispatcher's.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

from wasmtime import Func, Memory, Store

from gonext_plugins.errors import HookError, PluginTimeout
from gonext_plugins.runtime import _wasmtime_ffi as cffi_wasmtime
from gonext_plugins.runtime.dispatch import TRAP_TYPES, UNLIMITED_FUEL, arm, decode_result, trap_error
from gonext_plugins.runtime.host import HostContext
from gonext_plugins.runtime.limits import Limits

_MIN_BUFFER = 1024  # same growth policy as the slow dispatcher, so both behave alike near the cap

_ffi = cffi_wasmtime.ffi
_lib = cffi_wasmtime.lib
_NULL = _ffi.NULL
_call = _lib.wasmtime_func_call_unchecked  # runs guest code: releases the GIL
# The rest keep it (see the module docstring). The ``prepared_*`` ones take ready ctypes objects
# only (``_held_arg``, ``c_uint64``, ``c_size_t``), every argument below is one.
_call_held = cffi_wasmtime.prepared_func_call  # runs guest code keeping it (short calls, adaptive policy)
_mem_size = cffi_wasmtime.prepared_memory_data_size
_mem_data = cffi_wasmtime.held_memory_data
_set_fuel = cffi_wasmtime.prepared_set_fuel
_get_fuel = cffi_wasmtime.prepared_get_fuel
_set_deadline = cffi_wasmtime.prepared_set_epoch_deadline
_error_at = cffi_wasmtime.error_at
_held_arg = cffi_wasmtime.held_arg
_FOUR, _TWO = ctypes.c_size_t(4), ctypes.c_size_t(2)  # argument counts, as ready held_* arguments


class FastDispatcher:
    """Drives one instance through ``wasmtime_func_call_unchecked``; see the module docstring."""

    keeps_gil_when_short: ClassVar[bool] = True
    """Tells the runtime this dispatcher follows ``ctx.gil`` (the adaptive GIL policy)."""

    def __init__(self, store: Store, exports: Mapping[str, Any], memory: Memory, limits: Limits,
                 ctx: HostContext) -> None:
        self._store = store  # keeps the context pointer below alive
        self._exports = exports
        self._limits = limits
        self._ctx = ctx
        self._name = ctx.name
        self._fuel = limits.fuel
        self._gil = ctx.gil  # the plugin's GilPolicy; None: always release
        # The fuel set before each call and read after: the limit, or (fuel off) a budget never
        # reached, so the adaptive policy still sees how much guest work each call did.
        self._meter = limits.fuel if limits.fuel is not None or self._gil is None else UNLIMITED_FUEL
        self._meter_arg = ctypes.c_uint64(self._meter or 0)
        self._max_output = limits.max_output_bytes
        self._cctx = cffi_wasmtime.context_of(store)
        self._mem = cffi_wasmtime.memory_of(memory)
        self._caddr = _held_arg(self._cctx)  # the same two as ready held_* arguments
        self._maddr = _held_arg(self._mem)
        self._alloc = cffi_wasmtime.func_of(exports["gn_alloc"])
        self._free = cffi_wasmtime.func_of(exports["gn_free"])
        # Handle functions by str and bytes name; only i32x4 -> i64 exports qualify (the loader
        # checked gn_handle_hook/gn_handle_job; call() accepts nothing else).
        # Each as (cffi pointer, its address as a ready held_func_call argument).
        self._handlers: dict[str | bytes, tuple[Any, ctypes.c_void_p]] = {}
        for key in ("gn_handle_hook", "gn_handle_job"):
            func = exports.get(key)
            if isinstance(func, Func):
                handle = cffi_wasmtime.func_of(func)
                self._handlers[key] = self._handlers[key.encode()] = (handle, _held_arg(handle))
        self._free_arg = _held_arg(self._free)
        self._args = _ffi.new("wasmtime_val_raw_t[4]")
        self._args_arg = _held_arg(self._args)
        # Flat views of the same array: indexing a pointer is cheaper than ``args[i].i32``.
        self._a32 = _ffi.cast("uint32_t *", self._args)  # arg i at [4 * i] (16-byte slots)
        self._a64 = _ffi.cast("int64_t *", self._args)  # result at [0]
        self._trap = _ffi.new("wasm_trap_t **")
        self._trap_arg = _held_arg(self._trap)
        self._fuel_out = _ffi.new("uint64_t *")
        self._fuel_out_arg = _held_arg(self._fuel_out)
        self._deadline_arg = ctypes.c_uint64(ctx.deadline_ticks)  # fixed per plugin (its limits)
        self._size = 0  # memory size last read: a lower bound of the size now
        self._base: Any = _ffi.cast("char *", _mem_data(self._caddr, self._maddr))  # never moves
        self._memory: Any = _ffi.buffer(self._base, 0)  # the first _size bytes: sliced to copy
        self._grown()
        self._buf_ptr = 0  # an input block from gn_alloc, reused across calls (ABI.md allows it)
        self._buf_cap = 0
        self.fuel_used = 0

    # --- the hot path --------------------------------------------------------------------------

    def call(self, export: str | bytes, name: bytes, payload: bytes) -> bytes | None:
        handler = self._handlers.get(export)
        if handler is None:
            return self._no_handler(export)
        caddr = self._caddr
        ctx = self._ctx
        fuel = self._meter
        gil = self._gil
        held = gil is not None and gil.hold
        # arm(): the same three steps as dispatch.arm, without wasmtime-py in between.
        ctx.begin_call()
        if fuel is not None:
            failed = _set_fuel(caddr, self._meter_arg)
            if failed:
                raise trap_error(cffi_wasmtime.fault_from(_error_at(failed), self._trap), ctx, self._limits)
        _set_deadline(caddr, self._deadline_arg)
        timed_out = False
        try:
            name_len = len(name)
            need = name_len + len(payload)
            ptr = self._buf_ptr if need <= self._buf_cap else self._buffer(need)
            self._memory[ptr:ptr + need] = name + payload
            a32 = self._a32
            a32[0] = ptr
            a32[4] = name_len
            a32[8] = ptr + name_len
            a32[12] = need - name_len
            if held:
                failed = _call_held(caddr, handler[1], self._args_arg, _FOUR, self._trap_arg)
                err = _error_at(failed) if failed else _NULL
            else:
                err = _call(self._cctx, handler[0], self._args, 4, self._trap)
            if err != _NULL or self._trap[0] != _NULL:
                raise trap_error(cffi_wasmtime.fault_from(err, self._trap), ctx, self._limits)
            packed = self._a64[0]
            if not packed:  # (0, 0): success without a body, the usual action result
                return None
            bptr = (packed >> 32) & 0xFFFFFFFF
            blen = packed & 0xFFFFFFFF
            # A status, a bad result, or a body past the size we knew: the shared decoder, against
            # the size now, says which (and raises).
            if not (bptr and 0 < blen <= self._max_output and bptr + blen <= self._size) and decode_result(
                    packed, self._grown(), self._max_output, self._name) is None:
                return None
            body: bytes = self._memory[bptr:bptr + blen]
            a32[0] = bptr
            a32[4] = blen
            ctx.placing = "gn_free"  # imports made there follow ABI.md's no-re-entry rule
            if held:
                failed = _call_held(caddr, self._free_arg, self._args_arg, _TWO, self._trap_arg)
                err = _error_at(failed) if failed else _NULL
            else:
                err = _call(self._cctx, self._free, self._args, 2, self._trap)
            ctx.placing = ""
            if err != _NULL or self._trap[0] != _NULL:
                raise trap_error(cffi_wasmtime.fault_from(err, self._trap), ctx, self._limits)
            return body
        except PluginTimeout:
            timed_out = True
            raise
        finally:
            if fuel is not None:
                used = self._account(fuel)
                if gil is not None:
                    gil.observe(used, held, timed_out)

    # --- the rest ------------------------------------------------------------------------------

    def call_raw(self, export: str, *args: int) -> Any:
        """Any export with integer args, via wasmtime-py (not a hot path; it handles every type)."""
        func = self._exports.get(export)
        if not isinstance(func, Func):
            raise HookError(f"the module has no function export {export!r}", status="unknown_hook",
                            plugin=self._name)
        arm(self._store, self._limits, self._ctx)
        try:
            return func(self._store, *args)
        except TRAP_TYPES as exc:
            raise trap_error(exc, self._ctx, self._limits) from None
        finally:
            if self._fuel is not None:
                self._account(self._fuel)

    def _no_handler(self, export: str | bytes) -> NoReturn:
        key = export.decode() if isinstance(export, bytes) else export
        raise HookError(f"the module has no export {key}", status="unknown_hook", plugin=self._name)

    def memory_bytes(self) -> int:
        """The memory size now: one ``held_*`` read (the GIL kept), which also refreshes the bound."""
        return self._grown()

    def _grown(self) -> int:
        """Read the memory size again (it only grows); the base pointer stays where it was."""
        size: int = _mem_size(self._caddr, self._maddr)
        if size != self._size:
            self._size = size
            self._memory = _ffi.buffer(self._base, size)
        return size

    def _place(self, export: str, nargs: int) -> int:
        """Call ``gn_alloc``/``gn_free`` for the host, args already in ``self._args``; returns the
        result i32. Imports made there follow ABI.md's no-re-entry rule (``HostContext.placing``)."""
        self._ctx.placing = export
        err = _call(self._cctx, self._alloc if export == "gn_alloc" else self._free, self._args, nargs,
                    self._trap)
        self._ctx.placing = ""
        if err != _NULL or self._trap[0] != _NULL:
            raise trap_error(cffi_wasmtime.fault_from(err, self._trap), self._ctx, self._limits)
        return int(self._args[0].i32)

    def _buffer(self, size: int) -> int:
        """A guest block of at least ``size`` bytes (the slow dispatcher's policy, step for step)."""
        args = self._args
        old_cap = self._buf_cap
        if old_cap:
            args[0].i32 = self._buf_ptr
            args[1].i32 = old_cap
            self._place("gn_free", 2)
            self._buf_ptr = self._buf_cap = 0
        want = max(size, _MIN_BUFFER, 2 * old_cap)
        args[0].i32 = want
        ptr = self._place("gn_alloc", 1)
        if ptr == 0 and want > size:
            want = size
            args[0].i32 = want
            ptr = self._place("gn_alloc", 1)
        ptr &= 0xFFFFFFFF
        if ptr == 0 or ptr + want > self._grown():
            raise HookError(f"gn_alloc could not provide {size} bytes for the payload",
                            status="out_of_memory", plugin=self._name)
        self._buf_ptr, self._buf_cap = ptr, want
        return ptr

    def _account(self, fuel: int) -> int:
        """The fuel the call used out of ``fuel``; recorded as ``fuel_used`` only when the plugin
        meters fuel (the dispatcher contract: 0 when fuel is off)."""
        failed = _get_fuel(self._caddr, self._fuel_out_arg)
        if failed:
            cffi_wasmtime.consume_error(_error_at(failed))
            used = fuel
        else:
            used = fuel - int(self._fuel_out[0])
        if self._fuel is not None:
            self.fuel_used = used
        return used
