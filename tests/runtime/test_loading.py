from __future__ import annotations

import json

import pytest
import wasmtime

from gonext_plugins.errors import PluginLoadError
from gonext_plugins.runtime import Limits, Runtime

from .conftest import CORPUS, wat

EXPORTS = '''
  (memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0))
'''


def _corpus() -> list[str]:
    return [entry["file"] for entry in json.loads((CORPUS / "index.json").read_text())]


def test_corpus_is_complete() -> None:
    assert len(_corpus()) == 170


def test_every_malformed_module_is_a_load_error(slow_rt: Runtime) -> None:
    failures = []
    for name in _corpus():
        data = (CORPUS / name).read_bytes()
        try:
            slow_rt.load(data, name=name)
        except PluginLoadError as exc:
            assert exc.plugin == name
        else:  # pragma: no cover - a failure is reported below
            failures.append(name)
    assert failures == []


def test_binary_wat_str_and_wat_bytes_all_load(slow_rt: Runtime) -> None:
    text = wat("minimal")
    for source in (text, text.encode(), wasmtime.wat2wasm(text)):
        assert slow_rt.load(source, name="m").invoke_action("x") is None


@pytest.mark.parametrize("source", [
    b"", b"\0asm", b"\x00asm\x01\x00\x00\x00\xff", "(module", b"\xff\xfe\x00",
])
def test_garbage_is_a_load_error(slow_rt: Runtime, source: bytes | str) -> None:
    with pytest.raises(PluginLoadError):
        slow_rt.load(source, name="junk")


def test_memory_minimum_over_the_cap_is_refused_at_load(slow_rt: Runtime) -> None:
    with pytest.raises(PluginLoadError, match="minimum of 300 pages, over the cap of 256"):
        slow_rt.load(wat("big_memory"), name="big")


def test_per_plugin_memory_cap_is_applied_at_load(slow_rt: Runtime) -> None:
    with pytest.raises(PluginLoadError, match="over the cap of 1 pages"):
        slow_rt.load(wat("abi_guest"), name="g", limits=Limits(memory_pages=1))


def test_forbidden_import_is_named(slow_rt: Runtime) -> None:
    with pytest.raises(PluginLoadError, match=r"forbidden import wasi_unstable\.fd_write"):
        slow_rt.load(wat("forbidden_import"), name="wasi")


@pytest.mark.parametrize(("imports", "fragment"), [
    ('(import "env" "gn_log" (func (param i32 i32)))', "import env.gn_log has the wrong type"),
    ('(import "env" "gn_time_ms" (func (result i32)))', "import env.gn_time_ms has the wrong type"),
    ('(import "env" "gn_secret" (func))', "forbidden import env.gn_secret"),
    ('(import "env" "gn_log" (global i32))', "import env.gn_log has the wrong type"),
    ('(import "env" "tbl" (table 1 funcref))', "forbidden import env.tbl"),
])
def test_bad_imports_are_named(slow_rt: Runtime, imports: str, fragment: str) -> None:
    with pytest.raises(PluginLoadError, match=fragment.replace(".", r"\.")):
        slow_rt.load(f"(module {imports} {EXPORTS})", name="bad")


@pytest.mark.parametrize("missing", ["gn_alloc", "gn_free", "gn_handle_hook", "memory"])
def test_missing_export_is_named(slow_rt: Runtime, missing: str) -> None:
    lines = [line for line in EXPORTS.splitlines() if f'"{missing}"' not in line]
    if missing == "memory":
        lines.append("(memory 1)")
    with pytest.raises(PluginLoadError, match=f"missing required export {missing}"):
        slow_rt.load("(module " + "\n".join(lines) + ")", name="bad")


def test_export_with_wrong_signature_is_named(slow_rt: Runtime) -> None:
    source = EXPORTS.replace('(func (export "gn_free") (param i32 i32))',
                             '(func (export "gn_free") (param i32))')
    with pytest.raises(PluginLoadError, match="export gn_free must be a function"):
        slow_rt.load(f"(module {source})", name="bad")


def test_memory64_is_refused(slow_rt: Runtime) -> None:
    source = EXPORTS.replace('(memory (export "memory") 1)', '(memory (export "memory") i64 1)')
    with pytest.raises(PluginLoadError):
        slow_rt.load(f"(module {source})", name="m64")


def test_start_function_loop_is_stopped_and_reported(slow_rt: Runtime) -> None:
    source = EXPORTS + '(func $spin (loop $l (br $l))) (start $spin)'
    with pytest.raises(PluginLoadError, match="instantiation failed: out of fuel"):
        slow_rt.load(f"(module {source})", name="start", limits=Limits(fuel=1_000_000))


def test_no_django_needed() -> None:
    import subprocess
    import sys

    code = ("import sys; import gonext_plugins.runtime; "
            "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules), "
            "'django imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
