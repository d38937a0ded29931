"""Shared fixtures. Tests use the real thing: real wasmtime, a real database, real servers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GUESTS = Path(__file__).resolve().parent / "guests"


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave screenshots and reports for a person to look at."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


# --- bundles, keys and plugins ------------------------------------------------------------------

ABI_GUEST = GUESTS / "abi_guest.wat"


def guest_wasm(name: str = "abi_guest") -> bytes:
    """A WAT guest from tests/guests compiled to binary (bundles carry binary wasm)."""
    import wasmtime

    return wasmtime.wat2wasm((GUESTS / f"{name}.wat").read_text())


def make_manifest(**overrides: object) -> dict[str, object]:
    manifest: dict[str, object] = {
        "apiVersion": "gonext.io/v1",
        "slug": "demo",
        "name": "Demo plugin",
        "version": "1.0.0",
        "abi": 1,
        "description": "A plugin for tests.",
        "author": "Tests",
        "capabilities": ["kv"],
    }
    manifest.update(overrides)
    return manifest


@pytest.fixture
def publisher(db):  # type: ignore[no-untyped-def]
    """A generated signing key whose public half is trusted on this site."""
    from gonext_plugins import lifecycle, signing

    private, public = signing.generate_key()
    key = lifecycle.trust_key("Test publisher", public, "tests")
    key.private_key = private  # type: ignore[attr-defined]
    return key


@pytest.fixture
def make_bundle(publisher):  # type: ignore[no-untyped-def]
    """``make_bundle(wasm=None, signed=True, **manifest_fields) -> Bundle`` (read back and verified)."""
    from gonext_plugins import bundle

    def factory(wasm: bytes | None = None, signed: bool = True, key: object = None,
                **fields: object):  # type: ignore[no-untyped-def]
        raw = bundle.pack(make_manifest(**fields), wasm if wasm is not None else guest_wasm())
        if signed:
            raw = bundle.sign(raw, key or publisher.private_key)
        return bundle.read(raw, require_signature=False)

    return factory


@pytest.fixture(autouse=True, scope="session")
def _log_writer_without_thread(request):  # type: ignore[no-untyped-def]
    """The plugin log writer's thread would write through its own database connection, outside each
    test's transaction; tests store queued lines with ``logs.flush()`` instead (and a test that wants
    the thread starts it with ``logs.writer.start()``)."""
    if request.config.pluginmanager.hasplugin("django"):
        from gonext_plugins import logs

        logs.writer.auto_start = False
    yield


@pytest.fixture(autouse=True)
def _isolated_plugin_state(request, tmp_path):  # type: ignore[no-untyped-def]
    """Each Django test gets its own media root (blobs, artifact cache) and a registry with nothing
    loaded. Runtime-only tests (run without the Django plugin too) are left alone."""
    if not request.config.pluginmanager.hasplugin("django") or "runtime" in request.node.path.parts:
        yield
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    yield
    if "gonext_plugins.registry" in sys.modules:
        from gonext_plugins.registry import registry

        registry.close()
    if "gonext_plugins.rollout" in sys.modules:
        from gonext_plugins import rollout

        rollout.forget_rules()
        rollout.recorder.reset()
