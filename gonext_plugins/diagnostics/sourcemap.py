"""Source Map v3 for WebAssembly plugins: parse, look up, and derive one from a module's DWARF.

Why here: a trap report is only useful when it names the author's ``file:line``. Browsers and
wasm toolchains (Emscripten, AssemblyScript's ``--sourceMap``) describe a module with a Source Map
v3 whose single generated line is line 1 and whose "column" is the byte offset in the module;
wasmtime reports the same offset for each trap frame. Zig emits DWARF instead, so
:func:`gonext_plugins.diagnostics.dwarf.from_dwarf` turns a module's ``.debug_line`` program into
such a map.

Conventions (as Mozilla's ``source-map`` library): generated and original lines are 1-based,
columns are 0-based. No Django here.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gonext_plugins.diagnostics.wasmbin import (
    WasmSection,
    custom_section,
    leb,
    make_custom_section,
    strip_custom_sections,
    wasm_sections,
    write_uleb,
)
from gonext_plugins.errors import SourceMapError

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {ch: i for i, ch in enumerate(_B64)}


# Re-exported: the wasm section helpers were defined here before diagnostics/wasmbin.py.
__all__ = ["Position", "Segment", "SourceMap", "SourceMapError", "WasmSection", "custom_section", "data_url",
           "decode_vlq", "encode_vlq", "load_for_module", "make_custom_section", "source_mapping_url",
           "strip_custom_sections", "wasm_sections", "with_source_mapping_url"]

# --- VLQ ----------------------------------------------------------------------------------------


def decode_vlq(text: str) -> list[int]:
    """Base64 VLQ digits (one segment, no commas) -> signed integers."""
    values: list[int] = []
    value = shift = 0
    continuing = False
    for ch in text:
        digit = _B64_VALUE.get(ch)
        if digit is None:
            raise SourceMapError(f"invalid base64 VLQ character {ch!r} in {text!r}")
        continuing = bool(digit & 32)
        value += (digit & 31) << shift
        if continuing:
            shift += 5
            if shift > 60:
                raise SourceMapError(f"VLQ value too long in {text!r}")
            continue
        values.append(-(value >> 1) if value & 1 else value >> 1)
        value = shift = 0
    if continuing:
        raise SourceMapError(f"truncated VLQ value in {text!r}")
    return values


def encode_vlq(values: Iterable[int]) -> str:
    """Signed integers -> base64 VLQ (the inverse of :func:`decode_vlq`)."""
    out = []
    for number in values:
        value = (-number << 1) | 1 if number < 0 else number << 1
        while True:
            digit = value & 31
            value >>= 5
            out.append(_B64[digit | (32 if value else 0)])
            if not value:
                break
    return "".join(out)


# --- the map ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """An original position: ``source`` (sourceRoot applied), 1-based ``line``, 0-based ``column``."""

    source: str
    line: int
    column: int
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column + 1}"


@dataclass(frozen=True)
class Segment:
    """One decoded segment. ``source is None`` is an unmapped range (a 1-field segment)."""

    generated_line: int
    generated_column: int
    source: int | None = None
    line: int = 0  # 0-based, as stored
    column: int = 0
    name: int | None = None


@dataclass
class SourceMap:
    """A parsed Source Map v3 (a plain map, or an index map with ``sections``)."""

    sources: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    file: str | None = None
    source_root: str = ""
    # generated line (0-based) -> segments sorted by generated column
    lines: dict[int, list[Segment]] = field(default_factory=dict)
    sections: list[tuple[int, int, SourceMap]] = field(default_factory=list)  # (line0, col0, map)
    # the spec's ``ignoreList``: indices of sources that are library glue (a panic handler), which a
    # stack trace hides when they are the innermost frames
    ignore_list: list[int] = field(default_factory=list)
    _columns: dict[int, list[int]] = field(default_factory=dict, repr=False)

    # -- parsing --

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any]) -> SourceMap:
        """Parse JSON text/bytes or an already-decoded dict; every problem is a SourceMapError."""
        if isinstance(data, bytes | str):
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            if text.startswith(")]}'"):  # the spec's XSSI guard line
                text = text.split("\n", 1)[1] if "\n" in text else ""
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise SourceMapError(f"source map is not JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise SourceMapError("source map must be a JSON object")
        if data.get("version") != 3:
            raise SourceMapError(f"unsupported source map version {data.get('version')!r} (need 3)")
        if "sections" in data:
            return cls._parse_index(data)
        return cls._parse_plain(data)

    @classmethod
    def _parse_plain(cls, data: Mapping[str, Any]) -> SourceMap:
        sources = data.get("sources")
        names = data.get("names", [])
        mappings = data.get("mappings")
        if not isinstance(sources, list) or not all(isinstance(s, str | type(None)) for s in sources):
            raise SourceMapError("'sources' must be a list of strings")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SourceMapError("'names' must be a list of strings")
        if not isinstance(mappings, str):
            raise SourceMapError("'mappings' must be a string")
        root = data.get("sourceRoot") or ""
        if not isinstance(root, str):
            raise SourceMapError("'sourceRoot' must be a string")
        file = data.get("file")
        smap = cls(sources=[_join_root(root, s or "") for s in sources], names=list(names),
                   file=file if isinstance(file, str) else None, source_root=root)
        ignored = data.get("ignoreList", data.get("x_google_ignoreList", []))
        if not isinstance(ignored, list) or not all(type(i) is int and 0 <= i < len(sources)
                                                    for i in ignored):
            raise SourceMapError("'ignoreList' must be a list of indices into 'sources'")
        smap.ignore_list = list(ignored)
        smap.lines = _decode_mappings(mappings, len(sources), len(names))
        smap._columns = {k: [s.generated_column for s in v] for k, v in smap.lines.items()}
        return smap

    @classmethod
    def _parse_index(cls, data: Mapping[str, Any]) -> SourceMap:
        sections = data["sections"]
        if not isinstance(sections, list):
            raise SourceMapError("'sections' must be a list")
        smap = cls(file=data.get("file") if isinstance(data.get("file"), str) else None)
        previous = (-1, -1)
        for index, section in enumerate(sections):
            if not isinstance(section, Mapping) or not isinstance(section.get("offset"), Mapping):
                raise SourceMapError(f"sections[{index}] needs an 'offset' object")
            if "url" in section:
                raise SourceMapError(f"sections[{index}]: 'url' sections are not supported; inline 'map'")
            line, column = section["offset"].get("line"), section["offset"].get("column")
            if not isinstance(line, int) or not isinstance(column, int) or line < 0 or column < 0:
                raise SourceMapError(f"sections[{index}].offset needs non-negative 'line' and 'column'")
            if (line, column) <= previous:
                raise SourceMapError(f"sections[{index}] is not after the previous section")
            previous = (line, column)
            inner = section.get("map")
            if not isinstance(inner, (str, bytes, dict)):
                raise SourceMapError(f"sections[{index}] needs a 'map' object")
            smap.sections.append((line, column, cls.parse(inner)))
        return smap

    # -- lookup --

    def lookup(self, generated_line: int, generated_column: int) -> Position | None:
        """The original position of the segment covering (1-based line, 0-based column), or None
        when the position is unmapped (before the first segment, or in a 1-field segment)."""
        if self.sections:
            line0 = generated_line - 1
            keys = [(ln, col) for ln, col, _ in self.sections]
            at = bisect.bisect_right(keys, (line0, generated_column)) - 1
            if at < 0:
                return None
            sec_line, sec_col, sub = self.sections[at]
            column = generated_column - sec_col if line0 == sec_line else generated_column
            return sub.lookup(line0 - sec_line + 1, column)
        segments = self.lines.get(generated_line - 1)
        if not segments:
            return None
        at = bisect.bisect_right(self._columns[generated_line - 1], generated_column) - 1
        if at < 0:
            return None
        seg = segments[at]
        if seg.source is None:
            return None
        name = self.names[seg.name] if seg.name is not None else None
        return Position(self.sources[seg.source], seg.line + 1, seg.column, name)

    def lookup_offset(self, offset: int) -> Position | None:
        """Wasm maps: the position of a module byte offset (generated line 1, column = offset)."""
        return self.lookup(1, offset)

    def segments(self) -> Iterator[Segment]:
        """Every segment of a plain map, in generated order."""
        for line in sorted(self.lines):
            yield from self.lines[line]

    # -- writing --

    def to_dict(self) -> dict[str, Any]:
        """The Source Map v3 JSON object of a plain map (``sources`` as resolved)."""
        if self.sections:
            raise SourceMapError("to_dict() writes plain maps only")
        out: list[str] = []
        state = [0, 0, 0, 0]  # source, line, column, name (relative across the whole map)
        last_line = max(self.lines, default=-1)
        for line in range(last_line + 1):
            col = 0
            parts = []
            for seg in self.lines.get(line, []):
                fields = [seg.generated_column - col]
                col = seg.generated_column
                if seg.source is not None:
                    fields += [seg.source - state[0], seg.line - state[1], seg.column - state[2]]
                    state[0:3] = [seg.source, seg.line, seg.column]
                    if seg.name is not None:
                        fields.append(seg.name - state[3])
                        state[3] = seg.name
                parts.append(encode_vlq(fields))
            out.append(",".join(parts))
        data: dict[str, Any] = {"version": 3, "sources": self.sources, "names": self.names,
                                "mappings": ";".join(out)}
        if self.file:
            data["file"] = self.file
        if self.ignore_list:
            data["ignoreList"] = self.ignore_list
        return data

    def ignored(self, source: str) -> bool:
        """Whether ``source`` (as resolved) is in the ``ignoreList``."""
        return any(self.sources[i] == source for i in self.ignore_list)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _join_root(root: str, source: str) -> str:
    if not root or source.startswith("/") or "://" in source:
        return source
    return posixpath.join(root, source) if not root.endswith("/") else root + source


def _decode_mappings(mappings: str, n_sources: int, n_names: int) -> dict[int, list[Segment]]:
    lines: dict[int, list[Segment]] = {}
    source = orig_line = orig_col = name = 0
    for line_no, line_text in enumerate(mappings.split(";")):
        if not line_text:
            continue
        column = 0
        segments: list[Segment] = []
        for raw in line_text.split(","):
            if not raw:
                raise SourceMapError(f"empty segment on generated line {line_no + 1}")
            fields = decode_vlq(raw)
            if len(fields) not in (1, 4, 5):
                raise SourceMapError(f"segment {raw!r} on generated line {line_no + 1} has {len(fields)} "
                                     "fields (need 1, 4 or 5)")
            column += fields[0]
            if column < 0:
                raise SourceMapError(f"negative generated column in segment {raw!r}")
            if len(fields) == 1:
                segments.append(Segment(line_no, column))
                continue
            source += fields[1]
            orig_line += fields[2]
            orig_col += fields[3]
            if not 0 <= source < n_sources:
                raise SourceMapError(f"segment {raw!r} refers to source {source}; the map has {n_sources}")
            if orig_line < 0 or orig_col < 0:
                raise SourceMapError(f"segment {raw!r} gives a negative original line or column")
            seg_name: int | None = None
            if len(fields) == 5:
                name += fields[4]
                if not 0 <= name < n_names:
                    raise SourceMapError(f"segment {raw!r} refers to name {name}; the map has {n_names}")
                seg_name = name
            segments.append(Segment(line_no, column, source, orig_line, orig_col, seg_name))
        segments.sort(key=lambda s: s.generated_column)  # stable: equal columns keep their order
        lines[line_no] = segments
    return lines


# --- wasm modules: the sourceMappingURL custom section -------------------------------------


def source_mapping_url(wasm: bytes) -> str | None:
    """The module's ``sourceMappingURL`` custom section (the standard for wasm), or None."""
    contents = custom_section(wasm, "sourceMappingURL")
    if contents is None:
        return None
    length, p = leb(contents, 0)
    return contents[p:p + length].decode("utf-8", "replace")


