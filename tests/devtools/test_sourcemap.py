"""Source Map v3 parsing and lookup (hand-made maps), malformed maps, wasm sections, and the map
derived from a Zig build's DWARF."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import wasmtime

from gonext_plugins.devtools import sourcemap
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.devtools.sourcemap import Position, SourceMap, SourceMapError, decode_vlq, encode_vlq

# Mozilla source-map's test map: two sources, sourceRoot, 4- and 5-field segments on two lines.
MOZILLA = {"version": 3, "file": "min.js", "names": ["bar", "baz", "n"], "sources": ["one.js", "two.js"],
           "sourceRoot": "/the/root",
           "mappings": "CAAC,IAAI,IAAM,SAAUA,GAClB,OAAOC,IAAID;CCDb,IAAI,IAAM,SAAUE,GAClB,OAAOA"}


def test_vlq() -> None:
    assert decode_vlq("A") == [0]
    assert decode_vlq("C") == [1]
    assert decode_vlq("D") == [-1]
    assert decode_vlq("gB") == [16]
    assert decode_vlq("2HwcqxB") == [123, 456, 789]
    assert decode_vlq("AAgBC") == [0, 0, 16, 1]
    for values in ([0], [-1, 1, 15, -16, 16, 1000000, -1000000], [2**31 - 1, -(2**31)]):
        assert decode_vlq(encode_vlq(values)) == values


@pytest.mark.parametrize(("line", "column", "source", "orig_line", "orig_column", "name"), [
    (1, 1, "one.js", 1, 1, None), (1, 5, "one.js", 1, 5, None), (1, 9, "one.js", 1, 11, None),
    (1, 18, "one.js", 1, 21, "bar"), (1, 21, "one.js", 2, 3, None), (1, 28, "one.js", 2, 10, "baz"),
    (1, 32, "one.js", 2, 14, "bar"), (2, 1, "two.js", 1, 1, None), (2, 5, "two.js", 1, 5, None),
    (2, 9, "two.js", 1, 11, None), (2, 18, "two.js", 1, 21, "n"), (2, 21, "two.js", 2, 3, None),
    (2, 28, "two.js", 2, 10, "n"),
])
def test_lookup_multiple_sources_and_segments(line: int, column: int, source: str, orig_line: int,
                                              orig_column: int, name: str | None) -> None:
    smap = SourceMap.parse(json.dumps(MOZILLA))
    assert smap.lookup(line, column) == Position(f"/the/root/{source}", orig_line, orig_column, name)


def test_lookup_between_and_outside_segments() -> None:
    smap = SourceMap.parse(MOZILLA)
    assert smap.lookup(1, 0) is None  # before the first segment of the line
    assert smap.lookup(1, 7) == smap.lookup(1, 5)  # inside a segment's range
    assert smap.lookup(1, 10_000) == smap.lookup(1, 32)  # the last segment runs to the end of the line
    assert smap.lookup(3, 0) is None  # no such line
    assert str(smap.lookup(1, 18)) == "/the/root/one.js:1:22"


def test_one_field_segments_end_a_mapped_range() -> None:
    # wasm: line 1 only; [0,2) unmapped, [2,4) a.zig:1:1, [4,10) unmapped, [10,...) b.zig:5:3
    smap = SourceMap.parse({"version": 3, "sources": ["a.zig", "b.zig"], "names": [],
                            "mappings": "A,EAAA,E,MCIE"})
    assert smap.lookup_offset(0) is None and smap.lookup_offset(1) is None
    assert smap.lookup_offset(2) == smap.lookup_offset(3) == Position("a.zig", 1, 0)
    assert smap.lookup_offset(4) is None and smap.lookup_offset(9) is None
    assert smap.lookup_offset(10) == Position("b.zig", 5, 2)
    assert [s.generated_column for s in smap.segments()] == [0, 2, 4, 10]


def test_relative_fields_carry_across_lines_and_source_root_without_slash() -> None:
    smap = SourceMap.parse({"version": 3, "sources": ["x.zig", "y.zig"], "names": ["f"], "sourceRoot": "src",
                            "mappings": "AAAAA;ACCCA;ADDDA"})
    assert smap.lookup(1, 0) == Position("src/x.zig", 1, 0, "f")
    assert smap.lookup(2, 0) == Position("src/y.zig", 2, 1, "f")
    assert smap.lookup(3, 0) == Position("src/x.zig", 1, 0, "f")


def test_round_trip_through_to_dict() -> None:
    smap = SourceMap.parse(MOZILLA)
    again = SourceMap.parse(smap.to_dict())
    for line in (1, 2):
        for column in range(40):
            assert again.lookup(line, column) == smap.lookup(line, column)


def test_index_map_sections() -> None:
    index = {"version": 3, "sections": [
        {"offset": {"line": 0, "column": 0},
         "map": {"version": 3, "sources": ["a.zig"], "names": [], "mappings": "AAAA,EAAE"}},
        {"offset": {"line": 0, "column": 100},
         "map": {"version": 3, "sources": ["b.zig"], "names": [], "mappings": "AAKA"}},
    ]}
    smap = SourceMap.parse(index)
    assert smap.lookup_offset(0) == Position("a.zig", 1, 0)
    assert smap.lookup_offset(50) == Position("a.zig", 1, 2)
    assert smap.lookup_offset(100) == smap.lookup_offset(150) == Position("b.zig", 6, 0)


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not JSON"),
    ("[]", "JSON object"),
    ({"version": 2, "sources": [], "mappings": ""}, "version 2"),
    ({"version": 3, "sources": "a.zig", "mappings": ""}, "'sources'"),
    ({"version": 3, "sources": [], "names": [1], "mappings": ""}, "'names'"),
    ({"version": 3, "sources": [], "mappings": 7}, "'mappings'"),
    ({"version": 3, "sources": ["a"], "mappings": "A!AA"}, "invalid base64 VLQ character '!'"),
    ({"version": 3, "sources": ["a"], "mappings": "AAAg"}, "truncated VLQ"),
    ({"version": 3, "sources": ["a"], "mappings": "AA"}, "has 2 fields"),
    ({"version": 3, "sources": ["a"], "mappings": "AAAAAA"}, "has 6 fields"),
    ({"version": 3, "sources": ["a"], "mappings": "ACAA"}, "refers to source 1; the map has 1"),
    ({"version": 3, "sources": ["a"], "names": [], "mappings": "AAAAA"}, "refers to name 0"),
    ({"version": 3, "sources": ["a"], "mappings": "AADA"}, "negative original line"),
    ({"version": 3, "sources": ["a"], "mappings": "D"}, "negative generated column"),
    ({"version": 3, "sources": ["a"], "mappings": "AAAA,,AAAA"}, "empty segment"),
    ({"version": 3, "sections": [{"offset": {"line": 0, "column": 0}, "url": "x.map"}]}, "'url' sections"),
    ({"version": 3, "sections": [{"offset": {"line": 0, "column": 5}, "map": MOZILLA},
                                 {"offset": {"line": 0, "column": 5}, "map": MOZILLA}]}, "not after"),
])
def test_malformed_maps(data: object, message: str) -> None:
    with pytest.raises(SourceMapError, match=re.escape(message)):
        SourceMap.parse(data if isinstance(data, str) else json.dumps(data))


MODULE = wasmtime.wat2wasm('(module (memory (export "memory") 1) '
                           '(func (export "f") (result i32) i32.const 7))')


def test_source_mapping_url_sections() -> None:
    wasm = bytes(MODULE)
    assert sourcemap.source_mapping_url(wasm) is None
    tagged = sourcemap.with_source_mapping_url(wasm, "plugin.wasm.map")
    assert sourcemap.source_mapping_url(tagged) == "plugin.wasm.map"
    retagged = sourcemap.with_source_mapping_url(tagged, "other.map")  # replaced, not added twice
    assert sourcemap.source_mapping_url(retagged) == "other.map"
    assert [s.name for s in sourcemap.wasm_sections(retagged) if s.id == 0] == ["sourceMappingURL"]
    wasmtime.Module(wasmtime.Engine(), retagged)  # still a valid module
    code = next(s for s in sourcemap.wasm_sections(retagged) if s.id == 10)
    assert retagged[code.start:code.end] == wasm[code.start:code.end]  # no code moved


def test_load_for_module(tmp_path: Path) -> None:
    text = json.dumps({"version": 3, "sources": ["a.wat"], "names": [], "mappings": "AAAA"})
    embedded = sourcemap.with_source_mapping_url(bytes(MODULE), sourcemap.data_url(text))
    smap, where = sourcemap.load_for_module(embedded)  # type: ignore[misc]
    assert where == "sourceMappingURL (embedded)" and smap.sources == ["a.wat"]
    wasm_path = tmp_path / "plugin.wasm"
    (tmp_path / "plugin.wasm.map").write_text(text)
    assert sourcemap.load_for_module(bytes(MODULE), wasm_path)[1] == "plugin.wasm.map"  # type: ignore[index]
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "p.map").write_text(text)
    linked = sourcemap.with_source_mapping_url(bytes(MODULE), "maps/p.map")
    assert sourcemap.load_for_module(linked, wasm_path)[1] == "sourceMappingURL maps/p.map"  # type: ignore[index]
    assert sourcemap.load_for_module(bytes(MODULE)) is None


def test_not_a_module() -> None:
    with pytest.raises(SourceMapError, match="not a wasm binary"):
        sourcemap.wasm_sections(b"(module)")


# --- DWARF-derived maps (a Zig dev build) ----------------------------------------------------------


def test_zig_dev_build_carries_a_map_and_no_dwarf(zig_projects: dict[str, Path]) -> None:
    wasm_path = zig_projects["hello"] / "build" / "dev" / "plugin.wasm"
    wasm = wasm_path.read_bytes()
    names = [s.name for s in sourcemap.wasm_sections(wasm) if s.id == 0]
    assert not [n for n in names if n.startswith(".debug_")]  # stripped after deriving the map
    assert "name" in names and names[-1] == "sourceMappingURL"
    smap, where = sourcemap.load_for_module(wasm)  # type: ignore[misc]
    assert where == "sourceMappingURL (embedded)"
    assert "main.zig" in smap.sources  # relative to the project
    side = SourceMap.parse((wasm_path.parent / "plugin.wasm.map").read_bytes())
    assert side.sources == smap.sources


def test_dwarf_rows_match_llvm_dwarfdump(tmp_path: Path, zig_projects: dict[str, Path]) -> None:
    """The line program decoder against LLVM's, on a module that still has its DWARF."""
    dwarfdump = shutil.which("llvm-dwarfdump")
    if dwarfdump is None:
        pytest.skip("llvm-dwarfdump not installed")
    from gonext_plugins.devtools import build_zig, zigbuild

    project = zig_projects["hello"]
    out = tmp_path / "debug.wasm"
    # the dev build's own command (same flags and cache dir: a cache hit), emitted elsewhere
    flags = zigbuild.build_flags(optimize=build_zig.DEV_OPTIMIZE, debug_info=True)
    subprocess.run([*zigbuild.zig_command(), "build-exe", *flags, "--name", "plugin",
                    "--cache-dir", str(project / "build" / "dev" / ".zig-cache"),
                    f"-femit-bin={out}", "--dep", "gonext", f"-Mroot={project / 'main.zig'}",
                    f"-Mgonext={sdk_dir('zig') / 'gonext.zig'}"],
                   check=True, cwd=project, capture_output=True)
    wasm = out.read_bytes()
    rows = [(r.address, r.line, r.column, r.end_sequence)
            for r in sourcemap.parse_debug_line(sourcemap.custom_section(wasm, ".debug_line") or b"")]
    dump = subprocess.run([dwarfdump, "--debug-line", str(out)], capture_output=True, text=True,
                          check=True).stdout
    expected = [(int(m[1], 16), int(m[2]), int(m[3]), bool(m[4])) for m in
                re.finditer(r"^0x([0-9a-f]{16})\s+(\d+)\s+(\d+)\s+\d+.*?(end_sequence)?$", dump, re.M)]
    assert rows == expected and len(rows) > 100
    smap = sourcemap.from_dwarf(wasm, relative_to=project)
    assert smap is not None and "main.zig" in smap.sources
