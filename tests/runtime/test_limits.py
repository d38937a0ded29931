from __future__ import annotations

import pytest

from gonext_plugins.errors import InvalidLimits
from gonext_plugins.runtime import Limits


def test_defaults_are_valid_and_documented_values() -> None:
    limits = Limits()
    assert limits.memory_pages == 256
    assert limits.memory_bytes == 256 * 65536
    assert limits.max_input_bytes == 1 << 20
    assert limits.max_log_bytes == 4096


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"memory_pages": 0}, "memory_pages must be positive"),
    ({"fuel": -1}, "fuel must be positive"),
    ({"max_instances": 0}, "max_instances must be positive"),
    ({"memory_pages": 65537}, "over the 32-bit maximum"),
    ({"soft_timeout_ms": 500, "hard_timeout_ms": 100}, "below soft_timeout_ms"),
    ({"min_instances": 5, "max_instances": 2}, "min_instances (5) is above max_instances"),
    ({"max_uses": 1.5}, "must be an integer"),
    ({"fuel": True}, "must be a number"),
])
def test_invalid_limits_are_refused_with_a_clear_message(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidLimits) as info:
        Limits(**changes)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_none_turns_fuel_and_soft_timeout_off() -> None:
    limits = Limits(fuel=None, soft_timeout_ms=None)
    assert limits.fuel is None and limits.soft_timeout_ms is None


def test_capped_by_only_lowers() -> None:
    host = Limits(memory_pages=128, fuel=None, max_instances=8, hard_timeout_ms=1000, soft_timeout_ms=100)
    plugin = Limits(memory_pages=64, fuel=1000, max_instances=16, hard_timeout_ms=500,
                    soft_timeout_ms=400)
    merged = plugin.capped_by(host)
    assert merged.memory_pages == 64
    assert merged.fuel == 1000  # fuel on under a fuel-off runtime is lowering
    assert merged.max_instances == 8
    assert merged.hard_timeout_ms == 500
    assert merged.soft_timeout_ms == 100
    # A plugin cannot turn fuel off under a fuel-on runtime.
    assert Limits(fuel=None).capped_by(Limits(fuel=10)).fuel == 10
