"""Plugin faults (traps, timeouts, bad results, load errors) and the quarantine they lead to:
WordPress's recovery mode, automatic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..conf import settings
from ..models import Plugin, PluginFault, PluginRollout, PluginState
from ._states import deactivate_locked
from ._tx import Actor, Result, lock
from .rollout import roll_back

SYSTEM_QUARANTINE = "system: quarantine"


def quarantine(plugin: Plugin | str, reason: str, actor: Actor = SYSTEM_QUARANTINE) -> Result:
    """Deactivate a plugin that keeps faulting."""
    with transaction.atomic():
        locked = lock(plugin)
        if locked.state != PluginState.ACTIVE:
            return Result(locked, locked.active_version, changed=False)
        return deactivate_locked(locked, actor, state=PluginState.QUARANTINED, reason=reason,
                                 action="quarantine", signal=signals.plugin_quarantined)


def record_fault(slug: str, kind: str, message: str, *, version: str = "", hook: str = "",
                 guest_message: str = "", report: dict[str, Any] | None = None) -> bool:
    """Store a fault and quarantine the plugin once it has faulted ``QUARANTINE_FAULTS`` times
    within ``QUARANTINE_WINDOW`` seconds. Returns True when this fault quarantined it. ``report``
    is a trap report (``TrapReport.as_dict()`` plus ``text``).

    A plugin whose *upgrade* is in staged rollout, faulting in the version rolled out, is not
    quarantined: the rollout is rolled back instead, so everyone returns to the version that was
    running (quarantine would take the plugin away from the visitors it worked for).

    :data:`~gonext_plugins.signals.plugin_faulted` goes out first, at once (a fault is not a
    transaction's change): the plugin's log writes its line there."""
    signals.plugin_faulted.send_robust(sender=Plugin, slug=slug, kind=kind, message=message,
                                       version=version, hook=hook, guest_message=guest_message,
                                       report=report)
    plugin = Plugin.objects.filter(slug=slug).first()
    if plugin is None:
        return False
    PluginFault.objects.create(plugin=plugin, version=version, kind=kind, hook=hook[:200],
                               message=message[:4000], guest_message=(guest_message or "")[:4000],
                               report=report)
    since = timezone.now() - timedelta(seconds=settings.QUARANTINE_WINDOW)
    # This version's faults only: a new version (a fixed dev build, an upgrade) starts with none.
    count = PluginFault.objects.filter(plugin=plugin, version=version, created_at__gte=since).count()
    if count >= settings.QUARANTINE_FAULTS and plugin.state == PluginState.ACTIVE:
        reason = (f"{count} faults in the last {settings.QUARANTINE_WINDOW:g} s; last: {kind}: "
                  f"{message[:200]}")
        upgrade = (PluginRollout.objects.filter(plugin=plugin, previous_version__isnull=False)
                   .select_related("version").first())
        if upgrade is not None and upgrade.version.version == version:
            return roll_back(plugin, SYSTEM_QUARANTINE, reason=f"quarantine: {reason}",
                             started_at=upgrade.started_at).changed
        return quarantine(plugin, reason).changed
    return False
