"""What the admin's dialogs and pages show, computed from a bundle, a manifest or a plugin.

Why apart from the views: these helpers only read (the capability registry, the effective limits,
the running version's grants) and turn it into rows and sentences, so the install and upgrade
dialogs, the key views and the plugin page describe things the same way, and the views stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import capabilities, hooks, lifecycle, netpolicy
from ..errors import ManifestError, PluginError, RevokedKey, UntrustedKey
from ..manifest import Manifest
from ..models import AuditEvent, Plugin, PublisherKey
from ..registry import host_limits, plugin_limits

if TYPE_CHECKING:
    from ..bundle import Bundle


def sentence(message: str) -> str:
    """An error message as a sentence: capitalised, unless it starts with a name (``plugin.wasm``)."""
    first = message.split(" ", 1)[0]
    return message if "." in first or "_" in first else message[:1].upper() + message[1:]


@dataclass(frozen=True)
class CapabilityRow:
    """One capability line of a dialog."""

    name: str
    description: str
    risk: str
    required: bool
    granted: bool = False  # already granted (upgrade)
    new: bool = False  # not asked for by the running version (upgrade)

    @property
    def locked(self) -> bool:
        """Shown ticked and unchangeable: required at install, or already granted on upgrade."""
        return self.granted or (self.required and not self.new)


@dataclass(frozen=True)
class HookRow:
    """One hook a manifest subscribes to, and whether this site offers it (its hook catalogue)."""

    name: str
    kind: str
    priority: int
    unoffered: str = ""  # why the site does not offer it; empty when it does
    pure: bool = False  # declared pure: a repeated input may get the remembered result


def hook_rows(manifest: Manifest) -> list[HookRow]:
    """The manifest's hooks, each marked when the site's catalogue does not offer it: the plugin
    would install, but that part of it would never run unless the site fires the hook anyway."""
    why = {(name, kind): reason for name, kind, reason in
           hooks.unoffered((hook.name, hook.kind) for hook in manifest.hooks)}
    return [HookRow(hook.name, hook.kind, hook.priority, why.get((hook.name, hook.kind), ""), hook.pure)
            for hook in manifest.hooks]


def bundle_error_lines(exc: PluginError) -> tuple[str, list[tuple[str, str]]]:
    """A plain sentence for a refused upload, and the manifest problems (path, text) if any."""
    if isinstance(exc, ManifestError):
        count = len(exc.problems)
        return (f"The plugin's manifest has {count} problem{'s' if count != 1 else ''}; the publisher "
                f"must fix {'it' if count == 1 else 'them'}:", exc.problems)
    if isinstance(exc, UntrustedKey):
        return (f"This bundle is signed by an untrusted key: {exc.fingerprint}. If you trust this "
                "publisher, add their key under Trusted publisher keys, then upload it again.", [])
    if isinstance(exc, RevokedKey):
        return (f"This bundle is signed by a revoked key: {exc.fingerprint}. Do not install it; ask the "
                "publisher for a bundle signed with their new key.", [])
    return (sentence(exc.message), [])


def limit_rows(manifest: Manifest) -> list[dict[str, Any]]:
    host = host_limits()
    effective = plugin_limits(manifest, host)
    asked = manifest.limits

    def pages(value: int | None) -> str:
        return f"{value} pages ({value * 64 // 1024 if value >= 16 else value * 64} " \
               f"{'MiB' if value >= 16 else 'KiB'})" if value else ""

    def lowered(wanted: int | None, got: int | None) -> bool:
        """It asked for more than it gets: the plugin may fail (out of fuel, time or memory) where
        its author expected room, which the admin should see before saying yes."""
        return wanted is not None and got is not None and got < wanted

    return [
        {"name": "Memory", "asked": pages(asked.memory_pages), "cap": pages(host.memory_pages),
         "effective": pages(effective.memory_pages),
         "lowered": lowered(asked.memory_pages, effective.memory_pages)},
        {"name": "Fuel per call", "asked": f"{asked.fuel:,}" if asked.fuel else "",
         "cap": f"{host.fuel:,}" if host.fuel else "unlimited",
         "effective": f"{effective.fuel:,}" if effective.fuel else "unlimited",
         "lowered": lowered(asked.fuel, effective.fuel)},
        {"name": "Time per call", "asked": f"{asked.timeout_ms:,} ms" if asked.timeout_ms else "",
         "cap": f"{host.hard_timeout_ms:,} ms", "effective": f"{effective.hard_timeout_ms:,} ms",
         "lowered": lowered(asked.timeout_ms, effective.hard_timeout_ms)},
    ]


def describe_bundle(bundle: Bundle) -> dict[str, Any]:
    """Everything the dialog shows about a verified bundle, whatever the operation."""
    manifest = bundle.manifest
    status = bundle.signature
    key = PublisherKey.objects.filter(fingerprint=status.fingerprint).first() if status.fingerprint else None
    hosts = manifest.allowed_hosts if "http.fetch" in manifest.all_capabilities else ()
    return {
        "manifest": manifest,
        "signature": status,
        "publisher_key": key,
        "bundle_sha256": bundle.bundle_sha256,
        "wasm_sha256": bundle.wasm_sha256,
        "size": bundle.size,
        "hooks": hook_rows(manifest),
        "jobs": manifest.jobs,
        "limits": limit_rows(manifest),
        "allowed_hosts": hosts,
        # IP and localhost hosts only install where the site opted in; flagged because they reach
        # the site's own network, not a public service.
        "internal_hosts": [host for host in hosts if netpolicy.is_ip_host(netpolicy.split_host(host)[0])],
    }


def install_capabilities(manifest: Manifest) -> list[CapabilityRow]:
    required = set(manifest.capabilities)
    rows = [CapabilityRow(c.name, c.description, c.risk, c.name in required)
            for c in capabilities.describe(manifest.all_capabilities)]
    return sorted(rows, key=lambda row: (not row.required, row.name))


def upgrade_capabilities(plugin: Plugin, manifest: Manifest) -> tuple[list[CapabilityRow], list[Any]]:
    """The new version's capabilities marked against what runs now, and the dropped ones. Only a
    grant the running version uses counts as granted: one kept for an older version is asked again."""
    old = lifecycle.manifest_of(plugin.active_version) if plugin.active_version else None
    old_caps = set(old.all_capabilities) if old else set()
    granted = lifecycle.granted_capabilities(plugin) & old_caps
    required = set(manifest.capabilities)
    rows = [CapabilityRow(c.name, c.description, c.risk, c.name in required, granted=c.name in granted,
                          new=c.name not in old_caps)
            for c in capabilities.describe(manifest.all_capabilities)]
    rows.sort(key=lambda row: (row.granted, not row.new, not row.required, row.name))
    dropped = capabilities.describe(old_caps - set(manifest.all_capabilities))
    return rows, dropped


def recent_audit(plugin: Plugin, limit: int = 50) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(plugin_slug=plugin.slug).select_related("actor")[:limit])


def diff_rows(diff: str) -> list[tuple[str, str]]:
    """A unified diff's lines with the CSS class that colours them (added, removed, hunk header)."""
    rows = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            cls = "gn-diff-hunk"
        elif line.startswith("+"):
            cls = "gn-diff-add"
        elif line.startswith("-"):
            cls = "gn-diff-del"
        else:
            cls = "gn-diff-hunk" if line.startswith("@@") else ""
        rows.append((cls, line))
    return rows
