"""Rust plugins, built from source with a real rustc: the scaffold builds and runs as generated (also
for wasm32-wasi, whose println! reaches the plugin log), the reading-time example's release build
answers (its fixtures run for every language in tests/test_reading_time_examples.py), panics and
traps map to ``src/lib.rs:LINE``, toolchain discovery takes the rustc that has the wasm target,
and docs/languages/rust.md runs as written.

Rust compiles are slow on a busy machine, so each project is built once per session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from gonext_plugins import bundle, lifecycle
from gonext_plugins.devtools import build_rust, builders, scaffold
from gonext_plugins.diagnostics import traps
from gonext_plugins.errors import BuildError, HookError, PluginTrap, ToolchainMissing
from gonext_plugins.models import PluginKV
from gonext_plugins.registry import registry
from gonext_plugins.runtime import Runtime
from gonext_plugins.runtime.levels import INFO
from tests.conftest import REPO

DOC = REPO / "docs" / "languages" / "rust.md"


def _has_wasm_rustc() -> bool:
    try:
        build_rust.find_rustc()
    except ToolchainMissing:
        return False
    return True


needs_rustc = pytest.mark.skipif(not _has_wasm_rustc(), reason="no rustc with the wasm32-unknown-unknown "
                                 "target (apt install rustc libstd-rust-dev-wasm32)")

# Appended to a scaffold: a panic, a real wasm trap, a JSON echo and one action per host-function
# wrapper answering {"ok": <what it returned>, "error": <HostError variant or null>}.
PROBE = '''
fn boom(_hook: &Hook) -> HookResult {
    let n: i64 = 42;
    panic!("boom {n}"); // PANIC LINE
}

fn trap(hook: &Hook) -> HookResult {
    let address = 0xffff_fff0usize - hook.args.len(); // past the end of memory: a real wasm trap
    let word = unsafe { *(address as *const u64) }; // TRAP LINE
    Ok(Some(Json::Int(word as i64)))
}

fn echo(hook: &Hook) -> HookResult {
    Ok(Some(hook.value.clone()))
}

fn answer(result: Result<Json, gonext::HostError>) -> HookResult {
    Ok(Some(match result {
        Ok(value) => Json::obj([("ok", value), ("error", Json::Null)]),
        Err(err) => Json::obj([("ok", Json::Null), ("error", Json::from(format!("{err:?}")))]),
    }))
}

fn text(hook: &Hook, i: usize) -> String {
    hook.arg(i).as_str().unwrap_or("").to_string()
}

fn optional(value: Option<Json>) -> Json {
    value.map(|v| Json::obj([("found", v)])).unwrap_or(Json::Null)
}

fn kv_get(h: &Hook) -> HookResult { answer(gonext::kv::get(&text(h, 0)).map(optional)) }
fn kv_set(h: &Hook) -> HookResult {
    answer(gonext::kv::set(&text(h, 0), h.arg(1).clone()).map(|()| Json::Null))
}
fn kv_set_ttl(h: &Hook) -> HookResult {
    let ttl = h.arg(2).as_i64().unwrap_or(0);
    answer(gonext::kv::set_ttl(&text(h, 0), h.arg(1).clone(), ttl).map(|()| Json::Null))
}
fn kv_delete(h: &Hook) -> HookResult { answer(gonext::kv::delete(&text(h, 0)).map(Json::Bool)) }
fn kv_list(h: &Hook) -> HookResult {
    answer(gonext::kv::list(&text(h, 0)).map(|keys| Json::Array(keys.into_iter().map(Json::from).collect())))
}
fn kv_incr(h: &Hook) -> HookResult {
    answer(gonext::kv::incr(&text(h, 0), h.arg(1).as_i64().unwrap_or(1)).map(Json::Int))
}
fn kv_cas(h: &Hook) -> HookResult {
    let expected = if h.arg(1).is_null() { None } else { Some(h.arg(1).clone()) };
    answer(gonext::kv::cas(&text(h, 0), expected, h.arg(2).clone())
        .map(|(ok, now)| Json::obj([("swapped", Json::Bool(ok)), ("value", now)])))
}
fn settings_get(h: &Hook) -> HookResult { answer(gonext::settings::get(&text(h, 0)).map(optional)) }
fn settings_all(_h: &Hook) -> HookResult { answer(gonext::settings::all()) }
fn plugin_info(_h: &Hook) -> HookResult { answer(gonext::plugin_info()) }
fn host_call(h: &Hook) -> HookResult { answer(gonext::host_call(&text(h, 0), h.arg(1))) }
fn enqueue(h: &Hook) -> HookResult {
    let delay = h.arg(2).as_i64().unwrap_or(0);
    answer(gonext::jobs::enqueue(&text(h, 0), h.arg(1).clone(), delay).map(Json::from))
}
fn echo_job(h: &Hook) -> HookResult {
    Ok(Some(Json::obj([("id", Json::from(h.id.as_str())), ("payload", h.payload.clone())])))
}

gonext::plugin! {
    actions: { "wp_head" => wp_head, "boom" => boom, "trap" => trap, "kv_get" => kv_get, "kv_set" => kv_set,
               "kv_set_ttl" => kv_set_ttl, "kv_delete" => kv_delete, "kv_list" => kv_list,
               "kv_incr" => kv_incr, "kv_cas" => kv_cas, "settings_get" => settings_get,
               "settings_all" => settings_all, "plugin_info" => plugin_info, "host_call" => host_call,
               "enqueue" => enqueue },
    filters: { "the_content" => the_content, "echo" => echo },
    jobs: { "echo_job" => echo_job },
}
'''


@pytest.fixture(scope="session")
def rust_builds(tmp_path_factory: pytest.TempPathFactory, reading_time_build: Any) -> dict[str, Any]:
    """Each project built once: the scaffold (dev), the example (dev, shared through
    ``reading_time_build`` with tests/test_reading_time_examples.py, and release), the scaffold with
    the PROBE hooks, and the scaffold for wasm32-wasi."""
    if not _has_wasm_rustc():
        pytest.skip("no rustc with a wasm target")
    root = tmp_path_factory.mktemp("rust")
    out: dict[str, Any] = {}
    scaffold.create(root / "hello-rust", "rust")
    out["hello"] = builders.build(root / "hello-rust")
    out["example"] = reading_time_build("rust")
    out["release"] = builders.build(out["example"][0].wasm_path.parents[2], release=True)
    probe = root / "probe"
    scaffold.create(probe, "rust")
    lib = probe / "src" / "lib.rs"
    registration = "gonext::plugin! {"
    text = lib.read_text()
    lib.write_text(text[:text.index(registration)] + PROBE)
    out["probe"] = builders.build(probe)
    source = lib.read_text().splitlines()
    out["probe_lines"] = {marker: 1 + next(i for i, line in enumerate(source) if marker in line)
                           for marker in ("PANIC LINE", "TRAP LINE")}
    out["probe_lines"]["length"] = len(source)
    wasi = root / "hello-wasi"
    scaffold.create(wasi, "rust")
    toml = wasi / "Cargo.toml"
    toml.write_text(toml.read_text().replace('target = "wasm32-unknown-unknown"', 'target = "wasm32-wasi"'))
    lib = wasi / "src" / "lib.rs"
    handler = 'let html = hook.value.as_str().unwrap_or("");\n'
    printing = handler + '    println!("std says: {} bytes", html.len());\n'
    lib.write_text(lib.read_text().replace(handler, printing))
    out["wasi"] = builders.build(wasi)
    return out


# --- scaffold -----------------------------------------------------------------------------------


@needs_rustc
def test_rust_scaffold_builds_and_runs_as_generated(rust_builds: dict[str, Any]) -> None:
    built, checked = rust_builds["hello"]
    project = built.wasm_path.parents[2]  # <project>/build/dev/plugin.wasm
    names = {p.name for p in project.iterdir()}
    assert names >= {"Cargo.toml", "src", "manifest.json", "README.md", ".gitignore"}
    assert built.lang == "rust" and built.map_path is not None and checked.manifest.slug == "hello-rust"
    assert checked.imports and all(i.startswith("env.") for i in checked.imports)  # no WASI by default
    with Runtime() as runtime:
        plugin = runtime.load(checked.wasm, name="hello-rust")
        html = plugin.invoke_filter("the_content", "<p>Post</p>")
        assert html == '<p>Post</p><p class="hello-rust-hello">Hello from Hello Rust!</p>'
        tricky = 'a "quoted" \\ back\tslash\n\x01 caf\u00e9 \U0001f600'  # every escape the SDK's JSON writes
        assert plugin.invoke_filter("the_content", tricky).startswith(tricky + "<p ")
        assert plugin.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "hello-rust"}]}
        with pytest.raises(HookError) as unknown:
            plugin.invoke_action("nope")
        assert unknown.value.status == "unknown_hook"
        with pytest.raises(HookError) as wrong_kind:  # the_content is a filter: an action payload is -3
            plugin.invoke_action("the_content")
        assert wrong_kind.value.status == "bad_payload"
    again = builders.compile_project(project)
    assert again.cached  # nothing changed: the key answers, rustc is not run


@needs_rustc
def test_a_wasi_build_loads_and_println_reaches_the_plugin_log(rust_builds: dict[str, Any]) -> None:
    """wasm32-wasi is selectable in Cargo.toml; std's output imports WASI preview 1, which the host
    links as a sandboxed subset: the module loads (builders.build checked that) and stdout is the log."""
    built, checked = rust_builds["wasi"]
    wasm = built.wasm_path.read_bytes()
    modules = {imp.module for imp in wasmtime.Module(wasmtime.Engine(), wasm).imports}
    assert modules == {"env", "wasi_snapshot_preview1"}
    lines: list[tuple[int, str, str]] = []
    with Runtime(log_sink=lambda _plugin, level, message, source: lines.append((level, message, source))) \
            as runtime:
        plugin = runtime.load(checked.wasm, name="hello-wasi")
        html = plugin.invoke_filter("the_content", "<p>Post</p>")
        assert html == '<p>Post</p><p class="hello-wasi-hello">Hello from Hello Wasi!</p>'
    assert (INFO, "std says: 11 bytes", "guest") in lines


@needs_rustc
def test_release_build_is_smaller_and_still_answers(rust_builds: dict[str, Any]) -> None:
    dev, release = rust_builds["example"], rust_builds["release"]
    assert release[0].map_path is None and len(release[1].wasm) < len(dev[1].wasm)
    with Runtime() as runtime:
        plugin = runtime.load(release[1].wasm, name="reading-time-rust")
        assert plugin.invoke_filter("the_content", "x", {"body": "one two"}) == "<p><em>1 min read</em></p>x"
        with pytest.raises(HookError) as bad:
            plugin.invoke_action("save_post", "not a post")
        assert bad.value.status == "bad_payload"


# --- trap reports -------------------------------------------------------------------------------


@needs_rustc
def test_the_capability_lint_finds_what_a_rust_plugin_calls(rust_builds: dict[str, Any]) -> None:
    """rustc stores literals back to back, so ``plugin dev``'s lint found none in a Rust module (an
    author calling kv without asking for it was not warned). The example calls settings.get, kv.set
    and kv.incr through the SDK."""
    from gonext_plugins.devtools import capcheck

    checked = rust_builds["example"][1]
    functions = {"settings.get": "self", "kv.set": "kv", "kv.incr": "kv", "kv.get_many": "kv",
                 "http.fetch": "http.fetch"}
    used = capcheck.used_functions(checked.wasm, functions)
    assert {"settings.get", "kv.set", "kv.incr"} <= set(used) and "http.fetch" not in used


@needs_rustc
def test_a_panic_and_a_trap_map_to_src_lib_rs_line(rust_builds: dict[str, Any]) -> None:
    wasm = rust_builds["probe"][1].wasm
    lines = rust_builds["probe_lines"]
    with Runtime() as runtime:
        plugin = runtime.load(wasm, name="panics")
        with pytest.raises(PluginTrap) as panicked:
            plugin.invoke_action("boom")
        with pytest.raises(PluginTrap) as trapped:
            plugin.invoke_action("trap")
    assert "boom 42" in str(panicked.value) and f"src/lib.rs:{lines['PANIC LINE']}:" in str(panicked.value)
    panic_frames = [f.location for f in traps.inspect(panicked.value, wasm).frames]
    assert any(loc.startswith(f"src/lib.rs:{lines['PANIC LINE']}") for loc in panic_frames), panic_frames
    assert any("sdk/rust/src/lib.rs:" in loc for loc in panic_frames), panic_frames  # the panic hook's frame
    trap_frames = [f.location for f in traps.inspect(trapped.value, wasm).frames]
    assert trap_frames[0].startswith(f"src/lib.rs:{lines['TRAP LINE']}"), trap_frames
    # the dispatcher's frame names the SDK's file, never the plugin's src/lib.rs
    assert any(loc.startswith(str(REPO / "sdk" / "rust" / "src" / "lib.rs")) or "/sdk/rust/src/lib.rs:" in loc
               for loc in trap_frames[1:]), trap_frames
    plugin_lines = [int(loc.split(":")[1]) for loc in trap_frames if loc.startswith("src/lib.rs:")]
    assert all(line <= lines["length"] for line in plugin_lines), trap_frames


# --- toolchain discovery ------------------------------------------------------------------------


RUSTUP_RUSTC = Path.home() / ".cargo" / "bin" / "rustc"


@needs_rustc
@pytest.mark.skipif(not RUSTUP_RUSTC.exists()
                    or build_rust._has_target(str(RUSTUP_RUSTC), build_rust.DEFAULT_TARGET),
                    reason="needs a rustup rustc without the wasm target")
def test_discovery_skips_a_rustc_without_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(RUSTUP_RUSTC.parent))
    monkeypatch.setenv("GONEXT_RUSTC", str(RUSTUP_RUSTC))
    assert build_rust.candidates() == [str(RUSTUP_RUSTC), build_rust.SYSTEM_RUSTC]  # deduplicated, in order
    assert build_rust.find_rustc() == build_rust.SYSTEM_RUSTC


def test_no_rustc_with_the_target_is_toolchain_missing(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no rustc at all
    monkeypatch.delenv("GONEXT_RUSTC", raising=False)
    monkeypatch.setattr(build_rust, "SYSTEM_RUSTC", str(tmp_path / "no-such-rustc"))
    project = tmp_path / "no-rustc"
    scaffold.create(project, "rust")
    with pytest.raises(ToolchainMissing) as missing:
        builders.compile_project(project)
    assert missing.value.code == "toolchain_missing"
    assert "apt install rustc libstd-rust-dev-wasm32" in missing.value.hint
    assert "rustup target add wasm32-unknown-unknown" in missing.value.hint


def test_cargo_toml_problems_are_build_errors(tmp_path: Path) -> None:
    scaffold.create(tmp_path / "pp", "rust")
    toml = tmp_path / "pp" / "Cargo.toml"
    text = toml.read_text()
    toml.write_text(text.replace("[dependencies]", '[dependencies]\nserde = "1"'))
    with pytest.raises(BuildError, match=r"serde.*no crates\.io"):
        build_rust.read_project(tmp_path / "pp")
    toml.write_text(text.replace('target = "wasm32-unknown-unknown"', 'target = "wasm64"'))
    with pytest.raises(BuildError, match="wasm64"):
        build_rust.read_project(tmp_path / "pp")
    toml.write_text(text.replace('crate-type = ["cdylib"]', 'crate-type = ["rlib"]'))
    with pytest.raises(BuildError, match="cdylib"):
        build_rust.read_project(tmp_path / "pp")


# --- the guide ----------------------------------------------------------------------------------


@needs_rustc
def test_the_rust_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    assert blocks and any("plugin new" in b for b in blocks) and any("plugin pack" in b for b in blocks)
    env = {**os.environ, "HOME": str(tmp_path)}
    for block in blocks:
        script = block.replace(".venv/bin/python", sys.executable)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900, check=False)
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    packed = bundle.read((tmp_path / "hello-rust-0.1.0.gnplugin").read_bytes(), require_signature=False)
    assert packed.manifest.slug == "hello-rust"


# --- the SDK's JSON and host-function wrappers ---------------------------------------------------


@needs_rustc
def test_json_round_trips_through_the_sdk(rust_builds: dict[str, Any]) -> None:
    """The echo filter parses the payload and writes the value back: every JSON shape survives."""
    values = [None, True, False, 0, -7, 2**63 - 1, -(2**63), 1.5, -2.5e-8, 1e300, "",
              "é\U0001f600\"\\\n\x00\x1f", [], {}, [1, [2, [3, {"a": None}]]],
              {"z": 1, "a": [True, "x"], "": {}}]
    with Runtime() as runtime:
        plugin = runtime.load(rust_builds["probe"][1].wasm, name="probe")
        for value in values:
            assert plugin.invoke_filter("echo", value) == value
        deep: Any = 0
        for _ in range(200):
            deep = [deep]
        with pytest.raises(HookError) as nested:  # nesting past the SDK's cap is a bad payload, not a crash
            plugin.invoke_filter("echo", deep)
        assert nested.value.status == "bad_payload"


@pytest.fixture
def probe(rust_builds: dict[str, Any], make_bundle: Any, django_capture_on_commit_callbacks: Any) -> Any:
    """``probe(grant=("kv",))``: the probe installed and active as ``probe`` with a settings schema
    (and its job, when ``jobs.enqueue`` is granted)."""

    def factory(grant: tuple[str, ...] = ("kv",)) -> Any:
        schema = {"type": "object", "properties": {
            "wordsPerMinute": {"type": "integer", "default": 200, "minimum": 50, "maximum": 1000},
            "apiKey": {"type": "string", "secret": True, "default": "k"}}}
        # a manifest that declares jobs cannot be activated without jobs.enqueue granted
        jobs = {"jobs": [{"name": "echo_job"}]} if "jobs.enqueue" in grant else {}
        b = make_bundle(wasm=rust_builds["probe"][1].wasm, slug="probe", version="1.2.0", capabilities=[],
                        optionalCapabilities=["kv", "jobs.enqueue"], settings=schema, **jobs)
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(b, list(grant), "tests", activate=True)
        loaded = registry.get("probe")
        assert loaded is not None
        return loaded

    return factory


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value, "error": None}


@needs_rustc
@pytest.mark.django_db
def test_kv_wrappers_against_the_app(probe: Any) -> None:
    p = probe()

    def run(action: str, *args: Any) -> Any:
        return p.invoke("action", action, *args)

    assert run("kv_get", "a") == ok(None)
    assert run("kv_set", "a", {"n": [1, "two"]}) == ok(None)
    assert run("kv_get", "a") == ok({"found": {"n": [1, "two"]}})
    assert run("kv_incr", "count", 5) == ok(5) and run("kv_incr", "count", -2) == ok(3)
    assert run("kv_incr", "a", 1) == {"ok": None, "error": "Failed"}  # not an integer: -1
    assert run("kv_cas", "c", None, "first") == ok({"swapped": True, "value": "first"})
    assert run("kv_cas", "c", "other", "second") == ok({"swapped": False, "value": "first"})
    assert run("kv_set_ttl", "t", 1, 3600) == ok(None)
    assert sorted(run("kv_list", "")["ok"]) == ["a", "c", "count", "t"]
    assert run("kv_delete", "a") == ok(True) and run("kv_delete", "a") == ok(False)
    assert PluginKV.objects.get(plugin_slug="probe", key="count").value == 3
    assert run("host_call", "no.such.function", {}) == {"ok": None, "error": "UnknownFunction"}
    assert run("host_call", "kv.get", {"key": "x", "bogus": 1}) == {"ok": None, "error": "BadPayload"}


@needs_rustc
@pytest.mark.django_db
def test_settings_info_and_a_denied_capability(probe: Any) -> None:
    p = probe(grant=())
    assert p.invoke("action", "settings_get", "wordsPerMinute") == ok({"found": 200})
    assert p.invoke("action", "settings_get", "nope") == ok(None)
    assert p.invoke("action", "settings_all") == ok({"wordsPerMinute": 200, "apiKey": "k"})
    info = p.invoke("action", "plugin_info")["ok"]
    assert info["slug"] == "probe" and info["version"] == "1.2.0" and "kv" not in info["capabilities"]
    assert p.invoke("action", "kv_get", "a") == {"ok": None, "error": "CapabilityDenied"}


@needs_rustc
@pytest.mark.django_db
def test_jobs_enqueue_and_a_job_call(probe: Any) -> None:
    p = probe(grant=("jobs.enqueue",))
    queued = p.invoke("action", "enqueue", "echo_job", {"n": 1})
    assert queued["error"] is None and isinstance(queued["ok"], str) and queued["ok"]
    assert p.invoke("action", "enqueue", "no_such_job", {}) == {"ok": None, "error": "Failed"}
    assert p.invoke("job", "echo_job", {"n": 2}, task_id="t-1") == {"id": "t-1", "payload": {"n": 2}}
    with pytest.raises(HookError) as unknown:
        p.invoke("job", "wp_head", {})  # a hook's name is not a job's
    assert unknown.value.status == "unknown_hook"
