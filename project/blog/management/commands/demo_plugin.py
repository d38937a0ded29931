"""`make demo`'s plugin step: build, sign, install and activate the example SEO plugin.

What a publisher and a site admin would do by hand, in one idempotent command:
1. build ``examples/plugins/seo`` from Zig source (cached by content hash);
2. create the demo publisher key once (``var/demo-publisher.key``, mode 0600) and trust it here;
3. pack and sign ``var/seo-<version>.gnplugin``;
4. install it granting what it asks for and activate it, or upgrade/activate what is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gonext_plugins import bundle, lifecycle, signing
from gonext_plugins.devtools.zigbuild import build_zig
from gonext_plugins.errors import PluginError
from gonext_plugins.models import Plugin, PluginState, PublisherKey

ACTOR = "demo: make demo"


def ensure_demo_key(path: Path) -> signing.KeyFile:
    """The demo publisher key, created on first use and trusted on this site."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        signing.write_key_file(path, signing.KeyFile.generate("Demo publisher"))
    key = signing.load_key_file(path)
    if not PublisherKey.objects.filter(fingerprint=key.fingerprint).exists():
        lifecycle.trust_key(key.name, key.public_key, ACTOR)
    return key


def build_signed_bundle(source: Path, key: signing.KeyFile, out_dir: Path) -> Path:
    wasm = build_zig(source).read_bytes()
    manifest = (source / "manifest.json").read_bytes()
    version = bundle.read(bundle.pack(manifest, wasm), require_signature=False).manifest.version
    target = out_dir / f"{source.name}-{version}.gnplugin"
    target.write_bytes(bundle.sign(bundle.pack(manifest, wasm), key.private_key))
    return target


def install_or_update(path: Path) -> str:
    """Install, upgrade or (re)activate so the bundle at ``path`` is what runs. Returns a summary."""
    verified = bundle.read(path.read_bytes())
    manifest = verified.manifest
    wanted = list(manifest.all_capabilities)
    plugin = Plugin.objects.filter(slug=manifest.slug).first()
    if plugin is None:
        lifecycle.install(verified, wanted, ACTOR, activate=True)
        return f"installed and activated {manifest.slug} {manifest.version}"
    current = plugin.active_version.version if plugin.active_version else None
    if current != manifest.version:
        lifecycle.upgrade(plugin, verified, wanted, ACTOR)
    if plugin.state != PluginState.ACTIVE or current != manifest.version:
        lifecycle.activate(plugin, ACTOR)
        return f"{manifest.slug} {manifest.version} is active (was {current}, {plugin.state})"
    return f"{manifest.slug} {manifest.version} already installed and active"


class Command(BaseCommand):
    help = "Build, sign, install and activate the example SEO plugin (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", default=str(settings.BASE_DIR / "examples" / "plugins" / "seo"))
        parser.add_argument("--key", default=str(settings.BASE_DIR / "var" / "demo-publisher.key"))

    def handle(self, *args: Any, **options: Any) -> None:
        source, key_path = Path(options["source"]), Path(options["key"])
        try:
            key = ensure_demo_key(key_path)
            path = build_signed_bundle(source, key, key_path.parent)
            summary = install_or_update(path)
        except PluginError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"Demo publisher key: {key.fingerprint[:16]}… ({key_path})")
        self.stdout.write(f"Signed bundle: {path}")
        self.stdout.write(self.style.SUCCESS(summary))
