"""Turning a failed guest call into the typed error it means.

Its own module because two places need it: the dispatchers (a trap out of an export) and the host
trampolines (a trap out of ``gn_alloc`` while a host function places its result, whose real reason
must reach the error the call ends with). No Django here.
"""

from __future__ import annotations

import re
from typing import Protocol

from wasmtime import Trap, TrapCode, WasmtimeError

from gonext_plugins.errors import PluginTimeout, PluginTrap
from gonext_plugins.runtime.limits import Limits


class RecordsErrors(Protocol):
    """What :func:`trap_error` needs of a ``host.HostContext`` (a protocol: host imports this module)."""

    name: str

    def take_error(self) -> PluginTrap | None: ...


def trap_error(exc: BaseException, ctx: RecordsErrors, limits: Limits) -> PluginTrap:
    """The typed error for a failed guest call: what a host function recorded, else the trap code."""
    recorded = ctx.take_error()
    frames = _frames(exc)
    if recorded is not None:
        recorded.frames = recorded.frames or frames
        return recorded
    code = exc.trap_code if isinstance(exc, Trap) else None
    text = _first_line(exc)
    if code is TrapCode.OUT_OF_FUEL or "all fuel consumed" in text:
        return PluginTrap(f"out of fuel (budget {limits.fuel})", plugin=ctx.name, frames=frames)
    if code is TrapCode.INTERRUPT or "epoch deadline" in text or "interrupt" in text:
        return PluginTimeout(f"call overran hard_timeout_ms={limits.hard_timeout_ms}", plugin=ctx.name,
                             frames=frames)
    return PluginTrap(f"guest trapped: {text}", plugin=ctx.name, frames=frames)


def _first_line(exc: BaseException) -> str:
    """The reason of a trap: wasmtime puts it after "Caused by:", below the backtrace."""
    try:
        text = exc.message if isinstance(exc, Trap) else str(exc)
    except Exception:
        text = type(exc).__name__
    if "Caused by:" in text:
        text = text.rsplit("Caused by:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


_BACKTRACE_LINE = re.compile(r"^\s*\d+:\s+(0x[0-9a-fA-F]+) - (?:[^!\n]*!)?(.*?)\s*$")
_WASM_FUNCTION = re.compile(r"^<wasm function (\d+)>$")


def _frames(exc: BaseException) -> list[str]:
    """The trap's wasm frames, innermost first, as ``name@0x<module offset>`` (``func[N]@...``
    without a name section), so a trap inspector can map each one to a source line.

    A ``Trap`` carries ``Frame`` objects; a host function's refusal (``gn_panic``, a limit) arrives
    as a ``WasmtimeError`` whose message holds wasmtime's printed backtrace instead.
    """
    try:
        if isinstance(exc, Trap):
            return [f"{f.func_name or f'func[{f.func_index}]'}@{f.module_offset:#x}" for f in exc.frames]
        frames = []
        for line in str(exc).split("Caused by:", 1)[0].splitlines():
            match = _BACKTRACE_LINE.match(line)
            if match:
                offset, name = match.groups()
                index = _WASM_FUNCTION.match(name)
                frames.append(f"{f'func[{index.group(1)}]' if index else name}@{offset}")
        return frames
    except Exception:  # a frame list is a courtesy; never let it hide the trap itself
        return []


TRAP_TYPES: tuple[type[BaseException], ...] = (Trap, WasmtimeError)
"""What a guest call can raise in wasmtime-py; pass these to :func:`trap_error`."""
