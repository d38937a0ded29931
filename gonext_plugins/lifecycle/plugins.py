"""The one service that changes plugin state.

Every operation runs in one transaction, writes an :class:`~gonext_plugins.models.AuditEvent`
(who, what, before and after), bumps the :class:`~gonext_plugins.models.Generation` number so
every process re-syncs, and sends its signal only once the transaction commits. A failure in the
middle leaves the database and storage as they were: blobs written by a failed operation are
removed again, and blobs are deleted only after the rows that referenced them are gone for good.
A version about to run is compiled (or loaded from the artifact cache) *before* its transaction
opens, so a slow first compile never holds the database's write lock (:func:`_compile`).

Interfaces (admin, API, commands, the dev endpoint) call these functions and nothing else that
writes plugin state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone
from wasmtime import Module

from .. import capabilities, logs, signals
from ..bundle import Bundle
from ..conf import settings
from ..errors import (
    ConsentRequired,
    DevInstallRefused,
    KeyNotFound,
    LifecycleError,
    NoOlderVersion,
    PluginExists,
    PluginNotFound,
    PublisherChanged,
    SignatureError,
    UnknownCapability,
    VersionConflict,
)
from ..manifest import Manifest
from ..models import (
    AuditEvent,
    CapabilityGrant,
    Generation,
    Plugin,
    PluginFault,
    PluginKV,
    PluginState,
    PluginVersion,
    PublisherKey,
)
from ..registry import registry
from ..storage import PREFIX, delete_blob, get_storage, read_blob, save_blob

logger = logging.getLogger("gonext_plugins.lifecycle")

Actor = Any  # a user, a string label ("cli", "system: quarantine"), or None


# --- small helpers ---------------------------------------------------------------------------


def _actor_fields(actor: Actor) -> dict[str, Any]:
    if actor is None:
        return {"actor": None, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor": None, "actor_label": actor}
    if getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_label": actor.get_username()}
    return {"actor": None, "actor_label": str(actor)}


def _audit(action: str, plugin: Plugin | None, actor: Actor, *, version: str = "", slug: str = "",
           **details: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action,
        plugin=plugin,
        plugin_slug=slug or (plugin.slug if plugin else ""),
        version=version,
        details=details,
        **_actor_fields(actor),
    )


def bump_generation() -> None:
    """Tell every process that plugin state changed (they re-sync within ``SYNC_INTERVAL``; this
    one at its next call after the commit)."""
    transaction.on_commit(registry.invalidate)
    updated = Generation.objects.filter(pk=1).update(number=F("number") + 1, changed_at=timezone.now())
    if not updated:
        try:
            with transaction.atomic():
                Generation.objects.create(pk=1, number=1)
        except IntegrityError:
            Generation.objects.filter(pk=1).update(number=F("number") + 1, changed_at=timezone.now())


def current_generation() -> int:
    return Generation.objects.filter(pk=1).values_list("number", flat=True).first() or 0


def _send_on_commit(signal: Signal, plugin: Plugin, version: PluginVersion | None, actor: Actor,
                    **details: Any) -> None:
    def send() -> None:
        signal.send_robust(sender=Plugin, plugin=plugin, version=version, actor=actor, details=details)

    transaction.on_commit(send)


def _resolve(plugin: Plugin | str) -> Plugin:
    if isinstance(plugin, Plugin):
        return plugin
    try:
        return Plugin.objects.get(slug=plugin)
    except Plugin.DoesNotExist:
        raise PluginNotFound(f"no plugin {plugin!r} is installed", plugin=str(plugin))


def _fresh(plugin: Plugin | str) -> Plugin:
    """The plugin row as the database has it now: a caller's instance may be stale, and what gets
    compiled before a transaction must be what the transaction will find."""
    return _resolve(plugin.slug if isinstance(plugin, Plugin) else plugin)


def _lock(plugin: Plugin | str) -> Plugin:
    """Re-read the plugin row under a row lock (PostgreSQL) so concurrent operations serialize."""
    slug = plugin.slug if isinstance(plugin, Plugin) else plugin
    try:
        return Plugin.objects.select_for_update().get(slug=slug)
    except Plugin.DoesNotExist:
        raise PluginNotFound(f"no plugin {slug!r} is installed", plugin=slug)


def granted_capabilities(plugin: Plugin) -> set[str]:
    return set(plugin.grants.values_list("capability", flat=True))


def effective_capabilities(plugin: Plugin, manifest: Manifest) -> frozenset[str]:
    """What the running version may use: granted *and* asked for by that version (least privilege:
    a grant kept for an older version does not widen a newer one)."""
    asked_and_granted = granted_capabilities(plugin) & set(manifest.all_capabilities)
    return frozenset(asked_and_granted) | capabilities.ALWAYS_GRANTED


def _check_signature(bundle: Bundle, actor: Actor) -> tuple[PublisherKey | None, bool]:
    """(publisher key row, signed). Unsigned bundles install only in dev mode."""
    status = bundle.signature
    if status.status == "valid":
        key = PublisherKey.objects.filter(fingerprint=status.fingerprint).first()
        if key is None or not key.usable:
            raise SignatureError(
                f"signed by a key that is not trusted here: {status.fingerprint}",
                plugin=bundle.manifest.slug, fingerprint=status.fingerprint,
            )
        return key, True
    if not settings.DEV_MODE:
        what = ("not signed" if status.status == "unsigned"
                else f"signed by an untrusted key: {status.fingerprint}")
        raise SignatureError(
            f"the bundle is {what}; only bundles signed by a trusted publisher key install "
            "(dev mode allows others on development sites)",
            plugin=bundle.manifest.slug, fingerprint=status.fingerprint or None,
        )
    return None, False


def _check_grants(manifest: Manifest, granted: Iterable[str], already: Iterable[str] = ()) -> set[str]:
    """Validate requested grants; returns the set to grant. Raises on unknown, unrequested or
    missing required capabilities."""
    granted = set(granted)
    unknown = capabilities.unknown(granted)
    if unknown:
        raise UnknownCapability(
            f"cannot grant unknown capabilit{'y' if len(unknown) == 1 else 'ies'}: {', '.join(unknown)}",
            plugin=manifest.slug,
        )
    unrequested = sorted(granted - set(manifest.all_capabilities))
    if unrequested:
        raise LifecycleError(
            f"the plugin does not ask for {', '.join(unrequested)}; grant only what it requests",
            plugin=manifest.slug,
        )
    missing = set(manifest.capabilities) - granted - set(already) - capabilities.ALWAYS_GRANTED
    if missing:
        raise ConsentRequired(
            f"these required capabilities must be granted first: {', '.join(sorted(missing))}",
            missing=missing, plugin=manifest.slug,
        )
    return granted


def _check_hosts(manifest: Manifest, hosts: Iterable[str] | None) -> list[str]:
    if hosts is None:
        return sorted(manifest.allowed_hosts)
    hosts = set(hosts)
    extra = sorted(hosts - set(manifest.allowed_hosts))
    if extra:
        raise LifecycleError(
            f"cannot allow hosts the manifest does not list: {', '.join(extra)}", plugin=manifest.slug
        )
    return sorted(hosts)


def _write_grants(plugin: Plugin, names: Iterable[str], actor: Actor, version: PluginVersion,
                  hosts: list[str] | None) -> list[str]:
    added = []
    fields = _actor_fields(actor)
    for name in sorted(set(names)):
        grant, created = CapabilityGrant.objects.get_or_create(
            plugin=plugin, capability=name,
            defaults={"granted_by": fields["actor"], "requested_by_version": version,
                      "hosts": (hosts or []) if name == "http.fetch" else []},
        )
        if created:
            added.append(name)
        elif name == "http.fetch" and hosts is not None and grant.hosts != hosts:
            grant.hosts = hosts
            grant.save(update_fields=["hosts"])
    return added


def _new_version(plugin: Plugin, bundle: Bundle, key: PublisherKey | None, signed: bool,
                 blob: str) -> PluginVersion:
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


def _run_guarded(bundle: Bundle, body: Callable[[str], Any]) -> Any:
    """Save the blob, run ``body(blob_name)`` in a transaction, undo the blob on failure."""
    name, created = save_blob(bundle.wasm, bundle.wasm_sha256)
    try:
        with transaction.atomic():
            return body(name)
    except BaseException:
        # Remove the blob only if this operation created it and no version (of any plugin) uses it.
        if created and not PluginVersion.objects.filter(blob_name=name).exists():
            delete_blob(name)
        raise


Compiled = Mapping[str, Module]
"""Modules compiled before a transaction opened, by the sha256 of their wasm."""


def _compile(slug: str, wasm: bytes, wasm_sha256: str) -> Compiled:
    """Compile (or load from the artifact cache) before any transaction opens: a first compile runs
    in a limited child process and may take seconds, and holding the database's write lock
    meanwhile would stall every other writer (on SQLite, until they fail: "database is locked")."""
    return {wasm_sha256: registry.compile(wasm, slug)}


def _compile_version(slug: str, version: PluginVersion | None) -> Compiled:
    """:func:`_compile` for an installed version (its stored blob)."""
    if version is None:
        return {}
    return _compile(slug, read_blob(version.blob_name, version.wasm_sha256, plugin=slug),
                    version.wasm_sha256)


def manifest_of(version: PluginVersion) -> Manifest:
    from ..manifest import validate

    return validate(version.manifest)


def _validate_activation(plugin: Plugin, version: PluginVersion, compiled: Compiled) -> Manifest:
    """Everything that must hold before a version may run: consent, hooks and jobs capabilities,
    and wasm that this host can load (``compiled`` before the transaction, by :func:`_compile`)."""
    manifest = manifest_of(version)
    granted = granted_capabilities(plugin)
    missing = set(manifest.capabilities) - granted - capabilities.ALWAYS_GRANTED
    if missing:
        raise ConsentRequired(
            f"version {version.version} needs capabilities that are not granted: "
            f"{', '.join(sorted(missing))}",
            missing=missing, plugin=plugin.slug,
        )
    for needed, kind, declared in (("hooks.subscribe", "hooks", manifest.hooks),
                                   ("jobs.enqueue", "jobs", manifest.jobs)):
        if declared and needed not in manifest.all_capabilities:
            raise LifecycleError(
                f"the manifest declares {kind} but does not ask for the {needed!r} capability",
                plugin=plugin.slug,
            )
        if declared and needed not in granted:
            raise ConsentRequired(
                f"the plugin declares {kind} but {needed!r} is not granted", missing=[needed],
                plugin=plugin.slug,
            )
    module = compiled.get(version.wasm_sha256)
    if module is None:  # another operation changed the version after ours compiled one
        raise LifecycleError(f"the plugin changed while version {version.version} was being compiled; "
                             "try again", plugin=plugin.slug)
    registry.check_loadable(plugin.slug, module, manifest)
    return manifest


# --- operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What an operation did: the plugin row, the version concerned, and whether anything changed."""

    plugin: Plugin
    version: PluginVersion | None
    changed: bool = True


