"""Source Map v3 for WebAssembly plugins: parse, look up, and derive one from a module's DWARF.

Why here: a trap report is only useful when it names the author's ``file:line``. Browsers and
wasm toolchains (Emscripten, AssemblyScript's ``--sourceMap``) describe a module with a Source Map
v3 whose single generated line is line 1 and whose "column" is the byte offset in the module;
wasmtime reports the same offset for each trap frame. Zig emits DWARF instead, so
:func:`from_dwarf` turns a module's ``.debug_line`` program into such a map.

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

from gonext_plugins.devtools.wasmbin import read_uleb
from gonext_plugins.errors import PluginError

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {ch: i for i, ch in enumerate(_B64)}


class SourceMapError(PluginError):
    """The source map is not a valid Source Map v3 (bad JSON, bad VLQ, an index out of range)."""

    code = "bad_source_map"


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
                raise SourceMapError(f"source map is not JSON: {exc}") from None
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
            smap.sections.append((line, column, cls.parse(section.get("map"))))
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
        return data

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


# --- wasm modules: sections, the sourceMappingURL custom section --------------------------------


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return read_uleb(data, pos)
    except ValueError as exc:
        raise SourceMapError(str(exc)) from None


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@dataclass(frozen=True)
class WasmSection:
    """A section: ``start`` is where its id byte is, ``payload`` where its contents begin."""

    id: int
    name: str  # custom sections only
    start: int
    payload: int
    end: int


def wasm_sections(wasm: bytes) -> list[WasmSection]:
    """The module's sections in order (raises SourceMapError on a malformed module)."""
    if wasm[:4] != b"\0asm":
        raise SourceMapError("not a wasm binary module")
    out: list[WasmSection] = []
    pos = 8
    while pos < len(wasm):
        start, sid = pos, wasm[pos]
        size, payload = _leb(wasm, pos + 1)
        end = payload + size
        if end > len(wasm):
            raise SourceMapError("wasm section runs past the end of the module")
        name = ""
        if sid == 0:
            length, p = _leb(wasm, payload)
            name = wasm[p:p + length].decode("utf-8", "replace")
        out.append(WasmSection(sid, name, start, payload, end))
        pos = end
    return out


def custom_section(wasm: bytes, name: str) -> bytes | None:
    """The contents (after the name) of the first custom section called ``name``."""
    for sec in wasm_sections(wasm):
        if sec.id == 0 and sec.name == name:
            length, p = _leb(wasm, sec.payload)
            return wasm[p + length:sec.end]
    return None


def make_custom_section(name: str, contents: bytes) -> bytes:
    encoded = name.encode()
    body = _uleb(len(encoded)) + encoded + contents
    return b"\0" + _uleb(len(body)) + body


def source_mapping_url(wasm: bytes) -> str | None:
    """The module's ``sourceMappingURL`` custom section (the standard for wasm), or None."""
    contents = custom_section(wasm, "sourceMappingURL")
    if contents is None:
        return None
    length, p = _leb(contents, 0)
    return contents[p:p + length].decode("utf-8", "replace")


def with_source_mapping_url(wasm: bytes, url: str) -> bytes:
    """The module with its ``sourceMappingURL`` section set to ``url``; appended at the end, so no
    code offset moves."""
    stripped = strip_custom_sections(wasm, lambda n: n == "sourceMappingURL")
    encoded = url.encode()
    return stripped + make_custom_section("sourceMappingURL", _uleb(len(encoded)) + encoded)


def strip_custom_sections(wasm: bytes, drop: Any) -> bytes:
    """The module without the custom sections for which ``drop(name)`` is true. Custom sections
    after the code section do not move any code offset; ones before it would, so callers drop
    only trailing ones (the DWARF sections Zig emits come after the code)."""
    parts = [wasm[:8]]
    for sec in wasm_sections(wasm):
        if not (sec.id == 0 and drop(sec.name)):
            parts.append(wasm[sec.start:sec.end])
    return b"".join(parts)


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
            raise SourceMapError(f"bad data: URL in sourceMappingURL: {exc}") from None
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


# --- DWARF .debug_line -> source map ------------------------------------------------------------


@dataclass(frozen=True)
class LineRow:
    address: int  # offset in the code section's contents (wasm DWARF convention)
    file: str
    line: int
    column: int  # 1-based; 0 = unknown
    end_sequence: bool = False


