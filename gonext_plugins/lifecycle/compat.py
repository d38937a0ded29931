"""The compatibility rule (:mod:`gonext_plugins.compat`) applied to bundles and stored versions.

Install and upgrade refuse an incompatible bundle before anything is stored; activation (and an
upgrade or rollback of an active plugin) refuses an incompatible stored version. The registry, the
system check, the admin banner and the API ask :func:`version_reasons` about versions already
installed, so they all say the same thing. Nothing here writes: incompatibility is a fact about the
code this process runs, not a change of state, so it is computed, never stored or audited (each
process of a site being upgraded one by one may see it differently, and none should write it).
"""

from __future__ import annotations

from .. import compat
from ..bundle import Bundle
from ..errors import IncompatiblePlugin, ManifestError, PluginError
from ..models import Plugin, PluginState, PluginVersion
from ..storage import read_blob
from ._tx import manifest_of


def refusal(slug: str, version: str, found: list[compat.Reason]) -> IncompatiblePlugin:
    """The typed error listing every reason (its message names each one)."""
    return IncompatiblePlugin(f"version {version} cannot run on this site",
                              reasons=[reason.as_dict() for reason in found], plugin=slug)


def check_bundle(bundle: Bundle) -> None:
    """Refuse a bundle this site cannot run (:class:`IncompatiblePlugin`, every reason listed)."""
    manifest = bundle.manifest
    found = compat.manifest_reasons(manifest, compat.imports_of(bundle.wasm, bundle.wasm_sha256))
    if found:
        raise refusal(manifest.slug, manifest.version, found)


def _stored_imports(slug: str, version: PluginVersion) -> tuple[compat.Import, ...] | None:
    try:
        return compat.imports_of(lambda: read_blob(version.blob_name, version.wasm_sha256, plugin=slug),
                                 version.wasm_sha256)
    except PluginError:  # a missing or altered blob fails the load itself, as a fault
        return None


def version_reasons(slug: str, version: PluginVersion,
                    site: compat.Site | None = None) -> list[compat.Reason]:
    """Why a stored version cannot run here now; empty when it can. Its ABI is read from the row,
    so a manifest the schema no longer accepts still says why."""
    site = site or compat.this_site()
    try:
        manifest = manifest_of(version)
    except ManifestError as exc:
        found = compat.reasons(abi=version.abi, required=(), site=site)
        return found or [compat.Reason(compat.MANIFEST, version.version, f"its stored manifest is no "
                                       f"longer valid here: {exc.message}")]
    return compat.manifest_reasons(manifest, _stored_imports(slug, version), site)


def check_version(slug: str, version: PluginVersion) -> None:
    """Refuse to run a stored version this site cannot run (:class:`IncompatiblePlugin`)."""
    found = version_reasons(slug, version)
    if found:
        raise refusal(slug, version.version, found)


def incompatible_active() -> dict[str, list[compat.Reason]]:
    """Active plugins this site cannot run now, with why (the system check and the admin banner)."""
    site = compat.this_site()
    found: dict[str, list[compat.Reason]] = {}
    for plugin in Plugin.objects.filter(state=PluginState.ACTIVE, active_version__isnull=False) \
            .select_related("active_version").order_by("slug"):
        assert plugin.active_version is not None
        reasons = version_reasons(plugin.slug, plugin.active_version, site)
        if reasons:
            found[plugin.slug] = reasons
    return found
