"""The capability registry and the host functions that belong to each capability.

A capability is a named permission an admin grants to a plugin ("kv", "http.fetch",
"posts.read"). Every host function belongs to exactly one, and the runtime checks the grant on
every ``gn_host_call``. Sites add their own::

    from gonext_plugins import capabilities

    capabilities.register("posts.read", "Read published posts", risk="low")

    @capabilities.host_function("posts.get", capability="posts.read")
    def posts_get(plugin, payload):
        return {...}  # any JSON-able value

Pure data: no database access here (the built-in functions live in ``host_functions``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .conf import DEFAULTS, MiB
from .errors import UnknownCapability
from .host_rules import ALWAYS_GRANTED as ALWAYS_GRANTED  # re-exported: its home is host_rules (Django-free)
from .runtime.host import HostCallable, HostFunctions

Risk = Literal["low", "medium", "high"]
RISKS: tuple[Risk, ...] = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    description: str
    risk: Risk
    builtin: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "risk": self.risk,
                "builtin": self.builtin, "functions": sorted(functions_of(self.name))}


_lock = threading.Lock()
_registry: dict[str, Capability] = {}


host_functions = HostFunctions()
"""The process-wide registry every runtime routes ``gn_host_call`` through."""


def register(name: str, description: str, risk: Risk = "medium", *, builtin: bool = False) -> Capability:
    """Declare a capability. Registering the same name again with the same text is a no-op; with a
    different description or risk it replaces the old one (so a site can reword a built-in)."""
    if risk not in RISKS:
        raise ValueError(f"risk must be one of {', '.join(RISKS)}, not {risk!r}")
    if not name or name.strip() != name:
        raise ValueError(f"invalid capability name {name!r}")
    capability = Capability(name, description, risk, builtin)
    with _lock:
        _registry[name] = capability
    return capability


def unregister(name: str) -> None:
    """Remove a capability and its host functions (for tests and for sites that drop a feature)."""
    with _lock:
        _registry.pop(name, None)
    for function in list(host_functions):
        if function.capability == name:
            host_functions.unregister(function.name)


def get(name: str) -> Capability:
    try:
        return _registry[name]
    except KeyError as exc:
        known = ", ".join(sorted(_registry))
        raise UnknownCapability(f"unknown capability {name!r}; known: {known}") from exc


def is_known(name: str) -> bool:
    return name in _registry


def all_capabilities() -> list[Capability]:
    return sorted(_registry.values(), key=lambda c: c.name)


def unknown(names: Iterable[str]) -> list[str]:
    """The names in ``names`` that no one registered, sorted."""
    return sorted({n for n in names if n not in _registry})


def describe(names: Iterable[str]) -> list[Capability]:
    """Registered capabilities for ``names``; an unregistered name gets a placeholder marked high
    risk, so an install dialog never hides what it cannot explain."""
    unexplained = "Not registered on this site: no host function provides it."
    return [_registry.get(n) or Capability(n, unexplained, "high") for n in sorted(set(names))]


def functions_of(capability: str) -> list[str]:
    return [f.name for f in host_functions if f.capability == capability]


def host_function(name: str, *, capability: str,
                  pure: bool = False) -> Callable[[HostCallable], HostCallable]:
    """Decorator: make ``func(plugin, payload) -> JSON`` callable from guests as ``name``.

    The capability must be registered first, so a typo cannot create an ungrantable function.
    ``pure``: its answer depends only on the payload and the calling plugin's settings and grants
    (a pure hook that calls it may still have its result reused); most functions are not.
    """

    def decorator(func: HostCallable) -> HostCallable:
        if capability not in _registry:
            raise UnknownCapability(
                f"host function {name!r} names capability {capability!r}, which is not registered; "
                "call gonext_plugins.capabilities.register() first"
            )
        host_functions.register(name, capability, func, pure=pure)
        return func

    return decorator


# Built-in capabilities. Their host functions are registered by ``host_functions`` on app ready.
register("hooks.subscribe", "Run code on the site's actions and filters (for example, change post HTML).",
         "medium", builtin=True)
register("html.raw",
         "Put raw HTML, including scripts, into the site's pages unchecked: it can run scripts in every "
         "page, including those the admins view, and act as any admin who views them. Without it, the "
         "plugin's HTML is sanitized.",
         "high", builtin=True)
register("kv", "Keep a small private key-value store on this site (quota-limited).", "low", builtin=True)
register("jobs.enqueue",
         "Queue its own declared background jobs, which any worker runs later under the plugin's limits, "
         "also from code that runs on an anonymous page view. Capped per plugin: at most JOB_MAX_QUEUED "
         f"unfinished jobs (default {DEFAULTS['JOB_MAX_QUEUED']}) holding at most JOB_MAX_QUEUED_BYTES of "
         f"payload (default {DEFAULTS['JOB_MAX_QUEUED_BYTES'] // MiB} MiB); past either, the call fails "
         "and nothing is queued.", "medium", builtin=True)
register("http.fetch", "Make HTTP requests to the hosts listed in its manifest, from this server.",
         "high", builtin=True)
