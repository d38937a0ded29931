"""The peak linear memory the pool records per plugin (for the admin's cost charts), on both
dispatchers: read at an instance's 1st, 9th, 17th... call and at its discard, kept as a running
maximum until the stats rollup takes it. Checkins queue their figures, so a reader settles them
first (``PluginStats.settled``), as every reader in the app does."""

from __future__ import annotations

from gonext_plugins.runtime import Limits, Runtime
from gonext_plugins.runtime.pool import MEMORY_SAMPLE_EVERY

from .conftest import wat

PAGE = 65536


def test_the_peak_follows_memory_growth_and_restarts_when_taken(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="grower", limits=Limits(max_instances=1, max_uses=100))
    stats = plugin._metrics.stats
    stats.take_memory_peak()  # one PluginStats per name for the process's life: start clean
    before = plugin.call("grow", 3)  # the 1st call of the one instance: read after it
    assert stats.settled().memory_peak == (before + 3) * PAGE
    assert stats.take_memory_peak() == (before + 3) * PAGE and stats.settled().memory_peak == 0
    for _ in range(MEMORY_SAMPLE_EVERY - 1):  # calls 2..8: not read
        plugin.call("grow", 1)
    assert stats.settled().memory_peak == 0
    plugin.call("grow", 0)  # the 9th: read, with every page grown since
    assert stats.settled().memory_peak == (before + 3 + MEMORY_SAMPLE_EVERY - 1) * PAGE
    assert plugin.call("grow", 0) == before + 3 + MEMORY_SAMPLE_EVERY - 1  # memory.grow 0 = its size


def test_a_discarded_instance_is_read_on_its_way_out(rt: Runtime) -> None:
    plugin = rt.load(wat("abi_guest"), name="rotated", limits=Limits(max_instances=1, max_uses=3))
    stats = plugin._metrics.stats
    before = plugin.call("grow", 0)
    stats.take_memory_peak()
    plugin.call("grow", 5)  # the 2nd call: not read
    assert stats.settled().memory_peak == 0
    plugin.call("grow", 0)  # the 3rd reaches max_uses: thrown away, so read
    assert stats.settled().memory_peak == (before + 5) * PAGE
