"""Shared fixtures. Tests use the real thing: real wasmtime, a real database, real servers."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GUESTS = Path(__file__).resolve().parent / "guests"
EXAMPLES = REPO / "examples" / "plugins"
# Toolchains fetched once per machine (the pinned AssemblyScript compiler), shared by every run.
TOOL_CACHE = Path(os.environ.get("GONEXT_TEST_CACHE", Path.home() / ".cache" / "gonext-tests"))

# Tests stop `plugin dev` and servers with SIGINT (Ctrl-C). A suite started in the background by a
# shell without job control (`cmd &`, as some CI runners do) inherits SIGINT ignored, and so would
# every process it starts: they would then run on until killed. A Python handler is not inherited
# across exec, so with this one the children start with Ctrl-C's default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
def activated(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """``activated(bundle, grants) -> LoadedPlugin``: install and activate ``bundle`` through
    ``lifecycle`` (its on-commit work run), and return the plugin as the registry loaded it."""
    from gonext_plugins import lifecycle
    from gonext_plugins.registry import registry

    def install(bundle, grants):  # type: ignore[no-untyped-def]
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(bundle, list(grants), "tests", activate=True)
        loaded = registry.get(bundle.manifest.slug)
        assert loaded is not None
        return loaded

    return install


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
    """Each Django test gets its own media root (blobs, artifact cache), an empty default cache and a
    registry with nothing loaded. Runtime-only tests (run without the Django plugin too) are left
    alone. The cache holds the API throttles' counts, keyed by user id, and test databases hand out
    the same ids again: without the clear, a test's requests count against a budget earlier tests
    spent, and a long run gets 429s that no single test earned."""
    if not request.config.pluginmanager.hasplugin("django") or "runtime" in request.node.path.parts:
        yield
        return
    from django.core.cache import caches

    caches["default"].clear()
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


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright(request: pytest.FixtureRequest) -> Iterator[None]:
    """Browser tests (marker ``browser``) call the ORM between steps of Playwright's sync API, which
    runs an event loop in this thread, so Django's async guard must be off for them; set for the
    module only, never at import (an xdist worker imports every test module, and every process it
    starts afterwards would inherit it: ``check --deploy`` refuses it)."""
    marks = getattr(request.module, "pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    if not any(mark.name == "browser" for mark in marks):
        yield
        return
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


# --- toolchains and the reading-time examples, built once per session ----------------------------


@pytest.fixture(scope="session")
def asc_modules() -> Path:
    """A ``node_modules`` holding the pinned assemblyscript, npm-installed once per machine into
    ``TOOL_CACHE`` (a file lock keeps two xdist workers from installing at once) and reused."""
    from gonext_plugins.devtools.build_assemblyscript import ASSEMBLYSCRIPT_VERSION

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to build AssemblyScript plugins")
    home = TOOL_CACHE / f"assemblyscript-{ASSEMBLYSCRIPT_VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    modules = home / "node_modules"
    marker = modules / "assemblyscript" / "package.json"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file() or json.loads(marker.read_text())["version"] != ASSEMBLYSCRIPT_VERSION:
            (home / "package.json").write_text('{"private": true}\n')
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save",
                                   f"assemblyscript@{ASSEMBLYSCRIPT_VERSION}"],
                                  cwd=home, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                pytest.skip(f"npm install assemblyscript@{ASSEMBLYSCRIPT_VERSION}: {done.stderr[-500:]}")
    return modules


def with_compiler(project: Path, modules: Path) -> Path:
    """What `npm install` leaves in an AssemblyScript project, as a link to the shared install."""
    (project / "node_modules").symlink_to(modules, target_is_directory=True)
    return project


@pytest.fixture(scope="session")
def reading_time_build(tmp_path_factory: pytest.TempPathFactory,
                       request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """``reading_time_build(lang) -> (Built, Checked)``: the dev build of
    ``examples/plugins/reading-time-<lang>`` (what `plugin dev` uploads), compiled once per session
    in a copy (the repository's example stays clean) and shared by every test that needs it. A
    missing toolchain skips the test that asked."""
    from gonext_plugins.devtools import build_rust, builders
    from gonext_plugins.errors import ToolchainMissing

    root = tmp_path_factory.mktemp("reading-time")

    @cache
    def build(lang: str) -> Any:
        source = EXAMPLES / f"reading-time-{lang}"
        project = root / source.name
        shutil.copytree(source, project, ignore=shutil.ignore_patterns("build", "node_modules"))
        if lang == "rust":
            build_rust.find_rustc()  # ToolchainMissing before any copy is built
            cargo = project / "Cargo.toml"
            cargo.write_text(cargo.read_text().replace("../../../sdk/rust", str(REPO / "sdk" / "rust")))
        elif lang == "assemblyscript":
            with_compiler(project, request.getfixturevalue("asc_modules"))
        return builders.build(project)

    def built(lang: str) -> Any:
        try:
            return build(lang)
        except ToolchainMissing as exc:
            pytest.skip(f"no {lang} toolchain: {exc}")

    return built


# --- scheduling ------------------------------------------------------------------------------------

# The files that start servers, browsers or toolchains, longest first. `make test` runs the suite on
# two xdist workers with --dist loadfile, which hands out whole files in collection order: a long
# file collected last keeps one worker busy after the other has finished. Running these first lets
# the many short files fill in around them.
HEAVY_FIRST = (
    "tests/cluster/test_cluster.py",
    "tests/test_rust_plugins.py",
    "tests/test_reading_time_examples.py",
    "tests/devtools/test_assemblyscript.py",
    "tests/test_reusable_app.py",
    "tests/site/test_plugin_authors_doc.py",
    "tests/test_compat_startup.py",
    "tests/test_object_storage.py",
    "tests/test_jobs_rq.py",
    "tests/test_dev_loop_live.py",
    "tests/test_plugin_worker.py",
    "tests/test_stats_rollup.py",
    "tests/devtools/test_c.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collected items, the heavy files (``HEAVY_FIRST``) first, in that order; the rest as they were
    (every worker sorts alike, as xdist requires)."""
    rank = {path: index for index, path in enumerate(HEAVY_FIRST)}

    def key(item: pytest.Item) -> int:
        relative = Path(str(item.path)).resolve().relative_to(REPO).as_posix()
        return rank.get(relative, len(rank))

    items.sort(key=key)  # stable: within a file, and among the rest, the collection order stays