def with_source_mapping_url(wasm: bytes, url: str) -> bytes:
    """The module with its ``sourceMappingURL`` section set to ``url``; appended at the end, so no
    code offset moves."""
    stripped = strip_custom_sections(wasm, lambda n: n == "sourceMappingURL")
    encoded = url.encode()
    return stripped + make_custom_section("sourceMappingURL", write_uleb(len(encoded)) + encoded)


def data_url(smap: SourceMap | str) -> str:
    """A ``data:`` URL embedding the map, so a module uploaded alone still carries its map."""
    text = smap if isinstance(smap, str) else smap.to_json()
    return "data:application/json;base64," + base64.b64encode(text.encode()).decode("ascii")


def _check_map_size(size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise SourceMapError(f"the source map is {size:,} bytes, over the {max_bytes:,} byte cap; "
                             "it is not parsed")


def load_for_module(wasm: bytes, wasm_path: str | os.PathLike[str] | None = None, *,
                    max_bytes: int | None = None) -> tuple[SourceMap, str] | None:
    """The map that goes with a module, and where it came from: the ``sourceMappingURL`` section
    (a ``data:`` URL, or a file relative to ``wasm_path``), else ``<wasm_path>.map`` next to it.

    A map over ``max_bytes`` is a :class:`SourceMapError` before it is decoded or parsed: parsing
    costs about a second per 2 MB, too much for a host that reports traps on its request path."""
    url = source_mapping_url(wasm)
    if url and url.startswith("data:"):
        header, _, payload = url.partition(",")
        base64_encoded = header.endswith(";base64")
        _check_map_size(len(payload) * 3 // 4 if base64_encoded else len(payload), max_bytes)
        try:
            raw = base64.b64decode(payload) if base64_encoded else payload.encode()
        except ValueError as exc:
            raise SourceMapError(f"bad data: URL in sourceMappingURL: {exc}") from exc
        return SourceMap.parse(raw), "sourceMappingURL (embedded)"
    if wasm_path is not None:
        base = os.path.dirname(os.fspath(wasm_path))
        candidates = []
        if url and "://" not in url:
            candidates.append((os.path.join(base, url), f"sourceMappingURL {url}"))
        side = os.fspath(wasm_path) + ".map"
        candidates.append((side, os.path.basename(side)))
        for path, label in candidates:
            if os.path.isfile(path):
                _check_map_size(os.path.getsize(path), max_bytes)
                with open(path, "rb") as handle:
                    return SourceMap.parse(handle.read()), label
    return None
