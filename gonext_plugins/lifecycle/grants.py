"""Capability grants: writing them, and granting or revoking one after install. The rules (what
may be granted, what a version may use) are in :mod:`.preflight`."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from .. import signals
from ..models import CapabilityGrant, Plugin, PluginState, PluginVersion
from ._states import deactivate_locked
from ._tx import (
    Actor,
    Result,
    actor_fields,
    audit,
    bump_generation,
    lock,
    lock_running,
    manifest_of,
    send_on_commit,
)
from .preflight import check_grants, check_hosts


def write_grants(plugin: Plugin, names: Iterable[str], actor: Actor, version: PluginVersion,
                 hosts: list[str] | None) -> list[str]:
    """Record grants of ``names`` (``hosts`` for ``http.fetch``); returns the ones newly added."""
    added = []
    fields = actor_fields(actor)
    for name in sorted(set(names)):
        grant_row, created = CapabilityGrant.objects.get_or_create(
            plugin=plugin, capability=name,
            defaults={"granted_by": fields["actor"], "requested_by_version": version,
                      "hosts": (hosts or []) if name == "http.fetch" else []},
        )
        if created:
            added.append(name)
        elif name == "http.fetch" and hosts is not None and grant_row.hosts != hosts:
            grant_row.hosts = hosts
            grant_row.save(update_fields=["hosts"])
    return added


def grant(plugin: Plugin | str, names: Iterable[str], actor: Actor, *,
          hosts: Iterable[str] | None = None) -> Result:
    """Grant capabilities the active version asks for (optional ones, or re-grants)."""
    with transaction.atomic():
        locked, version, manifest = lock_running(plugin)
        names = set(names)
        check_grants(manifest, names, already=set(manifest.capabilities))
        host_list = check_hosts(manifest, hosts) if "http.fetch" in names else None
        added = write_grants(locked, names, actor, version, host_list)
        if added or host_list is not None:
            audit("grant", locked, actor, version=version.version, granted=added,
                  hosts=host_list or [])
            bump_generation()
            send_on_commit(signals.plugin_grants_changed, locked, version, actor, granted=added)
        return Result(locked, version, changed=bool(added) or host_list is not None)


def revoke(plugin: Plugin | str, name: str, actor: Actor) -> Result:
    """Revoke one capability. Revoking one the running version requires deactivates the plugin
    (it cannot run without it), and the audit event says so."""
    with transaction.atomic():
        locked = lock(plugin)
        deleted, _ = CapabilityGrant.objects.filter(plugin=locked, capability=name).delete()
        if not deleted:
            return Result(locked, locked.active_version, changed=False)
        version = locked.active_version
        required = set(manifest_of(version).capabilities) if version else set()
        audit("revoke", locked, actor, version=version.version if version else "", revoked=name,
              required=name in required)
        bump_generation()
        send_on_commit(signals.plugin_grants_changed, locked, version, actor, revoked=name)
        if name in required and locked.state == PluginState.ACTIVE:
            deactivate_locked(locked, actor, reason=f"required capability {name!r} was revoked")
        return Result(locked, version)