def install(bundle: Bundle, granted: Iterable[str], actor: Actor, activate: bool = False, *,
            hosts: Iterable[str] | None = None) -> Result:
    """Install a verified bundle as a new plugin, granting ``granted`` (every required capability
    must be in it); optionally activate it in the same transaction."""
    manifest = bundle.manifest
    if Plugin.objects.filter(slug=manifest.slug).exists():
        raise PluginExists(
            f"a plugin with slug {manifest.slug!r} is already installed; upgrade it instead",
            plugin=manifest.slug,
        )
    key, signed = _check_signature(bundle, actor)
    names = _check_grants(manifest, granted)
    host_list = _check_hosts(manifest, hosts) if "http.fetch" in names else None
    compiled = _compile(manifest.slug, bundle.wasm, bundle.wasm_sha256) if activate else {}

    def body(blob: str) -> Result:
        plugin = Plugin.objects.create(
            slug=manifest.slug, name=manifest.name, description=manifest.description,
            author=manifest.author, homepage=manifest.homepage, state=PluginState.INACTIVE,
        )
        version = _new_version(plugin, bundle, key, signed, blob)
        plugin.active_version = version
        plugin.save(update_fields=["active_version"])
        _write_grants(plugin, names, actor, version, host_list)
        _audit("install", plugin, actor, version=version.version, granted=sorted(names),
               hosts=host_list or [], wasm_sha256=bundle.wasm_sha256,
               **_signature_details(key, signed))
        if not signed:
            _audit("unsigned_install", plugin, actor, version=version.version,
                   warning="UNSIGNED code installed: dev mode is on")
        bump_generation()
        _send_on_commit(signals.plugin_installed, plugin, version, actor)
        if activate:
            _activate_locked(plugin, actor, compiled)
        return Result(plugin, version)

    try:
        return _run_guarded(bundle, body)
    except IntegrityError:
        raise PluginExists(
            f"a plugin with slug {manifest.slug!r} was installed at the same time; upgrade it instead",
            plugin=manifest.slug,
        )


