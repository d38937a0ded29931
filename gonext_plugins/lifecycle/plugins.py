"""The operations on a plugin and its versions: install, activate, deactivate, upgrade, roll back,
uninstall.

Each runs in one transaction through :mod:`._tx` (audit, generation, signals on commit). A failure
in the middle leaves the database and storage as they were (:mod:`.blobs`). A version about to run
is compiled (or loaded from the artifact cache) *before* its transaction opens
(:mod:`._compile`), so a slow first compile never holds the database's write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import signals
from ..bundle import Bundle
from ..errors import LifecycleError, NoOlderVersion, PluginExists, PublisherChanged, VersionConflict
from ..manifest import version_key
from ..models import CapabilityGrant, Plugin, PluginKV, PluginState, PluginVersion, PublisherKey
from ._compile import Compiled, compile_version, compile_wasm
from ._states import activate_locked, deactivate_locked
from ._tx import (
    Actor,
    Result,
    actor_fields,
    audit,
    bump_generation,
    fresh,
    lock,
    manifest_of,
    send_on_commit,
)
from .blobs import remove_unreferenced_on_commit, run_guarded
from .compat import check_bundle
from .grants import write_grants
from .preflight import (
    check_grants,
    check_hosts,
    check_install,
    check_signature,
    check_upgrade,
    granted_capabilities,
    publisher_change,
    same_version,
    validate_activation,
)


def new_version(plugin: Plugin, bundle: Bundle, key: PublisherKey | None, signed: bool,
                blob: str) -> PluginVersion:
    """The version row for ``bundle`` (its wasm stored as ``blob``)."""
    manifest = bundle.manifest
    return PluginVersion.objects.create(
        plugin=plugin,
        version=manifest.version,
        abi=manifest.abi,
        manifest=manifest.raw,
        wasm_sha256=bundle.wasm_sha256,
        wasm_size=len(bundle.wasm),
        blob_name=blob,
        bundle_sha256=bundle.bundle_sha256,
        signature=(bundle.signature.signature or "") if signed else "",
        signed=signed,
        publisher_key=key,
    )


def _signature_details(key: PublisherKey | None, signed: bool) -> dict[str, Any]:
    if not signed:
        return {"signed": False, "warning": "UNSIGNED bundle installed in dev mode"}
    assert key is not None
    return {"signed": True, "publisher": key.name, "fingerprint": key.fingerprint}


def install(bundle: Bundle, granted: Iterable[str], actor: Actor, activate: bool = False, *,
            hosts: Iterable[str] | None = None) -> Result:
    """Install a verified bundle as a new plugin, granting ``granted`` (every required capability
    must be in it); optionally activate it in the same transaction."""
    manifest = bundle.manifest
    check_install(manifest.slug)
    check_bundle(bundle)
    key, signed = check_signature(bundle)
    names = check_grants(manifest, granted)
    host_list = check_hosts(manifest, hosts) if "http.fetch" in names else None
    compiled = compile_wasm(manifest.slug, bundle.wasm, bundle.wasm_sha256) if activate else {}

    def body(blob: str) -> Result:
        plugin = Plugin.objects.create(
            slug=manifest.slug, name=manifest.name, description=manifest.description,
            author=manifest.author, homepage=manifest.homepage, state=PluginState.INACTIVE,
        )
        version = new_version(plugin, bundle, key, signed, blob)
        plugin.active_version = version
        plugin.save(update_fields=["active_version"])
        write_grants(plugin, names, actor, version, host_list)
        audit("install", plugin, actor, version=version.version, granted=sorted(names),
              hosts=host_list or [], wasm_sha256=bundle.wasm_sha256,
              **_signature_details(key, signed))
        if not signed:
            audit("unsigned_install", plugin, actor, version=version.version,
                  warning="UNSIGNED code installed: dev mode is on")
        bump_generation()
        send_on_commit(signals.plugin_installed, plugin, version, actor)
        if activate:
            activate_locked(plugin, actor, compiled)
        return Result(plugin, version)

    try:
        return run_guarded(bundle, body)
    except IntegrityError as exc:
        raise PluginExists(
            f"a plugin with slug {manifest.slug!r} was installed at the same time; upgrade it instead",
            plugin=manifest.slug,
        ) from exc


def activate(plugin: Plugin | str, actor: Actor) -> Result:
    """Make the plugin's current version run in every process (within ``SYNC_INTERVAL``)."""
    current = fresh(plugin)
    compiled = (compile_version(current.slug, current.active_version)
                if current.state != PluginState.ACTIVE else {})
    with transaction.atomic():
        return activate_locked(lock(current.slug), actor, compiled)


