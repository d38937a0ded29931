"""Start-up (issue #18): a web process warms up before it accepts connections, so its first page
loads no plugin and imports no template tag library; a plugin that cannot load or cannot run on
this site never stops the process from starting; and what ``django.setup()`` no longer imports stays
unimported. Real processes on one SQLite site, observed through ``sys.modules`` and the registry."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle, signing
from gonext_plugins.storage import blob_name

from .conftest import REPO, guest_wasm, make_manifest
from .test_cross_process import base_env, manage

PROBE = REPO / "tests" / "procs" / "warmup_probe.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A site with the demo's posts and three active plugins: ``marker`` (a ``the_content`` filter),
    ``gallery`` (needs ``posts.read``, which ``tests.compat_settings`` does not register) and
    ``broken`` (its blob damaged after install and no compiled module cached: it cannot load)."""
    workdir = tmp_path_factory.mktemp("startup")
    media = workdir / "media"
    media.mkdir()
    env = base_env(f"sqlite:///{workdir / 'site.sqlite3'}", media)
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "seed_demo")
    private, public = signing.generate_key()
    manage(env, "plugin", "trust-key", "Start-up publisher", public)
    plugins: list[tuple[str, str, list[str], list[dict[str, Any]]]] = [
        ("marker", "marker_guest", ["hooks.subscribe"], [{"name": "the_content", "kind": "filter"}]),
        ("gallery", "abi_guest", ["kv", "hooks.subscribe", "posts.read"],
         [{"name": "upper", "kind": "filter"}]),
        ("broken", "minimal", ["kv"], []),
    ]
    for slug, guest, grants, hooks in plugins:
        path = workdir / f"{slug}.gnplugin"
        manifest = make_manifest(slug=slug, capabilities=grants, hooks=hooks)
        path.write_bytes(bundle.sign(bundle.pack(manifest, guest_wasm(guest)), private))
        manage(env, "plugin", "install", str(path), "--grant", *grants, "--activate")
    (media / blob_name(hashlib.sha256(guest_wasm("minimal")).hexdigest())).write_bytes(b"\0asm damaged")
    shutil.rmtree(media / "gonext_plugins" / "cache")
    return env


def probe(env: dict[str, str], *, warm_up: bool,
          settings: str = "tests.settings") -> tuple[dict[str, Any], str]:
    done = subprocess.run([sys.executable, str(PROBE)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**env, "GONEXT_WARM_UP": "1" if warm_up else "0",
                               "DJANGO_SETTINGS_MODULE": settings})
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, done.stderr


def test_the_first_page_after_a_warm_up_loads_no_plugin_and_imports_no_template_library(
        site: dict[str, str]) -> None:
    warm, log = probe(site, warm_up=True)
    assert warm["ready_plugins"] == ["gallery", "marker"]  # loaded before the server would listen
    assert "plugin broken could not be loaded" in log  # ... and the broken one skipped, not fatal
    assert warm["ready_api_imported"] is False  # the API's URLconf stays deferred
    assert warm["status"] == 200
    assert warm["page_plugins"] == ["gallery", "marker"] and warm["same_objects"] is True
    assert warm["cache_reads_by_page"] == [0, 0]
    assert warm["templatetags_imported_by_page"] == []

    # The same process without a warm-up: its first visitor pays for all of it.
    cold, _ = probe(site, warm_up=False)
    assert cold["ready_plugins"] == [] and cold["page_plugins"] == ["gallery", "marker"]
    assert cold["cache_reads_by_page"][0] == 2  # marker and gallery, from the compiled cache
    assert "rest_framework.templatetags.rest_framework" in cold["templatetags_imported_by_page"]


def test_a_warm_up_with_a_plugin_this_site_cannot_run_starts_and_skips_it(site: dict[str, str]) -> None:
    out, log = probe(site, warm_up=True, settings="tests.compat_settings")
    assert out["ready_plugins"] == ["marker"] and out["ready_incompatible"] == ["gallery"]
    assert "plugin gallery 1.0.0 is skipped: this site cannot run it" in log
    assert out["status"] == 200 and out["page_plugins"] == ["marker"]
    assert out["templatetags_imported_by_page"] == []