def _activate_locked(plugin: Plugin, actor: Actor, compiled: Compiled) -> Result:
    version = plugin.active_version
    if version is None:
        raise LifecycleError("the plugin has no version to activate", plugin=plugin.slug)
    if plugin.state == PluginState.ACTIVE:
        return Result(plugin, version, changed=False)
    _validate_activation(plugin, version, compiled)
    before = plugin.state
    plugin.state = PluginState.ACTIVE
    plugin.state_reason = ""
    plugin.save(update_fields=["state", "state_reason", "updated_at"])
    _audit("activate", plugin, actor, version=version.version, before=before, after=plugin.state)
    bump_generation()
    _send_on_commit(signals.plugin_activated, plugin, version, actor)
    return Result(plugin, version)


def activate(plugin: Plugin | str, actor: Actor) -> Result:
    """Make the plugin's current version run in every process (within ``SYNC_INTERVAL``)."""
    current = _fresh(plugin)
    compiled = (_compile_version(current.slug, current.active_version)
                if current.state != PluginState.ACTIVE else {})
    with transaction.atomic():
        return _activate_locked(_lock(current.slug), actor, compiled)


def _deactivate_locked(plugin: Plugin, actor: Actor, *, state: str = PluginState.INACTIVE,
                       reason: str = "", action: str = "deactivate",
                       signal: Signal = signals.plugin_deactivated) -> Result:
    if plugin.state == state and not reason:
        return Result(plugin, plugin.active_version, changed=False)
    before = plugin.state
    plugin.state = state
    plugin.state_reason = reason[:500]
    plugin.save(update_fields=["state", "state_reason", "updated_at"])
    _audit(action, plugin, actor, version=plugin.active_version.version if plugin.active_version else "",
           before=before, after=state, reason=reason)
    bump_generation()
    _send_on_commit(signal, plugin, plugin.active_version, actor, reason=reason)
    return Result(plugin, plugin.active_version)


