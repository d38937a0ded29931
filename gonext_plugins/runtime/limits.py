"""Per-runtime and per-plugin resource limits.

A ``Limits`` is validated when it is built, so a bad value fails at configuration time with a clear
message instead of surfacing later as an odd trap. Per-plugin limits can only lower the runtime's:
:meth:`Limits.capped_by` takes the field-wise minimum (``None`` meaning "unlimited").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from gonext_plugins.errors import InvalidLimits

WASM_PAGE = 65536
MAX_PAGES = 65536  # 4 GiB: the whole 32-bit address space

# Fields that may be None (meaning: off / unlimited).
_OPTIONAL = frozenset({"fuel", "soft_timeout_ms"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one call and one plugin's pool.

    ``fuel=None`` turns the instruction budget off; ``soft_timeout_ms=None`` turns the warning off.
    Every other value must be a positive integer.
    """

    memory_pages: int = 256
    fuel: int | None = 500_000_000
    soft_timeout_ms: int | None = 250
    hard_timeout_ms: int = 2_000
    max_instances: int = 4
    min_instances: int = 1
    max_uses: int = 10_000
    idle_seconds: float = 60.0
    checkout_timeout_ms: int = 5_000
    max_host_calls: int = 1_000
    max_input_bytes: int = 1 << 20
    max_output_bytes: int = 1 << 20
    max_log_bytes: int = 4_096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidLimits(f"Limits.{f.name} must be a number, got {value!r}")
            if f.name != "idle_seconds" and not isinstance(value, int):
                raise InvalidLimits(f"Limits.{f.name} must be an integer, got {value!r}")
            if value <= 0:
                raise InvalidLimits(f"Limits.{f.name} must be positive, got {value!r}")
        if self.memory_pages > MAX_PAGES:
            raise InvalidLimits(
                f"Limits.memory_pages is {self.memory_pages}, over the 32-bit maximum of {MAX_PAGES} "
                f"pages (4 GiB)")
        if self.soft_timeout_ms is not None and self.hard_timeout_ms < self.soft_timeout_ms:
            raise InvalidLimits(
                f"Limits.hard_timeout_ms ({self.hard_timeout_ms}) is below soft_timeout_ms "
                f"({self.soft_timeout_ms}); the hard deadline must come last")
        if self.min_instances > self.max_instances:
            raise InvalidLimits(
                f"Limits.min_instances ({self.min_instances}) is above max_instances "
                f"({self.max_instances})")

    @property
    def memory_bytes(self) -> int:
        return self.memory_pages * WASM_PAGE

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed (validated again: ``__post_init__`` checks each value)."""
        return dataclasses.replace(self, **changes)

    def capped_by(self, host: Limits) -> Limits:
        """These (plugin) limits, never above ``host``'s: the field-wise minimum.

        ``None`` counts as unlimited, so a plugin may turn fuel on under a fuel-off runtime but not
        off under a fuel-on one. The result is validated; the minimum of two valid limits is valid.
        A plugin's ``Limits`` is a full value: fields left at their defaults take part too.
        """
        merged: dict[str, Any] = {}  # each field's own type; Limits() validates the whole
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(host, f.name)
            if mine is None:
                merged[f.name] = theirs
            elif theirs is None:
                merged[f.name] = mine
            else:
                merged[f.name] = min(mine, theirs)
        return Limits(**merged)


@dataclass(frozen=True, slots=True)
class CompileLimits:
    """Caps on turning a module into machine code, which happens before any ``Limits`` apply.

    ``max_module_bytes`` and ``max_functions`` are checked on the bytes before anything is compiled
    (compile time and memory grow with both); ``cpu_seconds`` and ``memory_bytes`` bound the child
    process that compiles a module seen for the first time (all its threads together).
    """

    max_module_bytes: int = 16 << 20
    max_functions: int = 50_000
    cpu_seconds: int = 30
    memory_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidLimits(f"CompileLimits.{f.name} must be a positive integer, got {value!r}")
