"""The reference dispatcher: wasmtime-py's high-level API, written for clarity, not speed.

It follows :mod:`gonext_plugins.runtime.dispatch` step by step, and the fast dispatcher is tested
against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wasmtime import Func, Memory, Store

from gonext_plugins.errors import HookError
from gonext_plugins.runtime.dispatch import TRAP_TYPES, arm, decode_result, trap_error
from gonext_plugins.runtime.host import HostContext
from gonext_plugins.runtime.limits import Limits

_MIN_BUFFER = 1024


class SlowDispatcher:
    """Drives one instance with ``Func.__call__`` and ``Memory.read/write``."""

    def __init__(self, store: Store, exports: Mapping[str, Any], memory: Memory, limits: Limits,
                 ctx: HostContext) -> None:
        self._store = store
        self._exports = exports
        self._memory = memory
        self._limits = limits
        self._ctx = ctx
        self._alloc: Func = exports["gn_alloc"]
        self._free: Func = exports["gn_free"]
        self._buf_ptr = 0  # an input block from gn_alloc, reused across calls (ABI.md allows it)
        self._buf_cap = 0
        self.fuel_used = 0

    def memory_bytes(self) -> int:
        """The instance's linear memory size now."""
        return int(self._memory.data_len(self._store))

    def call(self, export: str | bytes, name: bytes, payload: bytes) -> bytes | None:
        key = export.decode() if isinstance(export, bytes) else export
        func = self._exports.get(key)
        if not isinstance(func, Func):
            raise HookError(f"the module has no export {key}", status="unknown_hook", plugin=self._ctx.name)
        store = self._store
        arm(store, self._limits, self._ctx)
        try:
            ptr = self._buffer(len(name) + len(payload))
            self._memory.write(store, name, ptr)
            self._memory.write(store, payload, ptr + len(name))
            packed = self._guest(func, ptr, len(name), ptr + len(name), len(payload))
            body = decode_result(packed, self._memory.data_len(store), self._limits.max_output_bytes,
                                 self._ctx.name)
            if body is None:
                return None
            bptr, blen = body
            data = bytes(self._memory.read(store, bptr, bptr + blen))
            self._place("gn_free", bptr, blen)
            return data
        finally:
            self._account()

    def call_raw(self, export: str, *args: int) -> Any:
        func = self._exports.get(export)
        if not isinstance(func, Func):
            raise HookError(f"the module has no function export {export!r}", status="unknown_hook",
                            plugin=self._ctx.name)
        arm(self._store, self._limits, self._ctx)
        try:
            return self._guest(func, *args)
        finally:
            self._account()

    def _buffer(self, size: int) -> int:
        """A guest block of at least ``size`` bytes, reusing the previous one when it fits."""
        if size <= self._buf_cap:
            return self._buf_ptr
        old_cap = self._buf_cap
        if old_cap:
            self._place("gn_free", self._buf_ptr, old_cap)
            self._buf_ptr = self._buf_cap = 0
        want = max(size, _MIN_BUFFER, 2 * old_cap)
        ptr: int = self._place("gn_alloc", want)
        if ptr == 0 and want > size:
            want = size
            ptr = self._place("gn_alloc", want)
        ptr &= 0xFFFFFFFF
        if ptr == 0 or ptr + want > self._memory.data_len(self._store):
            raise HookError(f"gn_alloc could not provide {size} bytes for the payload",
                            status="out_of_memory", plugin=self._ctx.name)
        self._buf_ptr, self._buf_cap = ptr, want
        return ptr

    def _place(self, export: str, *args: int) -> Any:
        """Call ``gn_alloc``/``gn_free`` for the host: imports made there follow ABI.md's
        no-re-entry rule (``HostContext.placing``)."""
        self._ctx.placing = export
        try:
            return self._guest(self._alloc if export == "gn_alloc" else self._free, *args)
        finally:
            self._ctx.placing = ""

    def _guest(self, func: Func, *args: int) -> Any:
        try:
            return func(self._store, *args)
        except TRAP_TYPES as exc:
            raise trap_error(exc, self._ctx, self._limits) from None

    def _account(self) -> None:
        fuel = self._limits.fuel
        if fuel is not None:
            try:
                self.fuel_used = fuel - self._store.get_fuel()
            except TRAP_TYPES:
                self.fuel_used = fuel