def from_dwarf(wasm: bytes, *, relative_to: str | os.PathLike[str] | None = None) -> SourceMap | None:
    """A Source Map v3 from the module's DWARF line table (None when it has no ``.debug_line``).

    Wasm DWARF addresses are offsets from the start of the code section's contents; the map's
    columns are module offsets (what wasmtime reports), so the code section's payload offset is
    added. Source paths under ``relative_to`` are written relative to it.
    """
    sections = wasm_sections(wasm)
    code = next((s for s in sections if s.id == 10), None)
    debug_line = custom_section(wasm, ".debug_line")
    if code is None or debug_line is None:
        return None
    debug_line_str = custom_section(wasm, ".debug_line_str") or b""
    debug_str = custom_section(wasm, ".debug_str") or b""
    rows = list(parse_debug_line(debug_line, debug_str, debug_line_str))
    root = os.path.realpath(os.fspath(relative_to)) if relative_to is not None else None
    sources: list[str] = []
    index: dict[str, int] = {}
    segments: list[Segment] = []
    last: tuple[int | None, int, int] | None = None
    for row in sorted(rows, key=lambda r: (r.address, r.end_sequence)):
        column = code.payload + row.address
        if row.end_sequence or row.line == 0:  # line 0: compiler-made code with no source line
            key: tuple[int | None, int, int] = (None, 0, 0)
        else:
            name = _display_path(row.file, root)
            if name not in index:
                index[name] = len(sources)
                sources.append(name)
            key = (index[name], row.line - 1, max(row.column - 1, 0))
        if key == last:
            continue
        if segments and segments[-1].generated_column == column:
            segments.pop()  # the later row at one address wins (DWARF's last row for an address)
        segments.append(Segment(0, column, *key) if key[0] is not None else Segment(0, column))
        last = key
    smap = SourceMap(sources=sources, names=[], file="plugin.wasm")
    smap.lines = {0: segments}
    smap._columns = {0: [s.generated_column for s in segments]}
    return smap


def _display_path(path: str, root: str | None) -> str:
    """Relative to ``root`` when under it, else absolute. Relative DWARF paths are relative to the
    compile's working directory, which the builders set to the project (``root``)."""
    if root is None:
        return path
    real = os.path.realpath(os.path.join(root, path))
    if real == root or real.startswith(root + os.sep):
        return os.path.relpath(real, root).replace(os.sep, "/")
    return real


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def u(self, size: int) -> int:
        if self.pos + size > len(self.data):
            raise SourceMapError("truncated .debug_line")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "little")
        self.pos += size
        return value

    def uleb(self) -> int:
        value, self.pos = _leb(self.data, self.pos)
        return value

    def sleb(self) -> int:
        result = shift = 0
        while True:
            byte = self.u(1)
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if byte & 0x40:
                    result -= 1 << shift
                return result

    def cstr(self) -> str:
        end = self.data.index(b"\0", self.pos)
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text