def deactivate(plugin: Plugin | str, actor: Actor, *, reason: str = "") -> Result:
    """Stop the plugin in every process; its versions, grants and data stay."""
    with transaction.atomic():
        locked = _lock(plugin)
        if locked.state == PluginState.INACTIVE:
            return Result(locked, locked.active_version, changed=False)
        return _deactivate_locked(locked, actor, reason=reason)


def quarantine(plugin: Plugin | str, reason: str, actor: Actor = "system: quarantine") -> Result:
    """Deactivate a plugin that keeps faulting (WordPress's recovery mode, automatic)."""
    with transaction.atomic():
        locked = _lock(plugin)
        if locked.state != PluginState.ACTIVE:
            return Result(locked, locked.active_version, changed=False)
        return _deactivate_locked(locked, actor, state=PluginState.QUARANTINED, reason=reason,
                                  action="quarantine", signal=signals.plugin_quarantined)


def _semver_key(version: str) -> tuple[Any, ...]:
    core, _, pre = version.split("+", 1)[0].partition("-")
    numbers = tuple(int(part) for part in core.split("."))
    if not pre:
        return (numbers, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (numbers, 0, parts)


def publisher_label(key: PublisherKey | None) -> str:
    """How a publisher is named to a person: its name and fingerprint, or "unsigned"."""
    return f"{key.name} ({key.fingerprint})" if key is not None else "unsigned"


def publisher_change(plugin: Plugin, key: PublisherKey | None) -> tuple[str, str] | None:
    """``(was, now)`` when a version signed with ``key`` would replace a running version signed
    by another key (or unsigned); None when the publisher stays the same."""
    running = plugin.active_version
    if running is None or running.publisher_key_id == (key.pk if key is not None else None):
        return None
    return publisher_label(running.publisher_key), publisher_label(key)


def upgrade(plugin: Plugin | str, bundle: Bundle, granted: Iterable[str], actor: Actor, *,
            hosts: Iterable[str] | None = None, accept_new_publisher: bool = False) -> Result:
    """Install a newer version and switch to it. New required capabilities must be granted in
    ``granted`` (or already); otherwise :class:`ConsentRequired` and the current version keeps
    running. The same version with the same bytes is a no-op; with other bytes it is refused.

    A capability counts as granted only when the running version asks for it: a grant kept for an
    older version (for a rollback) is not consent to a newer version that asks for it again. A
    version signed by another publisher key needs ``accept_new_publisher``
    (:class:`PublisherChanged` otherwise)."""
    current = _fresh(plugin)
    manifest = bundle.manifest
    if manifest.slug != current.slug:
        raise LifecycleError(
            f"the bundle is for {manifest.slug!r}, not {current.slug!r}", plugin=current.slug
        )
    same = _same_version(current, bundle)
    if same is not None:
        return same
    newest = max((v.version for v in current.versions.all()), key=_semver_key, default=None)
    if newest is not None and _semver_key(manifest.version) < _semver_key(newest):
        raise LifecycleError(
            f"version {manifest.version} is older than the installed {newest}; use rollback to go back",
            plugin=current.slug,
        )
    key, signed = _check_signature(bundle, actor)
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
    names = _check_grants(manifest, granted, already=already)
    newly_fetching = "http.fetch" in names and "http.fetch" not in already
    host_list = _check_hosts(manifest, hosts) if newly_fetching or hosts is not None else None
    compiled = (_compile(manifest.slug, bundle.wasm, bundle.wasm_sha256)
                if current.state == PluginState.ACTIVE else {})

    def body(blob: str) -> Result:
        locked = _lock(current)
        same = _same_version(locked, bundle)  # again under the lock: another upgrade may have won
        if same is not None:
            return same
        old = locked.active_version
        old_caps = set(manifest_of(old).all_capabilities) if old else set()
        version = _new_version(locked, bundle, key, signed, blob)
        added = _write_grants(locked, names, actor, version, host_list)
        asked_again = dormant & set(manifest.all_capabilities)
        revived = sorted(asked_again & names)
        CapabilityGrant.objects.filter(plugin=locked, capability__in=revived).update(
            requested_by_version=version, granted_by=_actor_fields(actor)["actor"], granted_at=timezone.now())
        withdrawn = sorted(asked_again - names)  # asked again without consent: not granted
        CapabilityGrant.objects.filter(plugin=locked, capability__in=withdrawn).delete()
        locked.active_version = version
        locked.name, locked.description = manifest.name, manifest.description
        locked.author, locked.homepage = manifest.author, manifest.homepage
        locked.save()
        if locked.state == PluginState.ACTIVE:
            _validate_activation(locked, version, compiled)
        new_caps = set(manifest.all_capabilities)
        _audit("upgrade", locked, actor, version=version.version,
               before=old.version if old else None, after=version.version,
               capabilities_added=sorted(new_caps - old_caps),
               capabilities_dropped=sorted(old_caps - new_caps), granted=sorted({*added, *revived}),
               revoked=withdrawn, publisher_changed=change is not None,
               **_signature_details(key, signed))
        bump_generation()
        _send_on_commit(signals.plugin_upgraded, locked, version, actor,
                        before=old.version if old else None)
        return Result(locked, version)

    try:
        return _run_guarded(bundle, body)
    except IntegrityError:
        raise VersionConflict(
            f"another upgrade to version {manifest.version} ran at the same time; look at the plugin "
            "again before retrying", plugin=current.slug,
        )


def _same_version(plugin: Plugin, bundle: Bundle) -> Result | None:
    """The no-op result when the bundle's version is installed with these exact contents; None when
    it is not installed; :class:`VersionConflict` when it is, with other contents."""
    manifest = bundle.manifest
    existing = plugin.versions.filter(version=manifest.version).first()
    if existing is None:
        return None
    if existing.wasm_sha256 == bundle.wasm_sha256 and existing.manifest == manifest.raw:
        return Result(plugin, existing, changed=False)
    raise VersionConflict(
        f"version {manifest.version} is already installed with different contents; "
        "versions are immutable, so publish it under a new version number",
        plugin=plugin.slug,
    )


def _rollback_target(plugin: Plugin, to_version: str | None) -> PluginVersion:
    """The version a rollback switches to: ``to_version``, or the newest older than the current."""
    current = plugin.active_version
    versions = list(plugin.versions.all())
    if to_version is not None:
        target = next((v for v in versions if v.version == to_version), None)
        if target is None:
            raise LifecycleError(
                f"version {to_version} is not installed; installed: "
                f"{', '.join(sorted((v.version for v in versions), key=_semver_key))}",
                plugin=plugin.slug,
            )
        return target
    older = [v for v in versions if current is None
             or _semver_key(v.version) < _semver_key(current.version)]
    if not older:
        raise NoOlderVersion("there is no older version to roll back to", plugin=plugin.slug)
    return max(older, key=lambda v: _semver_key(v.version))


def rollback(plugin: Plugin | str, actor: Actor, to_version: str | None = None) -> Result:
    """Switch back to an installed version: the one given, or the newest older than the current."""
    resolved = _fresh(plugin)
    compiled: Compiled = {}
    if resolved.state == PluginState.ACTIVE:
        target = _rollback_target(resolved, to_version)
        if target.pk != resolved.active_version_id:
            compiled = _compile_version(resolved.slug, target)
    with transaction.atomic():
        locked = _lock(resolved.slug)
        current = locked.active_version
        target = _rollback_target(locked, to_version)
        if current is not None and target.pk == current.pk:
            return Result(locked, target, changed=False)
        locked.active_version = target
        locked.save(update_fields=["active_version", "updated_at"])
        if locked.state == PluginState.ACTIVE:
            _validate_activation(locked, target, compiled)
        _audit("rollback", locked, actor, version=target.version,
               before=current.version if current else None, after=target.version)
        bump_generation()
        _send_on_commit(signals.plugin_rolled_back, locked, target, actor,
                        before=current.version if current else None)
        return Result(locked, target)


def uninstall(plugin: Plugin | str, actor: Actor, keep_data: bool = False) -> Result:
    """Remove the plugin, its versions and grants (and its kv data unless ``keep_data``); blobs no
    other version references are deleted after the transaction commits."""
    with transaction.atomic():
        locked = _lock(plugin)
        blobs = set(locked.versions.values_list("blob_name", flat=True))
        versions = sorted(locked.versions.values_list("version", flat=True), key=_semver_key)
        kv_rows = PluginKV.objects.filter(plugin_slug=locked.slug).count()
        _audit("uninstall", locked, actor, version=locked.active_version.version
               if locked.active_version else "", versions=versions, keep_data=keep_data,
               kv_rows_deleted=0 if keep_data else kv_rows,
               grants_deleted=sorted(granted_capabilities(locked)))
        slug = locked.slug
        if not keep_data:  # kept rows wait, keyed by slug, for a reinstall of the same plugin
            PluginKV.objects.filter(plugin_slug=slug).delete()
        locked.delete()  # versions, grants and faults go with it
        bump_generation()

        def remove_blobs() -> None:
            for name in blobs:
                if not PluginVersion.objects.filter(blob_name=name).exists():
                    delete_blob(name)

        transaction.on_commit(remove_blobs)
        _send_on_commit(signals.plugin_uninstalled, locked, None, actor, slug=slug, keep_data=keep_data)
        return Result(locked, None)


def grant(plugin: Plugin | str, names: Iterable[str], actor: Actor, *,
          hosts: Iterable[str] | None = None) -> Result:
    """Grant capabilities the active version asks for (optional ones, or re-grants)."""
    with transaction.atomic():
        locked = _lock(plugin)
        version = locked.active_version
        if version is None:
            raise LifecycleError("the plugin has no version", plugin=locked.slug)
        manifest = manifest_of(version)
        names = set(names)
        _check_grants(manifest, names, already=set(manifest.capabilities))
        host_list = _check_hosts(manifest, hosts) if "http.fetch" in names else None
        added = _write_grants(locked, names, actor, version, host_list)
        if added or host_list is not None:
            _audit("grant", locked, actor, version=version.version, granted=added,
                   hosts=host_list or [])
            bump_generation()
            _send_on_commit(signals.plugin_grants_changed, locked, version, actor, granted=added)
        return Result(locked, version, changed=bool(added) or host_list is not None)


def revoke(plugin: Plugin | str, name: str, actor: Actor) -> Result:
    """Revoke one capability. Revoking one the running version requires deactivates the plugin
    (it cannot run without it), and the audit event says so."""
    with transaction.atomic():
        locked = _lock(plugin)
        deleted, _ = CapabilityGrant.objects.filter(plugin=locked, capability=name).delete()
        if not deleted:
            return Result(locked, locked.active_version, changed=False)
        version = locked.active_version
        required = set(manifest_of(version).capabilities) if version else set()
        _audit("revoke", locked, actor, version=version.version if version else "", revoked=name,
               required=name in required)
        bump_generation()
        _send_on_commit(signals.plugin_grants_changed, locked, version, actor, revoked=name)
        if name in required and locked.state == PluginState.ACTIVE:
            _deactivate_locked(locked, actor, reason=f"required capability {name!r} was revoked")
        return Result(locked, version)


def trust_key(name: str, public_key_b64: str, actor: Actor) -> PublisherKey:
    """Add (or re-trust) a publisher key; validated as a 32-byte ed25519 key."""
    from ..signing import KEY_BYTES, b64decode_exact, fingerprint

    try:
        raw = b64decode_exact(public_key_b64.strip(), KEY_BYTES, "public key")
    except ValueError as exc:
        raise SignatureError(f"not an ed25519 public key: {exc}")
    print_ = fingerprint(raw)
    with transaction.atomic():
        key, created = PublisherKey.objects.get_or_create(
            fingerprint=print_, defaults={"name": name, "public_key": public_key_b64.strip()}
        )
        if not created and (not key.trusted or key.revoked_at is not None):
            raise LifecycleError(
                f"key {print_} was revoked; a revoked key cannot be trusted again"
                if key.revoked_at else f"key {print_} exists but is not trusted"
            )
        if created:  # trusting a trusted key again changes nothing and is not audited
            _audit("trust_key", None, actor, key=name, fingerprint=print_)
        return key


def find_key(prefix: str, *, lock: bool = False) -> PublisherKey:
    """The one key whose fingerprint starts with ``prefix`` (at least 8 hex characters)."""
    prefix = prefix.strip().lower()
    if len(prefix) < 8:
        raise KeyNotFound("give at least 8 characters of the key's fingerprint")
    rows = PublisherKey.objects.filter(fingerprint__startswith=prefix)
    if lock:
        rows = rows.select_for_update()
    found = list(rows[:2])
    if not found:
        raise KeyNotFound(f"no publisher key has a fingerprint starting with {prefix}")
    if len(found) > 1:
        raise KeyNotFound(f"several keys have fingerprints starting with {prefix}; give more characters")
    return found[0]


def revoke_key(key: PublisherKey | str, actor: Actor) -> list[str]:
    """Revoke a publisher key and deactivate every active plugin whose running version it signed.
    Returns the slugs deactivated."""
    with transaction.atomic():
        if isinstance(key, str):
            key = find_key(key, lock=True)
        else:
            key = PublisherKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            return []  # already revoked: nothing to do, nothing to audit
        key.revoked_at = timezone.now()
        key.trusted = False
        key.save(update_fields=["revoked_at", "trusted"])
        affected = []
        for plugin in Plugin.objects.select_for_update().filter(
            active_version__publisher_key=key, state=PluginState.ACTIVE
        ):
            _deactivate_locked(plugin, actor, reason=f"publisher key {key.name} was revoked")
            affected.append(plugin.slug)
        _audit("revoke_key", None, actor, key=key.name, fingerprint=key.fingerprint,
               deactivated=affected)
        bump_generation()
        return affected


def record_fault(slug: str, kind: str, message: str, *, version: str = "", hook: str = "",
                 guest_message: str = "", report: dict[str, Any] | None = None) -> bool:
    """Store a fault and quarantine the plugin once it has faulted ``QUARANTINE_FAULTS`` times
    within ``QUARANTINE_WINDOW`` seconds. Returns True when this fault quarantined it. ``report``
    is a trap report (``devtools.traps.TrapReport.as_dict()`` plus ``text``)."""
    logs.record_fault(slug, kind, message, version=version, hook=hook, guest_message=guest_message,
                      report=report)
    plugin = Plugin.objects.filter(slug=slug).first()
    if plugin is None:
        return False
    PluginFault.objects.create(plugin=plugin, version=version, kind=kind, hook=hook[:200],
                               message=message[:4000], guest_message=(guest_message or "")[:4000],
                               report=report)
    since = timezone.now() - timedelta(seconds=settings.QUARANTINE_WINDOW)
    count = PluginFault.objects.filter(plugin=plugin, created_at__gte=since).count()
    if count >= settings.QUARANTINE_FAULTS and plugin.state == PluginState.ACTIVE:
        reason = (f"{count} faults in the last {settings.QUARANTINE_WINDOW:g} s; last: {kind}: "
                  f"{message[:200]}")
        return quarantine(plugin, reason).changed
    return False


def collect_blobs(grace_seconds: float = 3600, *, dry_run: bool = False) -> list[str]:
    """Delete stored blobs no version references (left behind when a caller's own transaction
    rolled back after an install wrote its blob, or a process died between writing a blob and
    committing its version). Blobs younger than ``grace_seconds`` are kept: another process may be
    installing them right now. Returns the names deleted (with ``dry_run``: that would be)."""
    storage = get_storage()
    try:
        folders, _ = storage.listdir(PREFIX)
    except (FileNotFoundError, NotImplementedError):
        return []
    referenced = set(PluginVersion.objects.values_list("blob_name", flat=True))
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    deleted = []
    for folder in folders:
        for name in storage.listdir(f"{PREFIX}/{folder}")[1]:
            path = f"{PREFIX}/{folder}/{name}"
            if path in referenced:
                continue
            try:
                if grace_seconds and storage.get_modified_time(path) > cutoff:
                    continue
            except NotImplementedError:
                pass
            if not dry_run:
                storage.delete(path)
            deleted.append(path)
    return sorted(deleted)


# --- dev builds (``POST /_/plugins/dev/install``, ``manage.py plugin dev``) -----------------------

DEV_MARKER = "+dev."
"""Dev builds are versions ``<manifest version>+dev.<build id>`` (semver build metadata)."""


@dataclass(frozen=True)
class DevInstallResult(Result):
    """What :func:`dev_install` did. ``status``: ``installed`` (new plugin), ``replaced`` (another
    build now runs), ``unchanged`` (this exact build was already there)."""

    status: str = "unchanged"
    granted: tuple[str, ...] = ()  # capabilities granted now (the manifest asks for all of them)
    added: tuple[str, ...] = ()  # grants added by this build
    removed: tuple[str, ...] = ()  # grants dropped because this build no longer asks for them
    removed_versions: tuple[str, ...] = ()  # earlier dev builds deleted
    reactivated: bool = False  # the plugin was inactive or quarantined and runs again


def is_dev_version(version: str) -> bool:
    return DEV_MARKER in version


def dev_version(manifest_version: str, manifest_bytes: bytes, wasm_sha256: str) -> str:
    """``<version without build metadata>+dev.<12 hex>``: the build id hashes the manifest bytes
    *and* the wasm, so a manifest-only edit (a new capability) is a new build too."""
    build = hashlib.sha256(hashlib.sha256(manifest_bytes).digest() + bytes.fromhex(wasm_sha256))
    return f"{manifest_version.split('+', 1)[0]}{DEV_MARKER}{build.hexdigest()[:12]}"


def _dev_bundle(manifest_bytes: bytes, wasm: bytes) -> Bundle:
    """The upload checked exactly like a bundle (sizes, manifest schema, wasm header), unsigned,
    with the manifest's version replaced by the dev build's."""
    from .. import bundle as bundles
    from ..manifest import validate

    checked = bundles.read(bundles.pack(manifest_bytes, wasm), require_signature=False,
                           key_lookup=lambda fingerprint: None)
    number = dev_version(checked.manifest.version, manifest_bytes, checked.wasm_sha256)
    if len(number) > 64:
        raise LifecycleError(f"version {checked.manifest.version!r} is too long to label a dev build "
                             f"(at most 47 characters before build metadata)", plugin=checked.slug)
    return dataclasses.replace(checked, manifest=validate({**checked.manifest.raw, "version": number}))


def dev_install(manifest_bytes: bytes, wasm: bytes, actor: Actor) -> DevInstallResult:
    """Install or replace a plugin's dev build and make it run, in one transaction (dev mode only).

    The signature rule is skipped (audited as ``unsigned-dev``) and every capability the manifest
    asks for is granted, with hosts, and grants it no longer asks for are dropped (audited as
    ``dev_grant``): on a dev site the author is also the admin. Versions stay immutable: each
    distinct build is its own version (:func:`dev_version`), so uploading the same build again is a
    no-op, and the build it replaces is deleted with its blob (when no other version uses it), so
    builds do not pile up. A plugin that has any version installed from a bundle (signed, or not a
    dev build) is refused (:class:`DevInstallRefused`): a dev upload must never silently swap out
    code an admin reviewed; uninstall it (or use another slug) to develop it here.
    """
    if not settings.DEV_MODE:
        raise LifecycleError("dev builds install only in dev mode (GONEXT_PLUGINS['DEV_MODE'])")
    bundle = _dev_bundle(manifest_bytes, wasm)
    manifest = bundle.manifest
    _check_grants(manifest, manifest.all_capabilities)  # an unknown capability is refused here
    wanted = set(manifest.all_capabilities)
    hosts = sorted(manifest.allowed_hosts)
    compiled = _compile(manifest.slug, bundle.wasm, bundle.wasm_sha256)  # a dev build always runs

    def body(blob: str) -> DevInstallResult:
        plugin = Plugin.objects.select_for_update().filter(slug=manifest.slug).first()
        created = plugin is None
        if plugin is None:
            plugin = Plugin.objects.create(
                slug=manifest.slug, name=manifest.name, description=manifest.description,
                author=manifest.author, homepage=manifest.homepage, state=PluginState.INACTIVE,
            )
        versions = list(plugin.versions.all())
        production = sorted(v.version for v in versions if v.signed or not is_dev_version(v.version))
        if production:
            raise DevInstallRefused(
                f"{plugin.slug} has versions installed from bundles ({', '.join(production)}); a dev "
                "build would replace code an admin reviewed. Uninstall it first, or develop under "
                "another slug", plugin=plugin.slug,
            )
        old = plugin.active_version
        existing = next((v for v in versions if v.version == manifest.version), None)
        if existing is not None and existing.wasm_sha256 != bundle.wasm_sha256:  # a hash collision
            raise VersionConflict(f"dev build {manifest.version} exists with other bytes",
                                  plugin=plugin.slug)
        version = existing or _new_version(plugin, bundle, None, False, blob)
        status = "installed" if created else ("unchanged" if old is not None and old.pk == version.pk
                                              else "replaced")
        added, removed = _sync_dev_grants(plugin, wanted, hosts, actor, version)
        stale = [v for v in versions if v.pk != version.pk]
        if status != "unchanged":
            plugin.active_version = version
            plugin.name, plugin.description = manifest.name, manifest.description
            plugin.author, plugin.homepage = manifest.author, manifest.homepage
            plugin.save()
            _audit("dev_install", plugin, actor, version=version.version, status=status,
                   before=old.version if old else None, after=version.version,
                   signature="unsigned-dev", warning="UNSIGNED dev build installed: dev mode is on",
                   wasm_sha256=bundle.wasm_sha256, removed_versions=sorted(v.version for v in stale))
        blobs = {v.blob_name for v in stale}
        PluginVersion.objects.filter(pk__in=[v.pk for v in stale]).delete()
        if blobs:
            def remove_blobs() -> None:
                for name in blobs:
                    if not PluginVersion.objects.filter(blob_name=name).exists():
                        delete_blob(name)

            transaction.on_commit(remove_blobs)
        reactivated = False
        if plugin.state == PluginState.ACTIVE:
            if status != "unchanged":
                _validate_activation(plugin, version, compiled)
        else:
            reactivated = not created
            _activate_locked(plugin, actor, compiled)
        changed = status != "unchanged" or bool(added or removed) or reactivated
        if changed:
            bump_generation()
        if status != "unchanged":
            signal = signals.plugin_installed if created else signals.plugin_upgraded
            _send_on_commit(signal, plugin, version, actor, before=old.version if old else None, dev=True)
            number = version.version
            transaction.on_commit(lambda: logs.log_event(
                plugin.slug, logs.INFO, f"dev build {number} installed ({status})", version=number))
        return DevInstallResult(
            plugin, version, changed=changed, status=status, granted=tuple(sorted(wanted)),
            added=tuple(added), removed=tuple(removed),
            removed_versions=tuple(sorted(v.version for v in stale)), reactivated=reactivated,
        )

    try:
        return _run_guarded(bundle, body)
    except IntegrityError:
        raise PluginExists(f"{manifest.slug} was installed at the same time; upload again",
                           plugin=manifest.slug)


def _sync_dev_grants(plugin: Plugin, wanted: set[str], hosts: list[str], actor: Actor,
                     version: PluginVersion) -> tuple[list[str], list[str]]:
    """Make the grants exactly what the dev build asks for; (added, removed), audited."""
    current = {g.capability: g for g in plugin.grants.all()}
    removed = sorted(set(current) - wanted)
    if removed:
        CapabilityGrant.objects.filter(plugin=plugin, capability__in=removed).delete()
    added = _write_grants(plugin, wanted, actor, version, hosts if "http.fetch" in wanted else None)
    if added or removed:
        _audit("dev_grant", plugin, actor, version=version.version, granted=added, revoked=removed,
               hosts=hosts if "http.fetch" in wanted else [],
               note="dev mode grants whatever the dev build asks for")
    return added, removed
