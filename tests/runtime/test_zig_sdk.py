"""The Zig SDK (sdk/zig/gonext.zig) through a test guest with one handler per feature, and the
``zigbuild`` helper (cache, errors). No Django."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins.errors import BuildError, HookError, PluginTrap
from gonext_plugins.runtime import HostFunctions, Limits, Plugin, Runtime

from .conftest import require_fast_dispatcher

REPO = Path(__file__).resolve().parents[2]
ECHO_DIR = REPO / "tests" / "guests" / "zig_sdk_echo"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                                reason="ziglang is not installed (pip install ziglang)")


@pytest.fixture(scope="module")
def echo_wasm() -> bytes:
    from gonext_plugins.devtools.zigbuild import build_zig

    return build_zig(ECHO_DIR).read_bytes()


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str, str]] = []

    def __call__(self, plugin: str, level: int, message: str, source: str) -> None:
        self.lines.append((level, message, source))

    def guest(self) -> list[tuple[int, str]]:
        return [(level, message) for level, message, source in self.lines if source == "guest"]


@pytest.fixture
def logs() -> Recorder:
    return Recorder()


@pytest.fixture
def functions() -> HostFunctions:
    hf = HostFunctions()
    hf.register("t.echo", "t.cap", lambda plugin, payload: payload)
    hf.register("t.none", "t.cap", lambda plugin, payload: None)
    hf.register("t.point", "t.cap", lambda plugin, payload: {"x": 2, "y": 40, "z": "ignored"})
    hf.register("t.denied", "t.other", lambda plugin, payload: 1)

    def boom(plugin: Any, payload: Any) -> Any:
        raise RuntimeError("boom")

    hf.register("t.boom", "t.cap", boom)
    hf.register("t.unencodable", "t.cap", lambda plugin, payload: {1, 2})
    return hf


@pytest.fixture(params=["fast", "slow"])
def echo(request: pytest.FixtureRequest, echo_wasm: bytes, logs: Recorder,
         functions: HostFunctions) -> Iterator[Plugin]:
    if request.param == "fast":
        require_fast_dispatcher()  # fails, not skips
    rt = Runtime(host_functions=functions, log_sink=logs, dispatcher=request.param,
                 limits=Limits(memory_pages=64, hard_timeout_ms=10_000, soft_timeout_ms=None))
    yield rt.load(echo_wasm, name="echo", capabilities=frozenset({"t.cap"}))
    rt.close()


# --- escaping ------------------------------------------------------------------------------------

NASTY = "</script><script>alert('x')</script> \"q\" & <b> é \u2028 \u2029 日本 🎉"


def test_escape_html(echo: Plugin) -> None:
    assert echo.invoke_filter("escape_html", NASTY) == (
        "&lt;/script&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &quot;q&quot; &amp; &lt;b&gt; "
        "é \u2028 \u2029 日本 🎉")
    assert echo.invoke_filter("escape_html", "") == ""
    assert echo.invoke_filter("escape_html", "plain") == "plain"


def test_fmt_html_in_text_and_attribute(echo: Plugin) -> None:
    import html

    out = echo.invoke_filter("fmt_html", NASTY)
    escaped = html.escape(NASTY, quote=True)
    assert out == f'<p title="{escaped}">{escaped}</p>'


@pytest.mark.parametrize("filter_name", ["script_json", "script_json_fmt"])
@pytest.mark.parametrize("value", [
    NASTY, {"a": NASTY, "list": [NASTY, 1, 2.5, None, True]}, "\u2028\u2029", "é\u2028é", "&&<<>>", [], 12,
    "\u00e2\u0080", "\u20ac\u2028",  # bytes E2 80 that are not a separator, then the euro sign (E2 82 AC)
])
def test_json_for_script_is_inert_and_equal(echo: Plugin, filter_name: str, value: Any) -> None:
    out = echo.invoke_filter(filter_name, value)
    for char in "<>&\u2028\u2029":
        assert char not in out
    assert json.loads(out) == value


def test_write_script_safe_on_encoded_json(echo: Plugin) -> None:
    encoded = json.dumps({"t": NASTY}, ensure_ascii=False)
    out = echo.invoke_filter("script_safe", encoded)
    assert "<" not in out and "\u2028" not in out
    assert "\\u003c/script\\u003e" in out and "\\u2028" in out and "\\u0026" in out
    assert json.loads(out) == {"t": NASTY}


@pytest.mark.parametrize(("s", "n", "expected"), [
    ("hello", 10, "hello"), ("hello", 3, "hel"), ("héllo", 2, "h"), ("héllo", 3, "hé"),
    ("🎉🎉", 5, "🎉"), ("🎉", 3, ""), ("", 0, ""),
])
def test_utf8_prefix(echo: Plugin, s: str, n: int, expected: str) -> None:
    assert echo.invoke_filter("utf8_prefix", s, n) == expected


# --- dispatch and decoding -----------------------------------------------------------------------


def test_ctx_parameter_anywhere(echo: Plugin) -> None:
    assert echo.invoke_filter("ctx_last", 5, 7) == {"v": 5, "extra": 7, "name": "ctx_last", "kind": "filter"}
    assert echo.invoke_filter("ctx_last", 5) == {"v": 5, "extra": None, "name": "ctx_last", "kind": "filter"}


def test_null_from_an_optional_result_leaves_the_value(echo: Plugin) -> None:
    assert echo.invoke_filter("keep", {"x": [1]}) == {"x": [1]}


def test_void_action_has_no_body(echo: Plugin) -> None:
    assert echo.invoke_action("nothing") is None


def test_raw_json_result(echo: Plugin) -> None:
    assert echo.invoke_action("raw") == {"raw": [1, 2, 3]}


def test_post_round_trip_ignores_unknown_fields(echo: Plugin) -> None:
    post = {"id": 9, "title": NASTY, "slug": "s", "body": "b", "url": "/u/", "published": {"at": 1},
            "extra": [1, 2]}
    assert echo.invoke_action("post", post) == {k: v for k, v in post.items() if k != "extra"}
    assert echo.invoke_action("post", {"id": 1}) == {"id": 1, "title": "", "slug": "", "body": "",
                                                    "url": "", "published": None}


def test_optional_arguments(echo: Plugin) -> None:
    assert echo.invoke_action("optional_arg") == {"a": None, "b": None}
    assert echo.invoke_action("optional_arg", 1) == {"a": 1, "b": None}
    assert echo.invoke_action("optional_arg", 1, "x", "extra ignored") == {"a": 1, "b": "x"}


@pytest.mark.parametrize("args", [("not an int",), (1.5,), (1, 2)])
def test_wrong_argument_types_are_bad_payload(echo: Plugin, logs: Recorder, args: tuple[Any, ...]) -> None:
    with pytest.raises(HookError) as info:
        echo.invoke_action("optional_arg", *args)
    assert info.value.status == "bad_payload"
    assert any("does not decode" in message for _, message in logs.guest())


def test_unknown_names_and_kinds(echo: Plugin) -> None:
    for call in (lambda: echo.invoke_action("missing"), lambda: echo.invoke_filter("missing", 1),
                 lambda: echo.invoke_action("both", "x"),  # registered as a filter only
                 lambda: echo.invoke_job("missing", {}), lambda: echo.invoke_job("keep", {})):
        with pytest.raises(HookError) as info:
            call()
        assert info.value.status == "unknown_hook"
    assert echo.invoke_filter("both", "x") == "x"


def test_job_gets_payload_and_task_id(echo: Plugin) -> None:
    assert echo.invoke_job("echo", {"n": [1, "two"]}, task_id="task-7") == {
        "id": "task-7", "payload": {"n": [1, "two"]}}
    assert echo.invoke_job("echo", None, task_id="t") == {"id": "t", "payload": None}


def test_job_envelope_sent_to_the_hook_export_is_bad_payload(echo: Plugin) -> None:
    inst = echo.pool.checkout()
    try:
        with pytest.raises(HookError) as info:
            inst.dispatcher.call("gn_handle_job", b"echo", b'{"kind": "action", "args": []}')
    finally:
        echo.pool.checkin(inst)
    assert info.value.status == "bad_payload"


# --- statuses, logging, panics, time -------------------------------------------------------------


def test_handler_error_is_status_error_with_a_log_line(echo: Plugin, logs: Recorder) -> None:
    with pytest.raises(HookError) as info:
        echo.invoke_action("fail")
    assert info.value.status == "error"
    assert (3, "action fail failed: Boom") in logs.guest()


def test_out_of_memory_is_a_status_not_a_trap(echo: Plugin) -> None:
    with pytest.raises(HookError) as info:
        echo.invoke_action("oom")
    assert info.value.status == "out_of_memory"
    assert echo.invoke_filter("escape_html", "<ok>") == "&lt;ok&gt;"  # the instance still works


def test_panic_is_a_trap_with_the_message(echo: Plugin) -> None:
    with pytest.raises(PluginTrap) as info:
        echo.invoke_action("panic", "bye")
    assert info.value.guest_message == "guest says: bye"


def test_time(echo: Plugin) -> None:
    assert abs(echo.invoke_action("time") - time.time() * 1000) < 5_000


def test_log_levels_std_log_and_truncation(echo: Plugin, logs: Recorder) -> None:
    echo.invoke_action("log", "m")
    lines = logs.guest()
    assert lines[:5] == [(0, "debug m"), (1, "info m"), (2, "warn m"), (3, "err m"), (1, "(echo) std.log m")]
    assert lines[5] == (1, "x" * 1024)


def test_gn_alloc_zero_and_huge(echo: Plugin) -> None:
    ptr = echo.call("gn_alloc", 0)
    assert ptr > 0
    echo.call("gn_free", ptr, 0)
    assert echo.call("gn_alloc", 0x7FFFFFFF) == 0
    assert echo.call("gn_alloc", -1) == 0
    echo.call("gn_free", 0, 0)  # freeing null is a no-op


# --- host calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "payload", "expected"), [
    ("t.echo", {"a": [1, "<x>"]}, {"ok": {"a": [1, "<x>"]}, "error": None}),
    ("t.echo", "\u2028", {"ok": "\u2028", "error": None}),
    ("t.none", 1, {"ok": None, "error": None}),
    ("t.boom", 1, {"ok": None, "error": "HostError"}),
    ("t.unencodable", 1, {"ok": None, "error": "HostError"}),
    ("t.denied", 1, {"ok": None, "error": "CapabilityDenied"}),
    ("t.nope", 1, {"ok": None, "error": "UnknownFunction"}),
])
def test_host_call_statuses(echo: Plugin, name: str, payload: Any, expected: dict[str, Any]) -> None:
    assert echo.invoke_action("host_call", name, payload) == expected


def test_host_call_bad_payload_status(echo_wasm: bytes, functions: HostFunctions) -> None:
    # The SDK always sends valid JSON, so -3 is provoked with a payload over the input cap.
    with Runtime(host_functions=functions, limits=Limits(max_input_bytes=1000)) as rt:
        plugin = rt.load(echo_wasm, name="small", capabilities=frozenset({"t.cap"}))
        assert plugin.invoke_action("host_call_big", "t.echo", 900) == {"ok": 902, "error": None}
        assert plugin.invoke_action("host_call_big", "t.echo", 1200) == {
            "ok": None, "error": "HostBadPayload"}


def test_host_call_as_typed(echo: Plugin) -> None:
    assert echo.invoke_action("host_call_as", "t.point", None) == {"ok": 42, "error": None}
    assert echo.invoke_action("host_call_as", "t.echo", "not a point") == {
        "ok": None, "error": "HostBadResult"}


# --- typed host-function helpers ----------------------------------------------------------------
# Against the real host functions (and a real database): tests/test_zig_sdk_helpers.py. Here: the
# helpers' guest builds on any host, and a host without the functions maps to Zig errors.

HELPERS_DIR = REPO / "tests" / "guests" / "zig_sdk_helpers"


@pytest.fixture(scope="module")
def helpers_wasm() -> bytes:
    from gonext_plugins.devtools.zigbuild import build_zig

    return build_zig(HELPERS_DIR).read_bytes()


def test_typed_helpers_build_and_import_only_env(helpers_wasm: bytes) -> None:
    import wasmtime

    module = wasmtime.Module(wasmtime.Engine(), helpers_wasm)
    assert {(i.module, i.name) for i in module.imports} <= {
        ("env", "gn_log"), ("env", "gn_panic"), ("env", "gn_time_ms"), ("env", "gn_host_call")}
    assert {"memory", "gn_alloc", "gn_free", "gn_handle_hook"} <= {e.name for e in module.exports}


@pytest.mark.parametrize(("action", "args"), [
    ("kv_incr", ("k", 1)), ("kv_get", ("k",)), ("kv_set", ("k", 1, 60)), ("kv_set", ("k", 1, None)),
    ("kv_list", (None,)), ("kv_list", ("p.",)), ("kv_delete", ("k",)), ("kv_cas", ("k", 1, 2)),
    ("kv_cas_absent", ("k", 1)),
])
def test_typed_helpers_on_a_host_without_the_function(helpers_wasm: bytes, action: str,
                                                      args: tuple[Any, ...]) -> None:
    """-6 unknown_function becomes error.UnknownFunction: what an older host answers."""
    with Runtime(host_functions=HostFunctions(), limits=Limits(memory_pages=64)) as rt:
        plugin = rt.load(helpers_wasm, name="helpers", capabilities=frozenset({"kv"}))
        assert plugin.invoke_action(action, *args) == {"ok": None, "error": "UnknownFunction"}


# --- zigbuild ------------------------------------------------------------------------------------


def _project(tmp_path: Path, source: str) -> Path:
    project = tmp_path / "plugin"
    project.mkdir()
    (project / "main.zig").write_text(source)
    return project


MINIMAL = """const gn = @import("gonext");
pub const actions = .{ .{ "ping", ping } };
comptime { gn.plugin(@This()); }
fn ping() []const u8 { return "pong"; }
"""


def test_build_is_cached_on_content(tmp_path: Path) -> None:
    from gonext_plugins.devtools import zigbuild

    project = _project(tmp_path, MINIMAL)
    out = zigbuild.build_zig(project)
    assert out == project / "build" / "release" / "plugin.wasm"
    key_file = out.with_name("plugin.wasm.buildkey")
    key = key_file.read_text()
    mtime = out.stat().st_mtime_ns
    assert zigbuild.build_zig(project) == out
    assert out.stat().st_mtime_ns == mtime  # not rebuilt

    with Runtime() as rt:
        assert rt.load(out.read_bytes(), name="p").invoke_action("ping") == "pong"

    (project / "main.zig").write_text(MINIMAL.replace('"pong"', '"PONG"'))
    zigbuild.build_zig(project)
    assert key_file.read_text() != key
    with Runtime() as rt:
        assert rt.load(out.read_bytes(), name="p").invoke_action("ping") == "PONG"

    # Another optimize mode is another key, and another output path can be chosen.
    other = zigbuild.build_zig(project, tmp_path / "o" / "debug.wasm", optimize="ReleaseSafe")
    assert other.is_file() and other.with_name("debug.wasm.buildkey").is_file()


def test_compile_error_is_a_build_error_with_stderr(tmp_path: Path) -> None:
    from gonext_plugins.devtools import zigbuild

    project = _project(tmp_path, MINIMAL.replace('return "pong";', "return undefined_name;"))
    with pytest.raises(BuildError) as info:
        zigbuild.build_zig(project)
    assert "undefined_name" in info.value.stderr
    assert "undefined_name" in str(info.value)
    assert info.value.code == "build_error"
    assert not (project / "build" / "release" / "plugin.wasm").exists()


def test_forbidden_import_fails_the_build(tmp_path: Path) -> None:
    from gonext_plugins.devtools import zigbuild

    project = _project(tmp_path, MINIMAL.replace(
        'fn ping() []const u8 { return "pong"; }',
        'extern "env" fn sneaky() void;\nfn ping() []const u8 { sneaky(); return "pong"; }'))
    with pytest.raises(BuildError, match=r"env\.sneaky"):
        zigbuild.build_zig(project)


def test_missing_zig_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gonext_plugins.devtools import zigbuild

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ziglang" else real(name, *a))
    zigbuild.zig_version.cache_clear()
    try:
        with pytest.raises(BuildError, match=r"zig not installed: pip install ziglang"):
            zigbuild.build_zig(_project(tmp_path, MINIMAL))
    finally:
        zigbuild.zig_version.cache_clear()


def test_missing_main_and_bad_options(tmp_path: Path) -> None:
    from gonext_plugins.devtools import zigbuild

    with pytest.raises(BuildError, match=r"no main\.zig"):
        zigbuild.build_zig(tmp_path)
    project = _project(tmp_path, MINIMAL)
    with pytest.raises(BuildError, match="optimize"):
        zigbuild.build_zig(project, optimize="Fastest")
    with pytest.raises(BuildError, match=r"no gonext\.zig"):
        zigbuild.build_zig(project, sdk_dir=tmp_path)


def test_zigbuild_does_not_import_django() -> None:
    import subprocess
    import sys

    code = ("import sys; import gonext_plugins.devtools.zigbuild; "
            "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_sdk_readme_exists() -> None:
    readme = (REPO / "sdk" / "zig" / "README.md").read_text(encoding="utf-8")
    assert "gn.plugin(@This())" in readme


# --- the envelope decoder (strings 8 bytes at a time, no std.json.Value tree) -------------------

ODD_STRINGS = [
    "", "a", "x" * 7, "x" * 8, "y" * 9, "z" * 1000, '"', "\\", '"quoted" \\ back', "\\u0041 stays text",
    "tab\there\r\nnew\bline\fform", "\x00\x01\x1f\x7f", "café naïve — 日本 🎉" * 20, "\u2028\u2029",
    "é" * 8 + '"' + "a" * 7 + "\\", "\ud7ff\ue000\U0010ffff", "</script>&<>'",
]


@pytest.mark.parametrize("s", ODD_STRINGS)
def test_strings_round_trip_exactly(echo: Plugin, s: str) -> None:
    assert echo.invoke_filter("both", s) == s


def call_raw(plugin: Plugin, export: str, name: bytes, payload: bytes) -> Any:
    inst = plugin.pool.checkout()
    try:
        body = inst.dispatcher.call(export, name, payload)
    finally:
        plugin.pool.checkin(inst)
    return None if body is None else json.loads(body)


@pytest.mark.parametrize("payload", [
    b'{"kind": "filter", "value": "\xff"}',  # invalid UTF-8 in a string
    b'{"kind": "filter", "value": "\xc0\x80"}',  # overlong
    b'{"kind": "filter", "value": "\xed\xa0\x80"}',  # a surrogate half in UTF-8
    b'{"kind": "filter", "value": "\\ud800"}',  # a lone surrogate escape
    b'{"kind": "filter", "value": "a\x01b"}',  # a bare control character
    b'{"kind": "filter", "value": "bad \\x escape"}',
    b'{"kind": "filter", "value": "unterminated',
    b'{"kind": "filter", "value": "x"} trailing',
    b'{"kind": "filter", "value": "x", "args": [1, {bad]}',  # in an argument no parameter takes
    b'{"kind": "filter", "value": "x", "extra": [1,]}',  # in a field the SDK ignores
    b'{"kind": "filter", "value": "x", "args": 3}',
    b'{"value": "x"}', b'{"kind": ["filter"], "value": "x"}', b"[]", b"",
])
def test_malformed_envelopes_are_bad_payload(echo: Plugin, payload: bytes) -> None:
    with pytest.raises(HookError) as info:
        call_raw(echo, "gn_handle_hook", b"both", payload)
    assert info.value.status == "bad_payload"


def test_a_malformed_envelope_for_a_known_name_of_another_kind_is_still_bad_payload(echo: Plugin) -> None:
    with pytest.raises(HookError) as info:
        call_raw(echo, "gn_handle_hook", b"both", b'{"kind": "action", "args": [1, {bad]}')
    assert info.value.status == "bad_payload"
    with pytest.raises(HookError) as info:
        call_raw(echo, "gn_handle_hook", b"both", b'{"kind": "action", "args": []}')
    assert info.value.status == "unknown_hook"


def test_key_order_escaped_keys_and_whitespace_do_not_matter(echo: Plugin) -> None:
    payload = b' {"args" : [ ], "value":\n"v\\u00e9", "hook": "both", "k\\u0069nd" : "filter"} '
    assert call_raw(echo, "gn_handle_hook", b"both", payload) == {"value": "v\u00e9"}
    job = b'{"payload": {"a": 1}, "id": "t-1", "job": "echo", "kind": "job"}'
    assert call_raw(echo, "gn_handle_job", b"echo", job) == {"id": "t-1", "payload": {"a": 1}}


def test_deep_and_odd_json_still_decodes(echo: Plugin) -> None:
    deep: Any = "bottom"
    for i in range(200):  # orjson, on the host side, stops at 255
        deep = [deep] if i % 2 else {"k": deep}
    assert json.loads(echo.invoke_filter("script_json", deep)) == deep
    odd = {"n": [0, -1, 1.25e20, -2.5e-300, 12345678901234567890], "s": "\u0000\ufffd", "e": {}, "l": []}
    assert json.loads(echo.invoke_filter("script_json", odd)) == odd


def test_typed_parameters_get_their_values(echo: Plugin) -> None:
    t = {"name": "na\"me\n", "tags": ["a", "é"], "n": 3, "inner": {"ok": True, "unknown": [1]},
         "level": "high", "extra": {"ignored": True}}
    assert echo.invoke_action("typed", t, [1.5, 2]) == {
        "t": {"name": "na\"me\n", "tags": ["a", "é"], "n": 3, "inner": {"ok": True, "note": None},
              "level": "high"},
        "more": [1.5, 2.0]}
    assert echo.invoke_action("typed", {"name": "", "inner": {"ok": False}}) == {
        "t": {"name": "", "tags": [], "n": None, "inner": {"ok": False, "note": None}, "level": "low"},
        "more": None}


@pytest.mark.parametrize("t", [
    {"inner": {"ok": True}},  # a missing field without a default
    {"name": "x", "name ": 1, "inner": {"ok": 1}},  # a field of the wrong type
    {"name": "x", "inner": {"ok": True}, "level": "medium"},  # not a member of the enum
])
def test_typed_parameters_of_the_wrong_shape_are_bad_payload(echo: Plugin, logs: Recorder, t: Any) -> None:
    with pytest.raises(HookError) as info:
        echo.invoke_action("typed", t)
    assert info.value.status == "bad_payload"
    assert any("argument 0 does not decode" in message for _, message in logs.guest())


def test_duplicate_fields_are_bad_payload(echo: Plugin) -> None:
    payload = b'{"kind": "action", "args": [{"name": "a", "name": "b", "inner": {"ok": true}}]}'
    with pytest.raises(HookError) as info:
        call_raw(echo, "gn_handle_hook", b"typed", payload)
    assert info.value.status == "bad_payload"


def test_the_envelope_tree_on_demand(echo: Plugin) -> None:
    assert echo.invoke_action("envelope", 1, 2) == {"hook": "envelope", "keys": 3}


def fuel_of(plugin: Plugin, call: Any) -> int:
    from gonext_plugins.runtime.metrics import stats_for

    call()  # warm: the first call may grow the heap
    stats = stats_for(plugin.name)
    before = stats.settled().fuel
    call()
    return stats.settled().fuel - before


def test_a_string_costs_a_few_instructions_a_byte(echo: Plugin) -> None:
    """Decoded and encoded 8 bytes at a time (std.json took about 80 instructions a byte)."""
    empty = fuel_of(echo, lambda: echo.invoke_filter("both", ""))
    long = fuel_of(echo, lambda: echo.invoke_filter("both", "plain ascii text " * 600))
    assert (long - empty) / (17 * 600) < 20
