"""When the fast dispatcher may run a plugin's guest code without releasing the GIL.

Why: releasing the GIL around a guest call lets long calls run in parallel, but for a tiny hook call
(a few µs) it is the whole cost: on two threads each release hands the GIL to the other thread,
which keeps it until its own next release, so every call waits for the other (a convoy; CPU per call
doubled and two threads ran slower than one). Keeping the GIL for calls that are known to be short
removes that, and is safe only because the hard deadline no longer needs the GIL: the epoch is
advanced by a native timer (:mod:`.epoch_timer`), and fuel still bounds the call.

The measure is fuel (guest instructions), not time: it does not change with the machine's load or
with how long the thread waited for the GIL, so the policy does not flap on a busy machine. Time in
host functions costs little fuel, but those run Python, which follows the GIL's usual rules.
"""

from __future__ import annotations

from typing import Literal

GilPolicyName = Literal["adaptive", "release"]
GIL_POLICIES: tuple[GilPolicyName, ...] = ("adaptive", "release")

LONG_CALL_FUEL = 500_000
"""A call that used more fuel than this is "long". On a 2020s core wasmtime runs a tight loop at
about 10 fuel per ns and typical guest code at 2-5, so this is 50-250 µs of guest time: long enough
that the GIL hand-off (a few µs) is noise, short enough that holding the GIL for it delays other
threads less than one switch interval of CPython (5 ms)."""

HOLD_AFTER_SHORT_CALLS = 16
"""Consecutive short calls, made releasing the GIL, before the plugin's calls keep it."""

MAX_HOLD_AFTER = 4096
"""The cap of :attr:`GilPolicy.hold_after`, which doubles each time a held call turns out long."""


class GilPolicy:
    """One plugin's adaptive state, shared by its instances (threads update it without a lock: a
    lost increment only delays a switch by a call).

    Starts releasing. After :attr:`hold_after` consecutive short calls it holds the GIL; a call that
    turns out long (held or not) resets the count, and a long *held* call switches back to releasing
    and doubles :attr:`hold_after` (hysteresis: a plugin that mixes long and short calls stops
    flapping and settles on releasing).
    """

    __slots__ = ("forbidden", "hold", "hold_after", "long_while_held", "short_streak")

    def __init__(self) -> None:
        self.hold = False
        self.hold_after = HOLD_AFTER_SHORT_CALLS
        self.short_streak = 0
        self.long_while_held = 0
        """How many held calls turned out long (each switched the plugin back to releasing)."""
        self.forbidden = False
        """Set when nothing native advances the epoch any more (a forked child): never hold again."""

    def forbid(self) -> None:
        """Release the GIL in every call from now on: only a Python thread can end a call now."""
        self.forbidden = True
        self.hold = False

    def observe(self, fuel_used: int, held: bool, timed_out: bool = False) -> None:
        """Record one finished call, ``held`` if it kept the GIL. A call that hit the hard deadline
        is long whatever ``fuel_used`` says: wasmtime does not write back the fuel a loop burnt
        when the epoch traps it."""
        if timed_out or fuel_used > LONG_CALL_FUEL:
            self.short_streak = 0
            if held:
                self.hold = False
                self.long_while_held += 1
                self.hold_after = min(self.hold_after * 2, MAX_HOLD_AFTER)
        elif not self.hold and not self.forbidden:
            self.short_streak += 1
            if self.short_streak >= self.hold_after:
                self.hold = True

    def __repr__(self) -> str:
        return (f"<GilPolicy {'hold' if self.hold else 'release'} streak={self.short_streak}/"
                f"{self.hold_after} long_while_held={self.long_while_held}>")
