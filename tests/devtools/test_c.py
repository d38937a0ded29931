"""C plugins: ``plugin new --lang c`` builds and runs as generated; the C SDK (``sdk/c/gonext.h``)
through the real runtime; traps map to ``main.c:LINE``; a compile error is a BuildError whose first
line is ``file:line``; language detection; dev and release builds."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from gonext_plugins import lifecycle, logs
from gonext_plugins.devtools import build_c, builders, lang, scaffold
from gonext_plugins.diagnostics import sourcemap, traps
from gonext_plugins.errors import AmbiguousLanguage, BuildError, HookError, PluginTrap
from gonext_plugins.models import PluginLogEntry
from gonext_plugins.registry import LoadedPlugin, registry
from gonext_plugins.runtime import Plugin, Runtime
from gonext_plugins.runtime.levels import INFO
from tests.conftest import GUESTS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                                reason="ziglang is not installed (pip install ziglang)")

C_SDK_GUEST = GUESTS / "c_sdk"


def line_of(path: Path, marker: str) -> int:
    """The 1-based line holding ``marker`` (so the tests do not hard-code line numbers)."""
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


@cache
def guest_build(tmp_root: str) -> tuple[Path, bytes]:
    """The C SDK guest copied out of the tree (its build/ stays out of the repository) and built."""
    project = Path(tmp_root) / "c_sdk"
    if not project.exists():
        shutil.copytree(C_SDK_GUEST, project, ignore=shutil.ignore_patterns("build"))
    built, checked = builders.build(project)
    assert built.lang == "c" and built.map_path is not None
    return project, checked.wasm


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    return guest_build(str(tmp_path_factory.mktemp("c-guest")))


@pytest.fixture
def plugin(guest: tuple[Path, bytes]) -> Any:
    with Runtime() as runtime:
        loaded = runtime.load(guest[1], name="c-sdk")
        yield loaded
        loaded.close()


# --- language and scaffold -----------------------------------------------------------------------


@pytest.mark.parametrize("files", [["main.c"], ["main.c", "util.c", "util.h"], ["plugin.c", "manifest.json"]])
def test_c_is_detected_by_its_top_level_sources(tmp_path: Path, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert lang.detect(tmp_path) == "c"


def test_c_beside_another_language_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("")
    (tmp_path / "main.zig").write_text("")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "x.c").write_text("")  # below the top level: does not count
    with pytest.raises(AmbiguousLanguage) as info:
        lang.detect(tmp_path)
    assert info.value.found == {"c": ["main.c"], "zig": ["main.zig"]}


def test_the_scaffold_builds_and_runs_as_generated(tmp_path: Path) -> None:
    project = tmp_path / "hello-c"
    call_command("plugin", "new", str(project), "--lang", "c")
    assert sorted(p.name for p in project.iterdir()) == [".gitignore", "README.md", "main.c", "manifest.json"]
    built, checked = builders.build(project)
    assert built.lang == "c" and not built.cached and checked.manifest.slug == "hello-c"
    assert set(checked.imports) <= {"env.gn_log", "env.gn_panic", "env.gn_time_ms", "env.gn_host_call"}
    with Runtime() as runtime:
        loaded = runtime.load(checked.wasm, name="hello-c")
        try:
            assert loaded.invoke_filter("the_content", "<p>Post</p>") == \
                '<p>Post</p><p class="hello-c-hello">Hello from Hello C!</p>'
            assert loaded.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "hello-c"}]}
        finally:
            loaded.close()
    again, _ = builders.build(project)
    assert again.cached  # unchanged sources: the compiler is not run
    (project / "main.c").write_text((project / "main.c").read_text() + "\n/* edited */\n")
    assert not builders.build(project)[0].cached


def test_release_builds_are_smaller_and_carry_no_debug_info(tmp_path: Path) -> None:
    project = tmp_path / "rel"
    scaffold.create(project, "c")
    dev, release = tmp_path / "dev.wasm", tmp_path / "release.wasm"
    assert build_c.build(project, dev, source_map=True, release=False, timeout=600) is False
    assert build_c.build(project, release, source_map=False, release=True, timeout=600) is False
    assert sourcemap.custom_section(dev.read_bytes(), ".debug_line") is not None
    assert sourcemap.custom_section(release.read_bytes(), ".debug_line") is None
    assert release.stat().st_size < dev.stat().st_size
    assert build_c.build(project, release, source_map=False, release=True, timeout=600) is True


def test_a_wasi_project_builds_loads_and_printf_reaches_the_plugin_log(tmp_path: Path) -> None:
    """``--target=wasm32-wasi`` in compile_flags.txt links wasi-libc as a reactor; the module imports
    WASI preview 1, which the host links as a sandboxed subset: stdout is the plugin log."""
    project = tmp_path / "hello-c"
    scaffold.create(project, "c")
    (project / "compile_flags.txt").write_text("# WASI's libc\n--target=wasm32-wasi\n")
    main = project / "main.c"
    logf = '    gn_logf(GN_DEBUG, "the_content: %zu bytes in", html.len);\n'
    header = '#include "gonext.h"\n'
    main.write_text(main.read_text().replace(header, header + "#include <stdio.h>\n")
                    .replace(logf, logf + '    printf("libc says: %zu bytes\\n", html.len);\n'))
    built, checked = builders.build(project)
    assert built.lang == "c" and "wasi_snapshot_preview1.fd_write" in checked.imports
    assert {i.split(".")[0] for i in checked.imports} == {"env", "wasi_snapshot_preview1"}
    lines: list[tuple[int, str, str]] = []
    with Runtime(log_sink=lambda _plugin, level, message, source: lines.append((level, message, source))) \
            as runtime:
        loaded = runtime.load(checked.wasm, name="hello-c")
        try:
            assert loaded.invoke_filter("the_content", "<p>Post</p>") == \
                '<p>Post</p><p class="hello-c-hello">Hello from Hello C!</p>'
        finally:
            loaded.close()
    assert (INFO, "libc says: 11 bytes", "guest") in lines


# --- build errors --------------------------------------------------------------------------------


def test_a_compile_error_names_file_and_line(tmp_path: Path) -> None:
    scaffold.create(tmp_path / "broken", "c")
    main = tmp_path / "broken" / "main.c"
    source = main.read_text().replace("return GN_OK;", "return GN_OK + undefined_name;", 1)
    main.write_text(source)
    expected = line_of(main, "undefined_name")
    with pytest.raises(BuildError) as info:
        builders.compile_project(tmp_path / "broken")
    assert info.value.message.splitlines()[0].startswith(f"C build failed: main.c:{expected}: ")
    assert "undefined_name" in info.value.message and info.value.command


def test_a_project_without_the_sdks_implementation_is_told_the_define(tmp_path: Path) -> None:
    """Without ``#define GONEXT_IMPLEMENTATION`` the linker only says an export is missing."""
    scaffold.create(tmp_path / "nodefine", "c")
    main = tmp_path / "nodefine" / "main.c"
    main.write_text("\n".join(line for line in main.read_text().splitlines()
                              if not line.startswith("#define GONEXT_IMPLEMENTATION")))
    with pytest.raises(BuildError) as info:
        builders.compile_project(tmp_path / "nodefine")
    assert "#define GONEXT_IMPLEMENTATION" in info.value.message.splitlines()[0]


