"""The two state transitions every operation shares, run inside the caller's transaction on a
locked row: a version starts running (:func:`activate_locked`) or stops (:func:`deactivate_locked`:
deactivated, quarantined, or stopped because a required grant or its publisher key went)."""

from __future__ import annotations

from django.dispatch import Signal

from .. import signals
from ..errors import LifecycleError
from ..models import Plugin, PluginRollout, PluginState
from ._compile import Compiled
from ._tx import Actor, Result, audit, bump_generation, send_on_commit
from .preflight import validate_activation


def activate_locked(plugin: Plugin, actor: Actor, compiled: Compiled) -> Result:
    """Make the active version run (checked by :func:`~.preflight.validate_activation`)."""
    version = plugin.active_version
    if version is None:
        raise LifecycleError("the plugin has no version to activate", plugin=plugin.slug)
    if plugin.state == PluginState.ACTIVE:
        return Result(plugin, version, changed=False)
    validate_activation(plugin, version, compiled)
    before = plugin.state
    plugin.state = PluginState.ACTIVE
    plugin.state_reason = ""
    plugin.save(update_fields=["state", "state_reason", "updated_at"])
    audit("activate", plugin, actor, version=version.version, before=before, after=plugin.state)
    bump_generation()
    send_on_commit(signals.plugin_activated, plugin, version, actor)
    return Result(plugin, version)


def deactivate_locked(plugin: Plugin, actor: Actor, *, state: str = PluginState.INACTIVE,
                      reason: str = "", action: str = "deactivate",
                      signal: Signal = signals.plugin_deactivated) -> Result:
    """Stop the plugin (``state``: inactive or quarantined), audited as ``action`` with ``reason``."""
    if plugin.state == state and not reason:
        return Result(plugin, plugin.active_version, changed=False)
    before = plugin.state
    PluginRollout.objects.filter(plugin=plugin).delete()  # a stopped plugin is in no rollout
    plugin.state = state
    plugin.state_reason = reason[:500]
    plugin.save(update_fields=["state", "state_reason", "updated_at"])
    audit(action, plugin, actor, version=plugin.active_version.version if plugin.active_version else "",
          before=before, after=state, reason=reason)
    bump_generation()
    send_on_commit(signal, plugin, plugin.active_version, actor, reason=reason)
    return Result(plugin, plugin.active_version)
