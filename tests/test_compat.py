"""Incompatible plugins never break start-up (issue #20, item 4): the one compatibility rule, install
and upgrade refusing an incompatible bundle (lifecycle, API, CLI) before anything is stored, and an
installed plugin that became incompatible skipped with a warning (registry, system check, API,
admin, CLI) until the site offers what it needs again. Real database, storage and wasmtime."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from django.core.checks import run_checks
from django.test import Client
from rest_framework.test import APIClient

from gonext_plugins import capabilities, compat, hooks, lifecycle
from gonext_plugins.errors import IncompatiblePlugin
from gonext_plugins.manifest import validate
from gonext_plugins.models import AuditEvent, Plugin, PluginFault, PluginVersion
from gonext_plugins.registry import registry
from gonext_plugins.storage import get_storage, save_blob

from .api.helpers import assert_error, signed_bundle
from .conftest import guest_wasm, make_manifest
from .test_plugin_command_lifecycle import plugin as run_plugin_command

pytestmark = pytest.mark.django_db

SITE_CAP = "gallery.read"  # a capability "the site's own code" registers, as project/blog does posts.read
NEEDS_SITE_CAP = {"capabilities": ["kv", "hooks.subscribe", SITE_CAP],
                  "hooks": [{"name": "upper", "kind": "filter"}]}
GRANTS = ["kv", "hooks.subscribe", SITE_CAP]
# The ABI guest's shape, plus an import from `env` that no version of this host links.
UNLINKED_IMPORT_WAT = """(module
  (import "env" "gn_gone" (func (param i32)))
  (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))"""


@pytest.fixture
def site_cap() -> Iterator[None]:
    """The site registers SITE_CAP with a host function under it; removed again after the test."""
    capabilities.register(SITE_CAP, "Read the gallery.", "low")
    capabilities.host_function("gallery.list", capability=SITE_CAP)(lambda plugin, payload: {"items": []})
    yield
    capabilities.unregister(SITE_CAP)


def reason_codes(error: IncompatiblePlugin) -> list[tuple[str, str]]:
    return [(reason["code"], reason["subject"]) for reason in error.reasons]


def nothing_stored() -> bool:
    storage = get_storage()
    try:
        dirs, files = storage.listdir("gonext_plugins/blobs")
    except FileNotFoundError:
        dirs, files = [], []
    return (not Plugin.objects.exists() and not PluginVersion.objects.exists()
            and not AuditEvent.objects.filter(plugin_slug="demo").exists() and not dirs and not files)


# --- the rule --------------------------------------------------------------------------------------


def test_the_rule_names_every_reason_and_only_refusing_ones() -> None:
    site = compat.Site(abi_versions=frozenset({2}), capabilities=frozenset({"kv"}),
                       imports={"env": frozenset({"gn_log"})}, host_version="0.9.0")
    found = compat.reasons(abi=1, required=["kv", "log", SITE_CAP], requires_host=">=1.0",
                           imports=[("env", "gn_log"), ("env", "gn_gone"), ("wasi_unstable", "fd_write")],
                           site=site)
    assert [(r.code, r.subject) for r in found] == [
        ("abi", "1"), ("capability", SITE_CAP), ("host_version", ">=1.0"),
        ("import", "env.gn_gone"), ("import", "wasi_unstable.fd_write")]
    assert "this site serves ABI 2" in found[0].message
    assert compat.reasons(abi=2, required=["kv"], imports=[("env", "gn_log")], site=site) == []


def test_this_site_serves_the_schemas_abi_and_the_runtimes_imports() -> None:
    site = compat.this_site()
    assert site.abi_versions == frozenset({1})
    assert "gn_host_call" in site.imports["env"] and "fd_write" in site.imports["wasi_snapshot_preview1"]
    assert compat.reasons(abi=1, required=["kv", "http.fetch"],
                          imports=compat.imports_of(guest_wasm())) == []


def test_unoffered_hooks_and_unregistered_optional_capabilities_are_warnings_only() -> None:
    manifest = validate(make_manifest(
        capabilities=["kv", "hooks.subscribe"], optionalCapabilities=[SITE_CAP],
        hooks=[{"name": "no_such_hook_anywhere", "kind": "filter"}]))
    assert compat.manifest_reasons(manifest, compat.imports_of(guest_wasm())) == []
    with hooks.declared_temporarily("the_title", "filter"):
        warned = [(w.code, w.subject) for w in compat.warnings(manifest)]
    assert warned == [("capability", SITE_CAP), ("hook", "no_such_hook_anywhere")]


# --- install and upgrade refuse, before anything is stored -------------------------------------------


def test_install_refuses_an_unregistered_required_capability(make_bundle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IncompatiblePlugin) as refused:
        lifecycle.install(make_bundle(**NEEDS_SITE_CAP), GRANTS, "tests")
    assert reason_codes(refused.value) == [("capability", SITE_CAP)]
    assert refused.value.code == "incompatible_plugin" and SITE_CAP in refused.value.message
    assert nothing_stored()


def test_install_refuses_an_import_the_runtime_does_not_link_with_every_reason(make_bundle) -> None:  # type: ignore[no-untyped-def]
    bad = make_bundle(wasm=wasmtime.wat2wasm(UNLINKED_IMPORT_WAT), **NEEDS_SITE_CAP)
    with pytest.raises(IncompatiblePlugin) as refused:
        lifecycle.install(bad, GRANTS, "tests", activate=True)
    assert reason_codes(refused.value) == [("capability", SITE_CAP), ("import", "env.gn_gone")]
    assert refused.value.as_dict()["problems"] == refused.value.reasons
    assert nothing_stored()


def test_upgrade_refuses_an_incompatible_version_and_the_old_one_keeps_running(make_bundle) -> None:  # type: ignore[no-untyped-def]
    hooked = {"capabilities": ["kv", "hooks.subscribe"], "hooks": [{"name": "upper", "kind": "filter"}]}
    lifecycle.install(make_bundle(**hooked), ["kv", "hooks.subscribe"], "tests", activate=True)
    bad = make_bundle(wasm=wasmtime.wat2wasm(UNLINKED_IMPORT_WAT), version="1.1.0", **hooked)
    with pytest.raises(IncompatiblePlugin, match=r"env\.gn_gone"):
        lifecycle.upgrade("demo", bad, [], "tests")
    assert list(PluginVersion.objects.values_list("version", flat=True)) == ["1.0.0"]
    assert registry.get("demo").invoke("filter", "upper", "ok") == "OK"  # type: ignore[union-attr]


def test_api_install_refusal_is_409_in_the_one_error_shape(publisher: Any) -> None:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = APIClient()
    client.force_authenticate(User.objects.create_user("root", is_staff=True, is_superuser=True))
    raw = signed_bundle(publisher.private_key, wasm=wasmtime.wat2wasm(UNLINKED_IMPORT_WAT), **NEEDS_SITE_CAP)
    response = client.post("/api/plugins/", {"bundle": SimpleUploadedFile("demo.gnplugin", raw),
                                             "grant": GRANTS}, format="multipart")
    data = assert_error(response, 409, "incompatible_plugin")
    assert [(p["code"], p["subject"]) for p in data["problems"]] == [("capability", SITE_CAP),
                                                                     ("import", "env.gn_gone")]
    assert data["plugin"] == "demo" and nothing_stored()


def test_cli_install_refusal_exits_1_naming_each_reason(tmp_path: Path, publisher: Any) -> None:
    path = tmp_path / "demo.gnplugin"
    path.write_bytes(signed_bundle(publisher.private_key, wasm=wasmtime.wat2wasm(UNLINKED_IMPORT_WAT),
                                   **NEEDS_SITE_CAP))
    code, _, err = run_plugin_command("install", str(path), "--grant", *GRANTS)
    assert code == 1 and err.startswith("error: incompatible_plugin: ")
    assert SITE_CAP in err and "env.gn_gone" in err
    assert nothing_stored()


# --- an installed plugin that became incompatible is skipped, then comes back --------------------


@pytest.mark.django_db(transaction=True)
def test_a_capability_unregistered_skips_the_plugin_everywhere_until_it_is_back(
        make_bundle, site_cap, caplog) -> None:  # type: ignore[no-untyped-def]
    lifecycle.install(make_bundle(**NEEDS_SITE_CAP), GRANTS, "tests", activate=True)
    assert registry.get("demo") is not None
    registry.reset()  # a new process...
    capabilities.unregister(SITE_CAP)  # ...of a site upgraded without the feature
    caplog.set_level(logging.WARNING, logger="gonext_plugins.registry")

    assert registry.get("demo") is None  # skipped, no exception
    registry.sync(force=True)  # a second sync in the same process: no second log line
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1 and SITE_CAP in lines[0], lines
    assert [r.code for r in registry.incompatible()["demo"]] == ["capability"]
    assert hooks.apply_filters("upper", "hello") == "hello"
    assert not PluginFault.objects.exists()  # not a fault: it must not count towards quarantine
    assert Plugin.objects.get(slug="demo").state == "active"

    warnings = [m for m in run_checks() if m.id == "gonext_plugins.W013"]
    assert len(warnings) == 1 and "'demo'" in warnings[0].msg and SITE_CAP in warnings[0].msg

    from django.contrib.auth.models import User

    root = User.objects.create_user("root", is_staff=True, is_superuser=True)
    api = APIClient()
    api.force_authenticate(root)
    body = api.get("/api/plugins/demo/").json()
    assert [(r["code"], r["subject"]) for r in body["incompatible"]] == [("capability", SITE_CAP)]
    browser = Client()
    browser.force_login(root)
    for url in ("/admin/gonext_plugins/plugin/", f"/admin/gonext_plugins/plugin/{body_pk()}/change/"):
        page = browser.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        assert 'id="gn-incompatible-banner"' in html and SITE_CAP in html, url
    code, out, _ = run_plugin_command("show", "demo")
    assert code == 0 and "incompatible (this site cannot run it, skipped)" in out

    capabilities.register(SITE_CAP, "Read the gallery.", "low")  # the site offers it again
    registry.sync()  # same generation: the changed site alone brings it back
    loaded = registry.get("demo")
    assert loaded is not None and loaded.invoke("filter", "upper", "hello") == "HELLO"
    assert registry.incompatible() == {}
    assert not [m for m in run_checks() if m.id == "gonext_plugins.W013"]
    assert api.get("/api/plugins/demo/").json()["incompatible"] == []

    capabilities.unregister(SITE_CAP)  # gone again: activation is refused, with the reason
    lifecycle.deactivate("demo", "tests")
    with pytest.raises(IncompatiblePlugin, match=SITE_CAP):
        lifecycle.activate("demo", "tests")


def body_pk() -> int:
    return Plugin.objects.get(slug="demo").pk


@pytest.mark.django_db(transaction=True)
def test_a_stored_module_whose_import_is_no_longer_linked_is_skipped_not_fatal(make_bundle) -> None:  # type: ignore[no-untyped-def]
    hooked = {"capabilities": ["kv", "hooks.subscribe"], "hooks": [{"name": "upper", "kind": "filter"}]}
    lifecycle.install(make_bundle(**hooked), ["kv", "hooks.subscribe"], "tests", activate=True)
    # What an older host linked and stored: the blob of the active version imports env.gn_gone.
    wasm = wasmtime.wat2wasm(UNLINKED_IMPORT_WAT)
    sha = hashlib.sha256(wasm).hexdigest()
    name, _ = save_blob(wasm, sha)
    PluginVersion.objects.filter(plugin__slug="demo").update(blob_name=name, wasm_sha256=sha,
                                                               wasm_size=len(wasm))
    registry.reset()

    assert registry.get("demo") is None
    assert [(r.code, r.subject) for r in registry.incompatible()["demo"]] == [("import", "env.gn_gone")]
    assert hooks.apply_filters("upper", "hello") == "hello"
    assert not PluginFault.objects.exists()
    assert [m.obj for m in run_checks() if m.id == "gonext_plugins.W013"] == ["demo"]
