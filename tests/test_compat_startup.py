"""A site upgraded without a capability a plugin needs starts, serves pages and says which plugin
it skips and why (system check, API, admin banner), in real processes sharing one SQLite file; the
same database served by a process whose site still registers the capability runs the plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gonext_plugins import bundle, signing

from .conftest import REPO, guest_wasm, make_manifest
from .test_cross_process import base_env, manage

SLUG = "gallery"
GRANTS = ["kv", "hooks.subscribe", "posts.read"]
PROBE = REPO / "tests" / "procs" / "compat_probe.py"


def probe(env: dict[str, str], settings: str, html: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(PROBE), SLUG, "--html", str(html)], cwd=REPO,
                          env={**env, "DJANGO_SETTINGS_MODULE": settings}, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_site_upgraded_without_a_capability_starts_and_reports_the_skipped_plugin(
        tmp_path: Path, artifacts_dir: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    env = base_env(f"sqlite:///{tmp_path / 'site.sqlite3'}", media)
    manage(env, "migrate", "--noinput", "-v0")
    private, public = signing.generate_key()
    manage(env, "plugin", "trust-key", "Compat publisher", public)
    path = tmp_path / f"{SLUG}.gnplugin"
    manifest = make_manifest(slug=SLUG, capabilities=GRANTS, hooks=[{"name": "upper", "kind": "filter"}])
    path.write_bytes(bundle.sign(bundle.pack(manifest, guest_wasm()), private))
    manage(env, "plugin", "install", str(path), "--grant", *GRANTS, "--activate")

    # The upgraded site: starts, serves, and says what it skips and why.
    upgraded = probe(env, "tests.compat_settings", artifacts_dir / "compat_upgraded_changelist.html")
    assert upgraded["filtered"] == "hello", upgraded  # the plugin does not run...
    assert upgraded["home"] == upgraded["api"] == upgraded["admin"] == 200, upgraded  # ...the site does
    skipped = upgraded["skipped"]
    assert isinstance(skipped, dict) and [r["subject"] for r in skipped[SLUG]] == ["posts.read"], upgraded
    assert upgraded["incompatible"] == skipped[SLUG]
    assert upgraded["banner"] is True
    w013 = upgraded["w013"]
    assert isinstance(w013, list) and len(w013) == 1 and "'gallery'" in w013[0] and "posts.read" in w013[0]
    checked = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, capture_output=True, text=True,
                             env={**env, "DJANGO_SETTINGS_MODULE": "tests.compat_settings"}, timeout=120)
    assert checked.returncode == 0, checked.stderr  # a warning, never a failure
    assert "gonext_plugins.W013" in checked.stderr + checked.stdout and "posts.read" in checked.stderr

    # The same database, a process whose site registers posts.read: the plugin serves again.
    back = probe(env, "tests.settings", artifacts_dir / "compat_restored_changelist.html")
    assert back["filtered"] == "HELLO", back
    assert back["skipped"] == {} and back["incompatible"] == [] and back["banner"] is False
    assert back["w013"] == [] and back["home"] == 200
