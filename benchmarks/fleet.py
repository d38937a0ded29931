"""A fleet of small real plugins for the page and start-up benchmarks.

Each member is the marker guest of ``tests/guests/marker_guest.wat`` (written from ABI.md alone: its
``the_content`` filter appends a paragraph, its ``wp_head`` action answers with no body), given a
custom section naming it so every member has its own sha256: a cold start compiles each one, as a
site with many different plugins would. Members are signed, installed, granted and activated through
``lifecycle`` like any plugin.
"""

from __future__ import annotations

from pathlib import Path

from gonext_plugins.diagnostics.wasmbin import write_uleb

REPO = Path(__file__).resolve().parent.parent
MARKER_WAT = REPO / "tests" / "guests" / "marker_guest.wat"
ACTOR = "benchmark"
HOOKS = [{"name": "wp_head", "kind": "action"}, {"name": "the_content", "kind": "filter"}]


def slug(index: int, pure: bool = False) -> str:
    return f"bench-{'pure-' if pure else ''}{index:02d}"



def member_wasm(base: bytes, name: str) -> bytes:
    """``base`` with a custom section ``gonext-bench`` holding ``name``: same code, own hash."""
    section_name = b"gonext-bench"
    body = write_uleb(len(section_name)) + section_name + name.encode()
    return base + b"\x00" + write_uleb(len(body)) + body


def install(count: int, key_path: Path, pure: bool = False) -> list[str]:
    """Install ``count`` fleet members (inactive); returns their slugs. ``pure``: members whose
    manifests declare both hooks pure (the marker guest's answers depend on its input alone), under
    their own slugs, so a site's results reuse applies to them (docs/hooks.md)."""
    import wasmtime  # imported once Django is set up, like everything the benchmarks load

    from gonext_plugins import bundle, lifecycle, signing
    from gonext_plugins.models import PublisherKey

    if not key_path.exists():
        signing.write_key_file(key_path, signing.KeyFile.generate("Benchmark publisher"))
    key = signing.load_key_file(key_path)
    if not PublisherKey.objects.filter(fingerprint=key.fingerprint).exists():
        lifecycle.trust_key(key.name, key.public_key, ACTOR)
    base = wasmtime.wat2wasm(MARKER_WAT.read_text())
    slugs = []
    for index in range(1, count + 1):
        name = slug(index, pure)
        manifest = {
            "apiVersion": "gonext.io/v1", "slug": name, "name": f"Benchmark plugin {index}",
            "version": "1.0.0", "abi": 1, "description": "A marker plugin for benchmarks.",
            "author": "Benchmarks", "capabilities": ["hooks.subscribe"],
            "hooks": [{**hook, "pure": True} for hook in HOOKS] if pure else HOOKS,
        }
        raw = bundle.sign(bundle.pack(manifest, member_wasm(base, name)), key.private_key)
        lifecycle.install(bundle.read(raw), ["hooks.subscribe"], ACTOR)
        slugs.append(name)
    return slugs


def set_active(slugs: list[str], wanted: int) -> None:
    """Activate the first ``wanted`` of ``slugs`` and deactivate the rest."""
    from gonext_plugins import lifecycle
    from gonext_plugins.models import Plugin, PluginState

    states = dict(Plugin.objects.filter(slug__in=slugs).values_list("slug", "state"))
    for index, name in enumerate(slugs):
        active = states[name] == PluginState.ACTIVE
        if index < wanted and not active:
            lifecycle.activate(name, ACTOR)
        elif index >= wanted and active:
            lifecycle.deactivate(name, ACTOR)
