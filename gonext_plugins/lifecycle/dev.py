"""Dev builds (``POST /_/plugins/dev/install``, ``manage.py plugin dev``): install or replace a
plugin's build on a dev site in one step, without a signature and with every grant it asks for."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from django.db import IntegrityError

from .. import bundle as bundles
from .. import signals
from ..bundle import Bundle
from ..conf import settings
from ..errors import DevInstallRefused, LifecycleError, PluginExists, VersionConflict
from ..manifest import validate
from ..models import CapabilityGrant, Plugin, PluginState, PluginVersion
from ._compile import compile_wasm
from ._states import activate_locked
from ._tx import Actor, Result, audit, bump_generation, send_on_commit
from .blobs import remove_unreferenced_on_commit, run_guarded
from .grants import write_grants
from .plugins import new_version
from .preflight import check_grants, validate_activation

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
    check_grants(manifest, manifest.all_capabilities)  # an unknown capability is refused here
    wanted = set(manifest.all_capabilities)
    hosts = sorted(manifest.allowed_hosts)
    compiled = compile_wasm(manifest.slug, bundle.wasm, bundle.wasm_sha256)  # a dev build always runs

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
        version = existing or new_version(plugin, bundle, None, False, blob)
        status = "installed" if created else ("unchanged" if old is not None and old.pk == version.pk
                                              else "replaced")
        added, removed = _sync_dev_grants(plugin, wanted, hosts, actor, version)
        stale = [v for v in versions if v.pk != version.pk]
        if status != "unchanged":
            plugin.active_version = version
            plugin.name, plugin.description = manifest.name, manifest.description
            plugin.author, plugin.homepage = manifest.author, manifest.homepage
            plugin.save()
            audit("dev_install", plugin, actor, version=version.version, status=status,
                  before=old.version if old else None, after=version.version,
                  signature="unsigned-dev", warning="UNSIGNED dev build installed: dev mode is on",
                  wasm_sha256=bundle.wasm_sha256, removed_versions=sorted(v.version for v in stale))
        PluginVersion.objects.filter(pk__in=[v.pk for v in stale]).delete()
        remove_unreferenced_on_commit(v.blob_name for v in stale)
        reactivated = False
        if plugin.state == PluginState.ACTIVE:
            if status != "unchanged":
                validate_activation(plugin, version, compiled)
        else:
            reactivated = not created
            activate_locked(plugin, actor, compiled)
        changed = status != "unchanged" or bool(added or removed) or reactivated
        if changed:
            bump_generation()
        if status != "unchanged":
            # The plugin's log says "dev build … installed (status)" from this signal.
            signal = signals.plugin_installed if created else signals.plugin_upgraded
            send_on_commit(signal, plugin, version, actor, before=old.version if old else None,
                           dev=True, status=status)
        return DevInstallResult(
            plugin, version, changed=changed, status=status, granted=tuple(sorted(wanted)),
            added=tuple(added), removed=tuple(removed),
            removed_versions=tuple(sorted(v.version for v in stale)), reactivated=reactivated,
        )

    try:
        return run_guarded(bundle, body)
    except IntegrityError as exc:
        raise PluginExists(f"{manifest.slug} was installed at the same time; upload again",
                           plugin=manifest.slug) from exc


def _sync_dev_grants(plugin: Plugin, wanted: set[str], hosts: list[str], actor: Actor,
                     version: PluginVersion) -> tuple[list[str], list[str]]:
    """Make the grants exactly what the dev build asks for; (added, removed), audited."""
    current = {g.capability: g for g in plugin.grants.all()}
    removed = sorted(set(current) - wanted)
    if removed:
        CapabilityGrant.objects.filter(plugin=plugin, capability__in=removed).delete()
    added = write_grants(plugin, wanted, actor, version, hosts if "http.fetch" in wanted else None)
    if added or removed:
        audit("dev_grant", plugin, actor, version=version.version, granted=added, revoked=removed,
              hosts=hosts if "http.fetch" in wanted else [],
              note="dev mode grants whatever the dev build asks for")
    return added, removed
