"""The catalogue of hooks a site offers plugins: name, kind, arguments and what they mean.

The site declares them (``hooks.declare``, usually in ``AppConfig.ready``); the admin, the API,
``manage.py plugin hooks`` and ``plugin dev`` show them. Declaring is documentation, not a gate: a
hook fired without a declaration still runs, as in WordPress. Apart from :mod:`gonext_plugins.hooks`
(which re-exports every name here) because it is data about hooks, not the bus that runs them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import HookDeclarationError

KINDS = ("action", "filter")


@dataclass(frozen=True)
class HookArg:
    """One argument a hook passes, and what it means (for a filter, the first is the value)."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class DeclaredHook:
    """One entry of the site's hook catalogue."""

    name: str
    kind: str
    args: tuple[HookArg, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The shape the API serves and ``plugin hooks --json`` prints."""
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "args": [{"name": a.name, "description": a.description} for a in self.args]}

    @classmethod
    def from_dict(cls, data: Any) -> DeclaredHook:
        """Read :meth:`as_dict`'s shape back (``plugin dev`` reads the dev site's catalogue)."""
        if not isinstance(data, dict):
            raise HookDeclarationError(f"a hook entry must be an object, not {data!r}")
        return _make(data.get("name"), data.get("kind"), data.get("args") or (),
                     data.get("description") or "")


ArgSpec = tuple[str, str] | dict[str, str] | HookArg | str

_catalogue: dict[str, DeclaredHook] = {}
_lock = threading.RLock()


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _arg(spec: Any) -> HookArg:
    if isinstance(spec, HookArg):
        return spec
    if isinstance(spec, str):
        return HookArg(spec)
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return HookArg(spec["name"], str(spec.get("description") or ""))
    if isinstance(spec, tuple | list) and len(spec) == 2 and all(isinstance(x, str) for x in spec):
        return HookArg(spec[0], spec[1])
    raise HookDeclarationError(f"a hook argument is a (name, description) pair or a dict with a "
                               f"name, not {spec!r}")


def _make(name: Any, kind: Any, args: Any, description: Any) -> DeclaredHook:
    if not isinstance(name, str) or not name.strip():
        raise HookDeclarationError(f"a hook name is a non-empty string, not {name!r}")
    if kind not in KINDS:
        raise HookDeclarationError(f'hook {name!r}: kind must be "action" or "filter", not {kind!r}')
    if isinstance(args, str | bytes) or not hasattr(args, "__iter__"):
        raise HookDeclarationError(f"hook {name!r}: args must be a list, not {args!r}")
    return DeclaredHook(name, kind, tuple(_arg(a) for a in args), str(description))


def declare(name: str, kind: str, *, args: Iterable[ArgSpec] = (), description: str = "") -> DeclaredHook:
    """Add a hook to the catalogue of hooks this site offers plugins.

    Declaring the same name again with the same kind replaces the entry (a reloaded module
    declares again); with the other kind it raises :class:`HookDeclarationError`, because a
    plugin subscribed to it would be called the wrong way.
    """
    entry = _make(name, kind, args, description)
    with _lock:
        known = _catalogue.get(name)
        if known is not None and known.kind != entry.kind:
            raise HookDeclarationError(f"hook {name!r} is already declared as {_a(known.kind)}; "
                                       f"it cannot also be {_a(entry.kind)}")
        _catalogue[name] = entry
    return entry


def undeclare(name: str) -> bool:
    """Remove a hook from the catalogue; whether it was there."""
    with _lock:
        return _catalogue.pop(name, None) is not None


@contextmanager
def declared_temporarily(name: str, kind: str, *, args: Iterable[ArgSpec] = (),
                         description: str = "") -> Iterator[DeclaredHook]:
    """Declare for the length of a ``with`` block (tests); the previous entry comes back on exit."""
    before = _catalogue.get(name)
    entry = declare(name, kind, args=args, description=description)
    try:
        yield entry
    finally:
        with _lock:
            if before is None:
                _catalogue.pop(name, None)
            else:
                _catalogue[name] = before


def catalogue() -> list[DeclaredHook]:
    """The declared hooks, sorted by name."""
    with _lock:
        return sorted(_catalogue.values(), key=lambda hook: hook.name)


def declared(name: str) -> DeclaredHook | None:
    return _catalogue.get(name)


def unoffered(wanted: Iterable[tuple[str, str]],
              offered: Iterable[DeclaredHook] | None = None) -> list[tuple[str, str, str]]:
    """The ``(name, kind)`` pairs a plugin subscribes to that the site does not offer, each with
    why: ``(name, kind, reason)``. ``offered`` defaults to this process's catalogue; ``plugin dev``
    passes the dev site's. The one rule the admin's install dialog and ``plugin dev`` share."""
    by_name = {hook.name: hook for hook in (catalogue() if offered is None else offered)}
    missing: list[tuple[str, str, str]] = []
    for name, kind in wanted:
        hook = by_name.get(name)
        if hook is None:
            missing.append((name, kind, "the site does not declare this hook"))
        elif hook.kind != kind:
            missing.append((name, kind, f"the site declares it as {_a(hook.kind)}, not {_a(kind)}"))
    return missing
