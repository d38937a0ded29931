"""The capability lint: host function names in a module's data vs. what the manifest asks for."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from gonext_plugins.devtools import capcheck
from gonext_plugins.diagnostics.wasmbin import make_custom_section, wasm_data
from gonext_plugins.errors import SourceMapError

FUNCTIONS = {"kv.get": "kv", "kv.set": "kv", "http.fetch": "http.fetch", "settings.get": "self",
             "jobs.enqueue": "jobs.enqueue"}


def module(*segments: str) -> bytes:
    """A plugin-shaped WAT module with the given data segments (WAT string syntax)."""
    data = "\n".join(f"  (data (i32.const {1024 + 256 * i}) \"{text}\")" for i, text in enumerate(segments))
    return bytes(wasmtime.wat2wasm(f"""(module
  (import "env" "gn_host_call" (func $call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
{data}
  (func (export "gn_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) i64.const 0))"""))


def manifest(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"apiVersion": "gonext.io/v1", "slug": "lint", "name": "Lint", "version": "1.0.0", "abi": 1,
            "capabilities": ["hooks.subscribe", *required], "optionalCapabilities": list(optional),
            "hooks": [{"name": "wp_head", "kind": "action"}]}


def test_data_segments_are_read_active_and_passive() -> None:
    wasm = bytes(wasmtime.wat2wasm('(module (memory 1) (data (i32.const 8) "kv.get\\00") (data "passive"))'))
    assert wasm_data(wasm) == [b"kv.get\x00", b"passive"]
    assert wasm_data(bytes(wasmtime.wat2wasm("(module)"))) == []
    with pytest.raises(SourceMapError):
        wasm_data(b"not wasm")


def test_names_in_data_are_found_as_whole_words() -> None:
    wasm = module("kv.get\\00http.fetch\\00", "kv.get_many settings.get jobs.enqueuer")
    assert capcheck.used_functions(wasm, FUNCTIONS) == ["http.fetch", "kv.get", "settings.get"]
    # AssemblyScript keeps its string literals in UTF-16
    utf16 = "".join(f"{c}\\00" for c in "kv.set")
    assert capcheck.used_functions(module(utf16), FUNCTIONS) == ["kv.set"]


def test_a_rust_module_s_merged_literals_are_searched_inside_words() -> None:
    """rustc stores string literals back to back (``naninfsettings.getkey``): in a module whose
    producers section says Rust, a dotted name counts wherever it stands, except inside a longer
    host function name; elsewhere the whole-word rule stands."""
    merged = "naninfsettings.getkeykv.get_manyhttp.fetchx"
    plain = module(merged)
    rust = plain + make_custom_section("producers", b"\x01\x08language\x01\x04Rust\x00")
    functions = {**FUNCTIONS, "kv.get_many": "kv"}
    assert capcheck.used_functions(plain, functions) == []
    assert capcheck.merges_literals(rust) and not capcheck.merges_literals(plain)
    assert capcheck.used_functions(rust, functions) == ["http.fetch", "kv.get_many", "settings.get"]


def test_each_capability_not_asked_for_is_one_warning_saying_the_manifest_change() -> None:
    wasm = module("kv.get\\00kv.set\\00http.fetch\\00settings.get")
    lines = capcheck.warnings(manifest(), wasm, FUNCTIONS)
    assert lines == [
        '"http.fetch" (the module names http.fetch): add "http.fetch" to "optionalCapabilities" (or '
        '"capabilities" if the plugin cannot work without it) in manifest.json',
        '"kv" (the module names kv.get, kv.set): add "kv" to "optionalCapabilities" (or "capabilities" if '
        'the plugin cannot work without it) in manifest.json',
    ]  # settings.get needs "self", which every plugin holds
    assert len(capcheck.warnings(manifest(optional=("kv",)), wasm, FUNCTIONS)) == 1
    assert capcheck.warnings(manifest("kv", "http.fetch"), wasm, FUNCTIONS) == []
    assert capcheck.warnings(manifest("kv", "http.fetch"), module("nothing here"), FUNCTIONS) == []


@pytest.fixture
def dev_site(settings: Any, live_server: Any) -> tuple[str, str]:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "DEV_MODE": True}
    user = User.objects.create_user("dev", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "install_plugin", "grant_capability", "activate_plugin", "view_plugin"]))
    return live_server.url, Token.objects.create(user=user).key


@pytest.mark.django_db
def test_the_site_lists_its_host_functions_with_capabilities(dev_site: tuple[str, str]) -> None:
    host, token = dev_site
    functions = capcheck.fetch_functions(host, token=token)
    assert functions["kv.get"] == "kv" and functions["http.fetch"] == "http.fetch"
    assert functions["settings.get"] == "self"


@pytest.mark.django_db
def test_plugin_dev_warns_after_the_upload(dev_site: tuple[str, str], tmp_path: Path) -> None:
    host, token = dev_site
    (tmp_path / "plugin.wat").write_text("""(module
  (import "env" "gn_host_call" (func $call (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "kv.get")
  (func (export "gn_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) i64.const 0))""")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    out = io.StringIO()
    call_command("plugin", "dev", str(tmp_path), "--no-watch", "--host", host, "--token", token, "--no-color",
                 stdout=out)
    text = out.getvalue()
    assert "1 used but not asked for" in text and "best effort" in text
    assert 'add "kv" to "optionalCapabilities"' in text
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(optional=("kv",))))
    out = io.StringIO()
    call_command("plugin", "dev", str(tmp_path), "--no-watch", "--host", host, "--token", token, "--no-color",
                 stdout=out)
    assert "asks for every capability the module names (1 host function(s) found)" in out.getvalue()
