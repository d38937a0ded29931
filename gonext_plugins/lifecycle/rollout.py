"""Staged rollout: an activation that starts with staff or a share of visitors, then is promoted to
everyone or rolled back (by an admin, or by the watch in :mod:`gonext_plugins.rollout` when the
cohort's figures pass the thresholds).

A plugin in rollout is ACTIVE (every process loads it, its jobs run) and has a
:class:`~gonext_plugins.models.PluginRollout` row; the request middleware skips its hooks for the
requests outside its cohort. Each change is one transaction, audited and followed by a generation
bump, like every other operation.

This first version rolls out a *new activation* (an inactive plugin). A plugin already active for
everyone is refused (:class:`RolloutError`): an upgrade switches every request at once, and its
safety net stays :func:`~.plugins.rollback` (two versions of one plugin active at once would need
the registry to hold both).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from ..errors import InvalidRollout, RolloutError
from ..models import Plugin, PluginRollout, PluginState, RolloutMode
from ._compile import compile_version
from ._states import activate_locked, deactivate_locked
from ._tx import Actor, Result, actor_fields, audit, bump_generation, fresh, lock

MODES = tuple(RolloutMode.values)


def check_request(mode: str, percent: int | None) -> int:
    """The percentage a rollout of ``mode`` keeps (0 for staff), or :class:`InvalidRollout`."""
    if mode not in MODES:
        raise InvalidRollout(f"rollout mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == RolloutMode.STAFF:
        if percent not in (None, 0):
            raise InvalidRollout("a staff-only rollout takes no percentage")
        return 0
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 99:
        raise InvalidRollout("a percent rollout needs a whole percentage from 1 to 99 "
                             "(100 is promoting it to everyone)")
    return percent


def _rollout_of(plugin: Plugin, *, lock_row: bool = False) -> PluginRollout | None:
    query = PluginRollout.objects.filter(plugin=plugin)
    if lock_row:
        query = query.select_for_update()
    return query.select_related("version").first()


def start(plugin: Plugin | str, actor: Actor, *, mode: str, percent: int | None = None) -> Result:
    """Activate an inactive plugin for a cohort only, or change the cohort of a running rollout."""
    share = check_request(mode, percent)
    current = fresh(plugin)
    compiled = (compile_version(current.slug, current.active_version)
                if current.state != PluginState.ACTIVE else {})
    with transaction.atomic():
        locked = lock(current.slug)
        existing = _rollout_of(locked, lock_row=True)
        if existing is not None:
            if (existing.mode, existing.percent) == (mode, share):
                return Result(locked, existing.version, changed=False)
            before = {"mode": existing.mode, "percent": existing.percent}
            existing.mode, existing.percent = mode, share
            existing.save(update_fields=["mode", "percent"])
            audit("rollout_change", locked, actor, version=existing.version.version,
                  before=before, after={"mode": mode, "percent": share})
            bump_generation()
            return Result(locked, existing.version)
        if locked.state == PluginState.ACTIVE:
            raise RolloutError(
                "the plugin is already active for everyone: a rollout starts from an inactive plugin "
                "(an upgrade switches every request at once; roll it back if it misbehaves)",
                plugin=locked.slug)
        result = activate_locked(locked, actor, compiled)
        version = result.version
        assert version is not None  # activate_locked refuses a plugin without one
        PluginRollout.objects.create(plugin=locked, version=version, mode=mode, percent=share,
                                     started_at=timezone.now(),
                                     started_by=actor_fields(actor)["actor_label"][:200])
        audit("rollout_start", locked, actor, version=version.version, mode=mode, percent=share)
        return Result(locked, version)


def promote(plugin: Plugin | str, actor: Actor) -> Result:
    """End the rollout: the plugin stays active, now for every request."""
    with transaction.atomic():
        locked = lock(plugin)
        existing = _rollout_of(locked, lock_row=True)
        if existing is None:
            raise RolloutError("the plugin is not in a rollout", plugin=locked.slug)
        existing.delete()
        audit("rollout_promote", locked, actor, version=existing.version.version,
              before={"mode": existing.mode, "percent": existing.percent})
        bump_generation()
        return Result(locked, existing.version)


def roll_back(plugin: Plugin | str, actor: Actor, *, reason: str = "",
              figures: dict[str, Any] | None = None, started_at: Any = None) -> Result:
    """End the rollout by deactivating the plugin (a new activation goes back to inactive).

    The watch passes the ``figures`` that triggered it (kept in the audit row) and the
    ``started_at`` of the rollout it judged: when another process already rolled that one back (or
    an admin restarted it), the row is gone or newer and this does nothing, so a rollout is rolled
    back once however many processes judged it."""
    with transaction.atomic():
        locked = lock(plugin)
        existing = _rollout_of(locked, lock_row=True)
        if existing is None or (started_at is not None and existing.started_at != started_at):
            if started_at is not None:
                return Result(locked, locked.active_version, changed=False)
            raise RolloutError("the plugin is not in a rollout", plugin=locked.slug)
        existing.delete()
        automatic = figures is not None
        audit("rollout_rollback", locked, actor, version=existing.version.version,
              before={"mode": existing.mode, "percent": existing.percent}, automatic=automatic,
              reason=reason, figures=figures or {})
        why = reason or "rollout rolled back"
        return deactivate_locked(locked, actor, reason=why)
