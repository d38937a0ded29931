"""``plugin.info`` ``{}`` -> ``{"slug", "version", "capabilities", "hosts", "hooks"}``: what the
calling plugin holds, so it can check before it calls (a plugin that probes an optional capability
on every page view would otherwise only learn of a refusal from -5).

- ``capabilities``: the capabilities its calls may use now, sorted (what the admin granted and this
  version asks for, plus those every plugin holds: ``log``, ``self``);
- ``hosts``: the hosts ``http.fetch`` may reach (granted and listed by the manifest), sorted;
- ``hooks``: the hooks the site offers, as ``{"name", "kind"}`` (``kind`` is ``"action"`` or
  ``"filter"``), sorted by name.

Capability ``self``, which every plugin holds: a plugin only ever learns about itself. The hook
catalogue lives in a layer above this package, so ``AppConfig.ready`` hands its reader in
(:func:`set_hook_source`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._payload import fields, slug

HookSource = Callable[[], Iterable[tuple[str, str]]]

_hook_source: HookSource = lambda: ()  # noqa: E731  (no catalogue until AppConfig.ready)


def set_hook_source(source: HookSource) -> None:
    """Where ``hooks`` comes from: ``(name, kind)`` pairs of the site's hook catalogue."""
    global _hook_source
    _hook_source = source


def plugin_info(plugin: Any, payload: Any) -> dict[str, Any]:
    """The caller's own slug, version, effective grants and the site's hooks."""
    name = slug(plugin)
    fields(payload, "plugin.info", name)
    loaded = getattr(plugin, "context", None)
    return {
        "slug": name,
        "version": str(getattr(loaded, "version", "") or ""),
        "capabilities": sorted(plugin.capabilities),
        "hosts": sorted(getattr(loaded, "hosts", ()) or ()),
        "hooks": [{"name": hook, "kind": kind} for hook, kind in sorted(_hook_source())],
    }