def deactivate(plugin: Plugin | str, actor: Actor, *, reason: str = "") -> Result:
    """Stop the plugin in every process; its versions, grants and data stay."""
    with transaction.atomic():
        locked = lock(plugin)
        if locked.state == PluginState.INACTIVE:
            return Result(locked, locked.active_version, changed=False)
        return deactivate_locked(locked, actor, reason=reason)


Within = Callable[[Plugin, PluginVersion | None, PluginVersion], None]
"""``within(plugin, old, new)``: more work in an upgrade's transaction (a staged rollout's row)."""


def upgrade(plugin: Plugin | str, bundle: Bundle, granted: Iterable[str], actor: Actor, *,
            hosts: Iterable[str] | None = None, accept_new_publisher: bool = False,
            within: Within | None = None) -> Result:
    """Install a newer version and switch to it. New required capabilities must be granted in
    ``granted`` (or already); otherwise :class:`ConsentRequired` and the current version keeps
    running. The same version with the same bytes is a no-op; with other bytes it is refused.

    A capability counts as granted only when the running version asks for it: a grant kept for an
    older version (for a rollback) is not consent to a newer version that asks for it again. A
    version signed by another publisher key needs ``accept_new_publisher``
    (:class:`PublisherChanged` otherwise). ``within`` runs last in the same transaction (a staged
    rollout of the upgrade: ``lifecycle.rollout.start_upgrade``)."""
    current = fresh(plugin)
    manifest = bundle.manifest
    same = check_upgrade(current, bundle)
    if same is not None:
        return Result(current, same, changed=False)
    check_bundle(bundle)
    key, signed = check_signature(bundle)
    change = publisher_change(current, key)
    if change is not None and not accept_new_publisher:
        was, now = change
        raise PublisherChanged(
            f"version {manifest.version} is signed by a different publisher key: {now}, was {was}; "
            "accept the new publisher explicitly to upgrade", was=was, now=now, plugin=current.slug,
        )
    running = set(manifest_of(current.active_version).all_capabilities) if current.active_version else set()
    on_record = granted_capabilities(current)
    already = on_record & running  # in effect now
    dormant = on_record - running  # kept for older versions; reviving one needs consent again
    names = check_grants(manifest, granted, already=already)
    newly_fetching = "http.fetch" in names and "http.fetch" not in already
    host_list = check_hosts(manifest, hosts) if newly_fetching or hosts is not None else None
    compiled = (compile_wasm(manifest.slug, bundle.wasm, bundle.wasm_sha256)
                if current.state == PluginState.ACTIVE else {})

    def body(blob: str) -> Result:
        locked = lock(current)
        same = same_version(locked, bundle)  # again under the lock: another upgrade may have won
        if same is not None:
            return Result(locked, same, changed=False)
        old = locked.active_version
        old_caps = set(manifest_of(old).all_capabilities) if old else set()
        version = new_version(locked, bundle, key, signed, blob)
        added = write_grants(locked, names, actor, version, host_list)
        asked_again = dormant & set(manifest.all_capabilities)
        revived = sorted(asked_again & names)
        CapabilityGrant.objects.filter(plugin=locked, capability__in=revived).update(
            requested_by_version=version, granted_by=actor_fields(actor)["actor"], granted_at=timezone.now())
        withdrawn = sorted(asked_again - names)  # asked again without consent: not granted
        CapabilityGrant.objects.filter(plugin=locked, capability__in=withdrawn).delete()
        locked.active_version = version
        locked.name, locked.description = manifest.name, manifest.description
        locked.author, locked.homepage = manifest.author, manifest.homepage
        locked.save()
        if locked.state == PluginState.ACTIVE:
            validate_activation(locked, version, compiled)
        new_caps = set(manifest.all_capabilities)
        audit("upgrade", locked, actor, version=version.version,
              before=old.version if old else None, after=version.version,
              capabilities_added=sorted(new_caps - old_caps),
              capabilities_dropped=sorted(old_caps - new_caps), granted=sorted({*added, *revived}),
              revoked=withdrawn, publisher_changed=change is not None,
              **_signature_details(key, signed))
        if within is not None:
            within(locked, old, version)
        bump_generation()
        send_on_commit(signals.plugin_upgraded, locked, version, actor,
                       before=old.version if old else None)
        return Result(locked, version)

    try:
        return run_guarded(bundle, body)
    except IntegrityError as exc:
        raise VersionConflict(
            f"another upgrade to version {manifest.version} ran at the same time; look at the plugin "
            "again before retrying", plugin=current.slug,
        ) from exc


