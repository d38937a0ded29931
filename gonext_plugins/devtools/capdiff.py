"""The capability diff the dev loop prints after each build: what the plugin asks for now, against
the previous build of this session.

Why: a capability is what an admin consents to; an author should notice the moment a change makes
the plugin ask for more (``+``) or less (``-``). Required and optional capabilities are diffed
separately (moving one from optional to required is a ``-`` in one list and a ``+`` in the
other: the admin's consent changes). On the first build there is nothing to compare with, so
everything is ``=`` ("unchanged", as the issue says) and :attr:`CapDiff.first` is True; the
printed header says so. No Django here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ADDED, REMOVED, UNCHANGED = "+", "-", "="


@dataclass(frozen=True)
class CapDiff:
    """``required`` / ``optional``: ``(sign, capability)`` pairs, sorted by name."""

    required: tuple[tuple[str, str], ...]
    optional: tuple[tuple[str, str], ...]
    first: bool = False

    @property
    def changed(self) -> bool:
        return any(sign != UNCHANGED for sign, _ in self.required + self.optional)

    def lines(self) -> list[str]:
        """Human lines: a header, then ``+ name`` / ``- name`` / ``= name`` per list."""
        if self.first:
            head = "capabilities (first build: nothing to compare with)"
        elif self.changed:
            head = "capabilities changed since the previous build"
        else:
            head = "capabilities unchanged"
        out = [head]
        for label, items in (("required", self.required), ("optional", self.optional)):
            if items:
                out.append(f"  {label}:")
                out.extend(f"    {sign} {name}" for sign, name in items)
        if not self.required and not self.optional:
            out.append("  (none)")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"first": self.first, "changed": self.changed,
                "required": [list(p) for p in self.required], "optional": [list(p) for p in self.optional]}


def capabilities_of(manifest: Any) -> tuple[list[str], list[str]]:
    """(required, optional) from a ``Manifest``, a raw manifest dict, or None (nothing)."""
    if manifest is None:
        return [], []
    if isinstance(manifest, Mapping):
        return list(manifest.get("capabilities") or []), list(manifest.get("optionalCapabilities") or [])
    return list(manifest.capabilities), list(manifest.optional_capabilities)


def _diff(before: Iterable[str] | None, after: Iterable[str]) -> tuple[tuple[str, str], ...]:
    now = set(after)
    if before is None:
        return tuple((UNCHANGED, name) for name in sorted(now))
    was = set(before)
    rows = ([(ADDED, n) for n in now - was] + [(REMOVED, n) for n in was - now]
            + [(UNCHANGED, n) for n in now & was])
    return tuple(sorted(rows, key=lambda row: (row[1], row[0])))


def diff(previous: Any, current: Any) -> CapDiff:
    """Diff two manifests (``Manifest`` objects or raw dicts); ``previous=None`` is the first build."""
    req_now, opt_now = capabilities_of(current)
    if previous is None:
        return CapDiff(_diff(None, req_now), _diff(None, opt_now), first=True)
    req_was, opt_was = capabilities_of(previous)
    return CapDiff(_diff(req_was, req_now), _diff(opt_was, opt_now))
