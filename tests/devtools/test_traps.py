"""Trap reports: wasm frames -> file:line through a source map, else `$name+offset` from the name section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from gonext_plugins.devtools import sourcemap, traps
from gonext_plugins.devtools.sourcemap import Segment, SourceMap
from gonext_plugins.errors import PluginTrap
from gonext_plugins.runtime import Runtime

GUEST = """(module
  (memory (export "memory") 1)
  (func $alloc (export "gn_alloc") (param i32) (result i32) i32.const 1024)
  (func $free (export "gn_free") (param i32 i32))
  (func $inner (param $n i32) (result i32)
    local.get $n
    i32.const 3
    i32.gt_u
    if
      unreachable
    end
    i32.const 0)
  (func $outer (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64)
    local.get 1
    call $inner
    i64.extend_i32_u))
"""


def raw_trap(wasm: bytes, hook: bytes = b"wp_head") -> wasmtime.Trap:
    """Run one hook on bare wasmtime (stub imports) and return the trap with its offset frames."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, wasm)
    linker = wasmtime.Linker(engine)
    for imp in module.imports:
        result = 0 if imp.type.results else None  # type: ignore[union-attr]
        linker.define_func(imp.module, imp.name, imp.type, lambda *args, result=result: result)
    exports = linker.instantiate(store, module).exports(store)
    memory: Any = exports["memory"]
    alloc: Any = exports["gn_alloc"]
    payload = b'{"kind":"action","hook":"wp_head","args":[]}'
    name_ptr = alloc(store, len(hook))
    memory.write(store, hook, name_ptr)
    payload_ptr = alloc(store, len(payload))
    memory.write(store, payload, payload_ptr)
    handle: Any = exports["gn_handle_hook"]
    with pytest.raises(wasmtime.Trap) as info:
        handle(store, name_ptr, len(hook), payload_ptr, len(payload))
    return info.value


def plugin_trap(wasm: bytes, name: str = "guest") -> PluginTrap:
    with Runtime() as runtime:
        plugin = runtime.load(wasm, name=name)
        with pytest.raises(PluginTrap) as info:
            plugin.invoke_action("wp_head")
        return info.value


@pytest.fixture(scope="module")
def guest() -> bytes:
    return bytes(wasmtime.wat2wasm(GUEST))


def trap_offset(trap: PluginTrap, number: int) -> int:
    """The module offset the runtime recorded for frame ``number`` (``name@0x...``)."""
    return int(trap.frames[number].rsplit("@", 1)[1], 16)


def wat_map(wasm: bytes, trap_offset: int, call_offset: int) -> SourceMap:
    """A hand-made map for GUEST: function entries and the two instructions that matter."""
    funcs = traps.wasm_functions(wasm)
    inner, outer = funcs.index_of("inner"), funcs.index_of("outer")
    assert inner is not None and outer is not None
    rows = sorted([(funcs.entry(inner), 5), (trap_offset, 10), (trap_offset + 1, 11),
                   (funcs.entry(outer), 13), (call_offset, 15)])
    smap = SourceMap(sources=["plugin.wat"], names=[])
    smap.lines = {0: [Segment(0, offset, 0, line - 1, 4) for offset, line in rows]}  # type: ignore[arg-type]
    return SourceMap.parse(smap.to_json())


def test_frames_with_offsets_resolve_to_lines(guest: bytes) -> None:
    trap = raw_trap(guest)
    offsets = [f.module_offset for f in trap.frames]
    smap = wat_map(guest, offsets[0], offsets[1])
    report = traps.inspect(trap, guest, source_map=smap)
    assert report.message == "wasm trap: wasm `unreachable` instruction executed"
    assert [f.function for f in report.frames] == ["inner", "outer"]
    assert [f.location for f in report.frames] == ["plugin.wat:10:5", "plugin.wat:15:5"]
    text = report.text()
    assert "#0  inner" in text and "plugin.wat:10:5" in text and "(source map: given)" in text
    data = json.loads(json.dumps(report.as_dict()))
    assert data["frames"][0] == {"function": "inner", "func_index": 2, "module_offset": offsets[0],
                                 "source": "plugin.wat", "line": 10, "column": 5, "approximate": False,
                                 "func_offset": 5, "symbol": "$inner+0x5", "location": "plugin.wat:10:5"}


def test_plugin_trap_frames_carry_offsets_and_resolve_exactly(guest: bytes, tmp_path: Path) -> None:
    trap = plugin_trap(guest)
    parsed = [traps.parse_frame(frame) for frame in trap.frames]  # the runtime keeps names and offsets
    assert [name for _, name, _ in parsed] == ["inner", "outer"]
    offsets = [offset for _, _, offset in parsed]
    assert all(isinstance(offset, int) for offset in offsets)
    assert guest[offsets[0]] == 0x00  # exactly the `unreachable` instruction
    smap = wat_map(guest, offsets[0], offsets[1])  # type: ignore[arg-type]
    wasm_path = tmp_path / "plugin.wasm"
    wasm_path.write_bytes(guest)
    (tmp_path / "plugin.wasm.map").write_text(smap.to_json())  # found beside the module
    report = traps.inspect(trap, wasm_path=wasm_path)
    assert report.map_source == "plugin.wasm.map"
    assert report.plugin == "guest" and report.message.startswith("guest trapped:")
    assert [f.location for f in report.frames] == ["plugin.wat:10:5", "plugin.wat:15:5"]
    assert not any(f.approximate for f in report.frames)