def _rollback_target(plugin: Plugin, to_version: str | None) -> PluginVersion:
    """The version a rollback switches to: ``to_version``, or the newest older than the current."""
    current = plugin.active_version
    versions = list(plugin.versions.all())
    if to_version is not None:
        target = next((v for v in versions if v.version == to_version), None)
        if target is None:
            raise LifecycleError(
                f"version {to_version} is not installed; installed: "
                f"{', '.join(sorted((v.version for v in versions), key=version_key))}",
                plugin=plugin.slug,
            )
        return target
    older = [v for v in versions if current is None
             or version_key(v.version) < version_key(current.version)]
    if not older:
        raise NoOlderVersion("there is no older version to roll back to", plugin=plugin.slug)
    return max(older, key=lambda v: version_key(v.version))


def rollback(plugin: Plugin | str, actor: Actor, to_version: str | None = None) -> Result:
    """Switch back to an installed version: the one given, or the newest older than the current."""
    resolved = fresh(plugin)
    compiled: Compiled = {}
    if resolved.state == PluginState.ACTIVE:
        target = _rollback_target(resolved, to_version)
        if target.pk != resolved.active_version_id:
            compiled = compile_version(resolved.slug, target)
    with transaction.atomic():
        locked = lock(resolved.slug)
        current = locked.active_version
        target = _rollback_target(locked, to_version)
        if current is not None and target.pk == current.pk:
            return Result(locked, target, changed=False)
        locked.active_version = target
        locked.save(update_fields=["active_version", "updated_at"])
        if locked.state == PluginState.ACTIVE:
            validate_activation(locked, target, compiled)
        audit("rollback", locked, actor, version=target.version,
              before=current.version if current else None, after=target.version)
        bump_generation()
        send_on_commit(signals.plugin_rolled_back, locked, target, actor,
                       before=current.version if current else None)
        return Result(locked, target)


def uninstall(plugin: Plugin | str, actor: Actor, keep_data: bool = False) -> Result:
    """Remove the plugin, its versions and grants (and its kv data unless ``keep_data``); blobs no
    other version references are deleted after the transaction commits."""
    with transaction.atomic():
        locked = lock(plugin)
        blobs = set(locked.versions.values_list("blob_name", flat=True))
        versions = sorted(locked.versions.values_list("version", flat=True), key=version_key)
        kv_rows = PluginKV.objects.filter(plugin_slug=locked.slug).count()
        audit("uninstall", locked, actor, version=locked.active_version.version
              if locked.active_version else "", versions=versions, keep_data=keep_data,
              kv_rows_deleted=0 if keep_data else kv_rows,
              grants_deleted=sorted(granted_capabilities(locked)))
        slug = locked.slug
        if not keep_data:  # kept rows wait, keyed by slug, for a reinstall of the same plugin
            PluginKV.objects.filter(plugin_slug=slug).delete()
        locked.delete()  # versions, grants and faults go with it
        bump_generation()
        remove_unreferenced_on_commit(blobs)
        send_on_commit(signals.plugin_uninstalled, locked, None, actor, slug=slug, keep_data=keep_data)
        return Result(locked, None)
