"""Staged rollout: an activation that starts with staff or a share of visitors, then is promoted to
everyone or rolled back (by an admin, or by the watch in :mod:`gonext_plugins.rollout` when the
cohort's figures pass the thresholds).

A plugin in rollout is ACTIVE (every process loads it, its jobs run) and has a
:class:`~gonext_plugins.models.PluginRollout` row; the request middleware skips its hooks for the
requests outside its cohort. Each change is one transaction, audited and followed by a generation
bump, like every other operation.

Two kinds of rollout:

- a *new activation* (:func:`start`): the plugin goes from inactive to active for the cohort; the
  requests outside it run nothing of it; rolling back deactivates it.
- an *upgrade* (:func:`start_upgrade` with a bundle, or :func:`start` with an installed ``version``):
  the new version becomes the plugin's active version (it runs the jobs, its settings schema and
  admin pages apply: work queued by a cohort request must find the version that queued it), and
  the row keeps ``previous_version``, which every process loads alongside it for the requests
  outside the cohort. Both share the plugin's data (kv, settings); each runs with the capabilities
  its own manifest asks for and the admin granted. Rolling back returns the plugin to the previous
  version (:func:`~.plugins.rollback`'s semantics: grants stay as they are); promoting unloads it.

A plugin already active for everyone is refused a new-activation rollout (:class:`RolloutError`):
roll out its next version instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..bundle import Bundle
from ..errors import InvalidRollout, RolloutError
from ..manifest import version_key
from ..models import Plugin, PluginRollout, PluginState, PluginVersion, RolloutMode
from ._compile import compile_version
from ._states import activate_locked, deactivate_locked
from ._tx import Actor, Result, actor_fields, audit, bump_generation, fresh, lock, send_on_commit
from .plugins import upgrade
from .preflight import validate_activation

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
    return query.select_related("version", "previous_version").first()


def _check_upgrade_target(plugin: Plugin, version: str) -> None:
    """Refuse an upgrade rollout the plugin's state does not allow: not running, another rollout
    running, the version it runs already, an older one."""
    if plugin.state != PluginState.ACTIVE or plugin.active_version is None:
        raise RolloutError("an upgrade is rolled out from a running version: the plugin is not active "
                           "(upgrade it, then roll out its activation)", plugin=plugin.slug)
    running = plugin.active_version.version
    if PluginRollout.objects.filter(plugin=plugin).exists():
        raise RolloutError("another rollout of this plugin is running: promote or roll it back first",
                           plugin=plugin.slug)
    if version_key(version) == version_key(running):
        raise RolloutError(f"version {version} is the one running already", plugin=plugin.slug)
    if version_key(version) < version_key(running):
        raise RolloutError(f"version {version} is older than the running {running}: that is a "
                           "rollback, not a rollout", plugin=plugin.slug)


def _begin_upgrade(plugin: Plugin, actor: Actor, old: PluginVersion | None, new: PluginVersion,
                   mode: str, share: int) -> None:
    """The rollout row of an upgrade, in the upgrade's transaction (the plugin row is locked)."""
    assert old is not None  # _check_upgrade_target refused a plugin without a running version
    if PluginRollout.objects.filter(plugin=plugin).exists():  # again under the lock
        raise RolloutError("another rollout of this plugin is running: promote or roll it back first",
                           plugin=plugin.slug)
    PluginRollout.objects.create(plugin=plugin, version=new, previous_version=old, mode=mode,
                                 percent=share, started_at=timezone.now(),
                                 started_by=actor_fields(actor)["actor_label"][:200])
    audit("rollout_start", plugin, actor, version=new.version, mode=mode, percent=share,
          upgrade=True, before=old.version, after=new.version)


def start_upgrade(plugin: Plugin | str, bundle: Bundle, granted: Iterable[str], actor: Actor, *,
                  mode: str, percent: int | None = None, hosts: Iterable[str] | None = None,
                  accept_new_publisher: bool = False) -> Result:
    """Upgrade a running plugin to ``bundle`` for a cohort first: the checks, grants and audit of
    :func:`~.plugins.upgrade` (:class:`ConsentRequired` for a capability not granted), and the
    rollout row in the same transaction."""
    share = check_request(mode, percent)
    current = fresh(plugin)
    if bundle.manifest.slug == current.slug:
        _check_upgrade_target(current, bundle.manifest.version)
    return upgrade(current, bundle, granted, actor, hosts=hosts, accept_new_publisher=accept_new_publisher,
                   within=lambda locked, old, new: _begin_upgrade(locked, actor, old, new, mode, share))