def test_name_only_frames_resolve_to_function_entries(guest: bytes) -> None:
    """Frames without offsets (older records) fall back to each function's first instruction."""
    raw = raw_trap(guest)
    smap = wat_map(guest, raw.frames[0].module_offset, raw.frames[1].module_offset)
    report = traps.inspect(plugin_trap(guest), guest, source_map=smap, frames=["inner", "outer"])
    assert [f.location for f in report.frames] == ["plugin.wat:5:5 (function entry)",
                                                   "plugin.wat:13:5 (function entry)"]
    assert all(f.approximate for f in report.frames)


def test_offsets_in_frame_strings_are_used() -> None:
    assert traps.parse_frame("main.theContent@0x1a2b") == (None, "main.theContent", 0x1A2B)
    assert traps.parse_frame("func[7]@0x10") == (7, None, 16)
    assert traps.parse_frame("func[7]") == (7, None, None)
    handle = "gonext.Dispatcher(main).handleHook"
    assert traps.parse_frame(handle) == (None, handle, None)
    assert traps.parse_frame({"func_index": 3, "func_name": None, "module_offset": 99}) == (3, None, 99)


def test_without_a_map_every_frame_names_its_function_and_offset(guest: bytes) -> None:
    """A WAT module has no map, but its ``$names`` are in the name section: each frame says where."""
    trap = plugin_trap(guest)
    report = traps.inspect(trap, guest)
    functions = traps.wasm_functions(guest)
    inner, outer = functions.index_of("inner"), functions.index_of("outer")
    assert inner is not None and outer is not None
    expected = [f"$inner+{trap_offset(trap, 0) - functions.entry(inner):#x} (no source map)",  # type: ignore[operator]
                f"$outer+{trap_offset(trap, 1) - functions.entry(outer):#x} (no source map)"]  # type: ignore[operator]
    assert [f.location for f in report.frames] == expected
    assert report.map_source is None
    assert "#0  inner" in report.text() and expected[0] in report.text()
    assert report.as_dict()["frames"][1]["source"] is None
    assert report.as_dict()["frames"][0]["symbol"] == expected[0].split(" ")[0]
    # frames that arrive by index only (a backtrace's `<wasm function N>`): named from the module
    raw_frame = f"func[{inner}]@{trap_offset(trap, 0):#x}"
    by_index = traps.inspect(PluginTrap("guest trapped: x", frames=[raw_frame]), guest)
    assert by_index.frames[0].location == expected[0] and by_index.frames[0].function == "inner"
    # no module at all: still a report, by index
    bare = traps.inspect(PluginTrap("guest trapped: x", frames=["func[3]"]))
    assert bare.frames[0].function == "func[3]" and bare.frames[0].location == "func[3] (no source map)"
    assert "(no wasm frames)" in traps.inspect(PluginTrap("out of fuel")).text()


def test_a_broken_embedded_map_is_reported_not_raised(guest: bytes) -> None:
    wasm = sourcemap.with_source_mapping_url(guest, "data:application/json;base64,bm90IGpzb24=")
    report = traps.inspect(plugin_trap(wasm), wasm)
    assert report.map_error and "not JSON" in report.map_error
    assert "source map unusable" in report.text()
    assert report.frames[0].location == "$inner+0x7 (no source map)"


def test_guest_panic_message_is_shown() -> None:
    trap = PluginTrap("guest panicked: index out of bounds", plugin="p", guest_message="index out of bounds",
                      frames=["f"])
    assert "panic:" not in traps.inspect(trap).text()  # already in the message
    trap = PluginTrap("guest trapped", plugin="p", guest_message="boom", frames=["f"])
    assert "  panic: boom" in traps.inspect(trap).text()


def test_zig_trap_names_the_source_line(zig_projects: dict[str, Path]) -> None:
    project = zig_projects["trapper"]
    wasm = (project / "build" / "dev" / "plugin.wasm").read_bytes()
    trap_line = next(n for n, line in enumerate((project / "main.zig").read_text().splitlines(), 1)
                     if "TRAP LINE" in line)
    report = traps.inspect(raw_trap(wasm), wasm)
    assert report.map_source == "sourceMappingURL (embedded)"
    top = report.frames[0]
    assert top.position is not None and (top.position.source, top.position.line) == ("main.zig", trap_line)
    assert f"main.zig:{trap_line}:" in report.text()
    # through the runtime (name-only frames): function entries, still in real source files
    runtime_report = traps.inspect(plugin_trap(wasm, "trapper"), wasm)
    assert runtime_report.frames and all(f.position is not None for f in runtime_report.frames)