def test_an_import_outside_the_abi_fails_the_build(tmp_path: Path) -> None:
    scaffold.create(tmp_path / "imports", "c")
    main = tmp_path / "imports" / "main.c"
    main.write_text('__attribute__((import_module("env"), import_name("open_file"))) int open_file(int);\n'
                    + main.read_text().replace("return GN_OK;", "return open_file(1) ? GN_OK : GN_OK;", 1))
    with pytest.raises(BuildError) as info:
        builders.compile_project(tmp_path / "imports")
    assert "env.open_file" in info.value.message


def test_no_c_file_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"no \.c file"):
        build_c.build(tmp_path, tmp_path / "out.wasm", source_map=True, release=False, timeout=60)


# --- the SDK through the runtime -----------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "plain", 'quote " backslash \\ slash /', "tab\tnewline\nreturn\r formfeed\f backspace\b",
    "controls \x00\x01\x1f\x7f", "café — 😀 日本", "\u2028\u2029", "x" * 5000,
])
def test_strings_round_trip_through_reader_and_writer(plugin: Plugin, text: str) -> None:
    assert plugin.invoke_action("echo_string", text) == text


@pytest.mark.parametrize(("value", "expected"), [
    ({"b": 1, "x": [1, {"y": 2}], "a\"q": None}, {"type": 6, "count": 3, "int": None, "bool": None,
                                                   "keys": ["b", "x", 'a\\"q'], "x": [1, {"y": 2}]}),
    ([1, 2, 3], {"type": 5, "count": 3, "int": None, "bool": None, "keys": [], "x": "absent"}),
    (-9223372036854775808, {"type": 3, "count": 0, "int": -9223372036854775808, "bool": None, "keys": [],
                            "x": "absent"}),
    (9223372036854775808, {"type": 3, "count": 0, "int": None, "bool": None, "keys": [], "x": "absent"}),
    (2.5, {"type": 3, "count": 0, "int": None, "bool": None, "keys": [], "x": "absent"}),
    (True, {"type": 2, "count": 0, "int": None, "bool": True, "keys": [], "x": "absent"}),
    (None, {"type": 1, "count": 0, "int": None, "bool": None, "keys": [], "x": "absent"}),
])
def test_the_json_reader(plugin: Plugin, value: Any, expected: dict[str, Any]) -> None:
    assert plugin.invoke_action("describe", value) == expected