def _start_installed(current: Plugin, actor: Actor, version: str, mode: str, share: int) -> Result:
    """Roll out an installed version newer than the running one (one uploaded and rolled back)."""
    _check_upgrade_target(current, version)
    target = current.versions.filter(version=version).first()
    if target is None:
        raise RolloutError(f"version {version} is not installed: upload it with an upgrade",
                           plugin=current.slug)
    compiled = compile_version(current.slug, target)
    with transaction.atomic():
        locked = lock(current.slug)
        old = locked.active_version
        _check_upgrade_target(locked, version)
        locked.active_version = target
        locked.save(update_fields=["active_version", "updated_at"])
        validate_activation(locked, target, compiled)  # consent: ConsentRequired as an upgrade
        _begin_upgrade(locked, actor, old, target, mode, share)
        bump_generation()
        send_on_commit(signals.plugin_upgraded, locked, target, actor, before=old.version if old else None)
        return Result(locked, target)


def start(plugin: Plugin | str, actor: Actor, *, mode: str, percent: int | None = None,
          version: str | None = None) -> Result:
    """Activate an inactive plugin for a cohort only, change the cohort of a running rollout, or
    (``version``: an installed version newer than the running one) roll out an upgrade to it."""
    share = check_request(mode, percent)
    current = fresh(plugin)
    if version is not None:
        running = _rollout_of(current)
        if running is None or running.version.version != version:
            return _start_installed(current, actor, version, mode, share)
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
                "the plugin is already active for everyone: a rollout starts from an inactive plugin, "
                "or rolls out its next version (an upgrade with a rollout)", plugin=locked.slug)
        result = activate_locked(locked, actor, compiled)
        activated = result.version
        assert activated is not None  # activate_locked refuses a plugin without one
        PluginRollout.objects.create(plugin=locked, version=activated, mode=mode, percent=share,
                                     started_at=timezone.now(),
                                     started_by=actor_fields(actor)["actor_label"][:200])
        audit("rollout_start", locked, actor, version=activated.version, mode=mode, percent=share)
        return Result(locked, activated)


def promote(plugin: Plugin | str, actor: Actor) -> Result:
    """End the rollout: the plugin stays active, now for every request (an upgrade's previous
    version is unloaded everywhere at the next sync)."""
    with transaction.atomic():
        locked = lock(plugin)
        existing = _rollout_of(locked, lock_row=True)
        if existing is None:
            raise RolloutError("the plugin is not in a rollout", plugin=locked.slug)
        existing.delete()
        audit("rollout_promote", locked, actor, version=existing.version.version,
              before={"mode": existing.mode, "percent": existing.percent},
              **_upgrade_fields(existing))
        bump_generation()
        return Result(locked, existing.version)


def roll_back(plugin: Plugin | str, actor: Actor, *, reason: str = "",
              figures: dict[str, Any] | None = None, started_at: Any = None) -> Result:
    """End the rollout: a new activation goes back to inactive, an upgrade back to its previous
    version (grants as they are, like :func:`~.plugins.rollback`; audited as ``rollback`` too).

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
              reason=reason, figures=figures or {}, **_upgrade_fields(existing))
        why = reason or "rollout rolled back"
        previous = existing.previous_version
        if previous is None:
            return deactivate_locked(locked, actor, reason=why)
        # The previous version ran for the other requests until now, with these grants: it needs
        # no consent check (an automatic rollback must not be refused halfway).
        current = locked.active_version
        locked.active_version = previous
        locked.save(update_fields=["active_version", "updated_at"])
        audit("rollback", locked, actor, version=previous.version,
              before=current.version if current else None, after=previous.version, reason=why)
        bump_generation()
        send_on_commit(signals.plugin_rolled_back, locked, previous, actor,
                       before=current.version if current else None)
        return Result(locked, previous)


def _upgrade_fields(rollout: PluginRollout) -> dict[str, Any]:
    """An upgrade rollout's audit details: the version the others run."""
    previous = rollout.previous_version
    return {} if previous is None else {"upgrade": True, "previous_version": previous.version}