DEFERRED = ("jsonschema", "referencing", "rpds", "django.test", "rest_framework.views",
            "drf_spectacular.openapi", "gonext_plugins.devtools", "gonext_plugins.api")

SETUP_PROBE = r"""
import json, sys
import django
django.setup()
deferred = json.loads(sys.argv[1])
after_setup = sorted(name for name in deferred if name in sys.modules)
from gonext_plugins import manifest
manifest.validate({"apiVersion": "gonext.io/v1", "slug": "demo", "name": "Demo", "version": "1.0.0", "abi": 1,
                   "capabilities": []}, check_host=False)
print(json.dumps({"after_setup": after_setup, "after_validate": "jsonschema" in sys.modules}))
"""


def test_what_django_setup_no_longer_imports_stays_unimported_until_used() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", SETUP_PROBE, json.dumps(DEFERRED)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"after_setup": [], "after_validate": True}


UNREACHABLE_PROBE = r"""
import json
import project.asgi
from gonext_plugins.registry import registry
ready = callable(project.asgi.application)
print(json.dumps({"loaded": sorted(registry.loaded(sync=False)), "ready": ready}))
"""


def test_a_warm_up_without_a_database_still_starts(tmp_path: Path) -> None:
    """The database down while a process starts (a failover): the warm-up logs it and the process
    starts anyway; its first request syncs again."""
    env = base_env(f"sqlite:///{tmp_path / 'no-such-directory' / 'site.sqlite3'}", tmp_path)
    done = subprocess.run([sys.executable, "-c", UNREACHABLE_PROBE], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**env, "GONEXT_WARM_UP": "1",
                                            "PYTHONPATH": os.pathsep.join(filter(None, [
                                                str(REPO), os.environ.get("PYTHONPATH")]))})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"loaded": [], "ready": True}
    assert "plugin sync skipped: database not reachable" in done.stderr


def test_compile_versions_compiles_each_new_version_and_hands_back_each_failure(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """A sync's versions are compiled side by side; a version that cannot compile comes back as its
    exception (the registry raises it where a one-by-one load would have), never stopping the rest."""
    from wasmtime import Module

    from gonext_plugins import lifecycle, loading
    from gonext_plugins.errors import PluginLoadError
    from gonext_plugins.models import PluginVersion
    from gonext_plugins.storage import get_storage

    versions = {}
    for slug, guest in (("one", "marker_guest"), ("two", "minimal"), ("three", "abi_guest")):
        plugin = lifecycle.install(make_bundle(wasm=guest_wasm(guest), slug=slug), ["kv"], "tests").plugin
        versions[slug] = PluginVersion.objects.get(plugin=plugin)
    cache = loading.runtime().cache
    shutil.rmtree(cache.directory)  # every module compiled again, each by a child process
    cache.directory.mkdir()
    with get_storage().open(versions["two"].blob_name, "wb") as damaged:
        damaged.write(b"\0asm damaged")
    misses = cache.misses

    modules = loading.compile_versions(versions)

    assert isinstance(modules["one"], Module) and isinstance(modules["three"], Module)
    assert isinstance(modules["two"], PluginLoadError) and "sha256" in modules["two"].message
    assert cache.misses - misses == 3


def test_the_deploy_check_imports_asgi_py_without_warming_up(site: dict[str, str]) -> None:
    """W009 imports ASGI_APPLICATION to look at it: a ``check --deploy`` loads no plugin."""
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**site, "GONEXT_WARM_UP": "1", "LOG_LEVEL": "INFO"})
    output = done.stdout + done.stderr
    assert "gonext_plugins.W009" not in output  # it did import the application and found the guard
    assert "warmed up" not in output and "plugin marker 1.0.0 loaded" not in output