def _cstr_at(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")


def parse_debug_line(data: bytes, debug_str: bytes = b"", debug_line_str: bytes = b"") -> Iterator[LineRow]:
    """Run every line-number program in ``.debug_line`` (DWARF 2-5, 32-bit format) and yield its
    rows. Only what a line table needs: no DWARF 64, no vendor extended opcodes beyond skipping."""
    pos = 0
    while pos + 4 <= len(data):
        r = _Reader(data, pos)
        unit_length = r.u(4)
        if unit_length == 0xFFFFFFFF:
            raise SourceMapError("64-bit DWARF is not supported")
        unit_end = r.pos + unit_length
        version = r.u(2)
        if not 2 <= version <= 5:
            raise SourceMapError(f"unsupported DWARF line table version {version}")
        if version >= 5:
            r.u(1)  # address_size
            r.u(1)  # segment_selector_size
        header_length = r.u(4)
        program_start = r.pos + header_length
        min_inst = r.u(1)
        if version >= 4:
            r.u(1)  # maximum_operations_per_instruction (VLIW only)
        default_is_stmt = r.u(1)
        line_base = r.u(1)
        line_base = line_base - 256 if line_base > 127 else line_base
        line_range = r.u(1)
        opcode_base = r.u(1)
        std_lengths = [r.u(1) for _ in range(opcode_base - 1)]
        if version >= 5:
            dirs = _v5_entries(r, debug_str, debug_line_str)
            directories = [d.get("path", "") for d in dirs]
            files_v5 = _v5_entries(r, debug_str, debug_line_str)
            files = [_file_path(f.get("path", ""), directories, int(f.get("dir", 0))) for f in files_v5]
            file_base = 0
        else:
            directories = [""]
            while (d := r.cstr()) != "":
                directories.append(d)
            files = [""]
            while (name := r.cstr()) != "":
                directory = r.uleb()
                r.uleb()  # mtime
                r.uleb()  # length
                files.append(_file_path(name, directories, directory))
            file_base = 0
        r.pos = program_start
        yield from _run_program(r, unit_end, files, file_base, min_inst, bool(default_is_stmt), line_base,
                                line_range, opcode_base, std_lengths)
        pos = unit_end


def _file_path(name: str, directories: list[str], directory: int) -> str:
    if name.startswith("/") or not 0 <= directory < len(directories):
        return name
    base = directories[directory]
    return posixpath.join(base, name) if base else name


_TOMBSTONE = 0xFFFFFFFE
_FORM_SIZES = {0x0B: 1, 0x05: 2, 0x06: 4, 0x07: 8, 0x1E: 16, 0x25: 1, 0x26: 2, 0x27: 3, 0x28: 4}


def _v5_entries(r: _Reader, debug_str: bytes, debug_line_str: bytes) -> list[dict[str, Any]]:
    """A DWARF 5 directory or file name table: formats, then entries."""
    formats = [(r.uleb(), r.uleb()) for _ in range(r.u(1))]
    entries = []
    for _ in range(r.uleb()):
        entry: dict[str, Any] = {}
        for content, form in formats:
            if form == 0x08:  # string
                value: Any = r.cstr()
            elif form == 0x1F:  # line_strp
                value = _cstr_at(debug_line_str, r.u(4))
            elif form == 0x0E:  # strp
                value = _cstr_at(debug_str, r.u(4))
            elif form == 0x0F:  # udata
                value = r.uleb()
            elif form in _FORM_SIZES:
                value = r.u(_FORM_SIZES[form])
            elif form == 0x09:  # block
                r.pos += r.uleb()
                value = None
            else:
                raise SourceMapError(f"unsupported DWARF 5 form {form:#x} in the line table header")
            if content == 1:
                entry["path"] = value
            elif content == 2:
                entry["dir"] = value
        entries.append(entry)
    return entries


def _run_program(r: _Reader, end: int, files: list[str], file_base: int, min_inst: int,
                 default_is_stmt: bool, line_base: int, line_range: int, opcode_base: int,
                 std_lengths: list[int]) -> Iterator[LineRow]:
    def reset() -> list[int]:
        return [0, 1, 1, 0]  # address, file, line, column

    state = reset()
    sequence: list[LineRow] = []

    def row(end_sequence: bool = False) -> LineRow:
        index = state[1] - file_base
        file = files[index] if 0 <= index < len(files) else f"<file {state[1]}>"
        return LineRow(state[0], file, state[2], state[3], end_sequence)

    while r.pos < end:
        opcode = r.u(1)
        if opcode >= opcode_base:
            adjusted = opcode - opcode_base
            state[0] += (adjusted // line_range) * min_inst
            state[2] += line_base + adjusted % line_range
            sequence.append(row())
        elif opcode == 0:  # extended
            length = r.uleb()
            sub_end = r.pos + length
            sub = r.u(1) if length else 0
            if sub == 1:  # end_sequence
                sequence.append(row(end_sequence=True))
                # A sequence at a tombstone address (-1/-2: a function the linker dropped) is not code.
                if sequence[0].address < _TOMBSTONE:
                    yield from sequence
                sequence = []
                state = reset()
            elif sub == 2:  # set_address
                state[0] = r.u(length - 1)
            r.pos = sub_end
        elif opcode == 1:  # copy
            sequence.append(row())
        elif opcode == 2:  # advance_pc
            state[0] += r.uleb() * min_inst
        elif opcode == 3:  # advance_line
            state[2] += r.sleb()
        elif opcode == 4:  # set_file
            state[1] = r.uleb()
        elif opcode == 5:  # set_column
            state[3] = r.uleb()
        elif opcode in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        elif opcode == 8:  # const_add_pc
            state[0] += ((255 - opcode_base) // line_range) * min_inst
        elif opcode == 9:  # fixed_advance_pc
            state[0] += r.u(2)
        else:  # unknown standard opcode: skip its ULEB operands
            for _ in range(std_lengths[opcode - 1]):
                r.uleb()
