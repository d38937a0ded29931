"""The checks made before a change: one function per rule, used by the operations themselves and
by the interfaces that show a refusal before asking for a decision (the admin's upload step).

Nothing here writes. The refusals name the next step through a ``hint``, because the admin, the
API and the command line each say it in their own terms ("use Upgrade", "use rollback").
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import capabilities
from ..bundle import Bundle
from ..conf import settings
from ..errors import (
    ConsentRequired,
    InvalidSettings,
    LifecycleError,
    PluginExists,
    SignatureError,
    UnknownCapability,
    VersionConflict,
)
from ..manifest import Manifest, version_key
from ..models import Plugin, PluginVersion, PublisherKey
from ._compile import Compiled, loader
from ._tx import manifest_of
from .compat import check_version
from .settings import problems_of

INSTALL_HINT = "upgrade it instead"
ROLLBACK_HINT = "use rollback to go back"


# --- capabilities ------------------------------------------------------------------------------


def granted_capabilities(plugin: Plugin) -> set[str]:
    """Every capability on record for ``plugin`` (including grants kept for older versions)."""
    return set(plugin.grants.values_list("capability", flat=True))


def effective(granted: Iterable[str], manifest: Manifest) -> frozenset[str]:
    """What a version may use: granted *and* asked for by that version (least privilege: a grant
    kept for an older version does not widen a newer one), plus what every plugin holds."""
    return frozenset(set(granted) & set(manifest.all_capabilities)) | capabilities.ALWAYS_GRANTED


def effective_hosts(fetch_hosts: Iterable[str], manifest: Manifest) -> tuple[str, ...]:
    """The hosts ``http.fetch`` may reach: granted *and* listed by the running manifest."""
    return tuple(sorted(set(fetch_hosts) & set(manifest.allowed_hosts)))


def check_grants(manifest: Manifest, granted: Iterable[str], already: Iterable[str] = ()) -> set[str]:
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


def check_hosts(manifest: Manifest, hosts: Iterable[str] | None) -> list[str]:
    """The hosts to allow ``http.fetch``: all the manifest lists, or a subset of them."""
    if hosts is None:
        return sorted(manifest.allowed_hosts)
    hosts = set(hosts)
    extra = sorted(hosts - set(manifest.allowed_hosts))
    if extra:
        raise LifecycleError(
            f"cannot allow hosts the manifest does not list: {', '.join(extra)}", plugin=manifest.slug
        )
    return sorted(hosts)


# --- publishers --------------------------------------------------------------------------------


def check_signature(bundle: Bundle) -> tuple[PublisherKey | None, bool]:
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


# --- install and upgrade targets ---------------------------------------------------------------


def check_install(slug: str, *, hint: str = INSTALL_HINT) -> None:
    """Refuse to install a slug that is taken (:class:`PluginExists`)."""
    if Plugin.objects.filter(slug=slug).exists():
        raise PluginExists(f"a plugin with slug {slug!r} is already installed; {hint}", plugin=slug)


def same_version(plugin: Plugin, bundle: Bundle) -> PluginVersion | None:
    """The installed version when the bundle's version is there with these exact contents (an
    upgrade to it changes nothing); None when it is not installed; :class:`VersionConflict` when it
    is, with other contents."""
    manifest = bundle.manifest
    existing = plugin.versions.filter(version=manifest.version).first()
    if existing is None:
        return None
    if existing.wasm_sha256 == bundle.wasm_sha256 and existing.manifest == manifest.raw:
        return existing
    raise VersionConflict(
        f"version {manifest.version} is already installed with different contents; "
        "versions are immutable, so publish it under a new version number",
        plugin=plugin.slug,
    )


def check_upgrade(plugin: Plugin, bundle: Bundle, *, hint: str = ROLLBACK_HINT) -> PluginVersion | None:
    """Every refusal an upgrade of ``plugin`` to ``bundle`` meets before its signature and grants
    are looked at: another plugin's bundle, the same version with other contents, an older version.
    Returns the installed version when it is this exact bundle (a no-op), else None."""
    manifest = bundle.manifest
    if manifest.slug != plugin.slug:
        raise LifecycleError(f"the bundle is for {manifest.slug!r}, not {plugin.slug!r}", plugin=plugin.slug)
    same = same_version(plugin, bundle)
    if same is not None:
        return same
    newest = max((v.version for v in plugin.versions.all()), key=version_key, default=None)
    if newest is not None and version_key(manifest.version) < version_key(newest):
        raise LifecycleError(
            f"version {manifest.version} is older than the installed {newest}; {hint}",
            plugin=plugin.slug,
        )
    return None


# --- settings ----------------------------------------------------------------------------------


def check_settings(plugin: Plugin, version: PluginVersion, manifest: Manifest) -> None:
    """Refuse to run a version whose schema refuses the stored settings (kept from an older version)
    or lacks a required one: the plugin would read values it was never meant to get."""
    found = problems_of(manifest, plugin.settings)
    if found:
        raise InvalidSettings(
            f"version {version.version} does not accept the plugin's settings; fix them (the plugin's "
            f"settings page, PUT /plugins/{plugin.slug}/settings/ or `manage.py plugin settings "
            f"{plugin.slug} KEY=VALUE`) before activating it", problems=found, plugin=plugin.slug)


# --- activation --------------------------------------------------------------------------------


def validate_activation(plugin: Plugin, version: PluginVersion, compiled: Compiled) -> Manifest:
    """Everything that must hold before a version may run: consent, hooks and jobs capabilities,
    settings its schema accepts, and wasm that this host can load (``compiled`` before the
    transaction opened). An incompatible version is refused first, with every reason."""
    check_version(plugin.slug, version)
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
    check_settings(plugin, version, manifest)
    loader().check_loadable(plugin.slug, module, manifest)
    return manifest