def test_a_missing_argument_reads_as_absent(plugin: Plugin) -> None:
    assert plugin.invoke_action("describe")["type"] == 0


def test_statuses_and_dispatch(plugin: Plugin) -> None:
    with pytest.raises(HookError) as info:
        plugin.invoke_action("fails")
    assert info.value.status == "error"
    with pytest.raises(HookError) as info:
        plugin.invoke_action("no_such_hook")
    assert info.value.status == "unknown_hook"
    with pytest.raises(HookError) as info:  # registered as a filter: not an action
        plugin.invoke_action("shout", "x")
    assert info.value.status == "unknown_hook"
    assert plugin.invoke_filter("shout", "hello, World") == "HELLO, WORLD"
    assert plugin.invoke_filter("shout", 42) == 42  # no body: the value is unchanged
    assert plugin.invoke_job("demo.job", {"n": [1]}, task_id="task-7") == \
        {"id": "task-7", "payload": {"n": [1]}}


def test_memory_is_reused_across_many_calls(plugin: Plugin) -> None:
    """The allocator gives freed blocks back: a thousand 100 KB calls fit in the default memory cap."""
    big = "y" * 100_000
    for _ in range(1000):
        assert plugin.invoke_action("echo_string", big) == big


# --- traps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hook", "marker", "reason"), [
    ("checked", "line: assert", "assertion failed: n > 0"),
    ("out_of_bounds", "line: out of bounds", "out of bounds memory access"),
    ("unreachable", "line: unreachable", "unreachable"),
])
def test_traps_map_to_main_c_lines(plugin: Plugin, guest: tuple[Path, bytes], hook: str, marker: str,
                                   reason: str) -> None:
    project, wasm = guest
    line = line_of(project / "main.c", marker)
    with pytest.raises(PluginTrap) as info:
        plugin.invoke_action(hook, 0)
    report = traps.inspect(info.value, wasm)
    text = report.text()
    assert reason in text
    assert f"main.c:{line}:" in text, text
    if hook == "checked":
        assert info.value.guest_message == f"main.c:{line}: assertion failed: n > 0"
        assert "sdk/c/gonext.h:" in text  # the SDK's own frames, without this machine's path


# --- host functions on the real site -------------------------------------------------------------


@pytest.fixture
def installed(make_bundle: Any, django_capture_on_commit_callbacks: Any,
              guest: tuple[Path, bytes]) -> Callable[..., LoadedPlugin]:
    def factory(grant: tuple[str, ...] = ("kv",)) -> LoadedPlugin:
        manifest = json.loads((C_SDK_GUEST / "manifest.json").read_text())
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(make_bundle(wasm=guest[1], **manifest), list(grant), "tests", activate=True)
        loaded = registry.get("c-sdk")
        assert loaded is not None
        return loaded

    return factory


@pytest.mark.django_db
def test_kv_wrappers_against_the_real_store(installed: Callable[..., LoadedPlugin]) -> None:
    assert installed().invoke("action", "kv_roundtrip") == {
        "status": 0, "found": True, "value": 'café "q"', "counted": 5, "swapped": True, "now": [1, 2],
        "keys": ["n", "name"], "deleted": True,
    }


@pytest.mark.django_db
def test_gn_logf_formats_into_the_plugin_log(installed: Callable[..., LoadedPlugin]) -> None:
    installed().invoke("action", "format")
    logs.flush()
    lines = [(e.level, e.message) for e in PluginLogEntry.objects.filter(plugin="c-sdk", source="guest")]
    assert lines == [(2, "-42|-9007199254740993|4000000000|7|ff|q|str|abc|%")]
