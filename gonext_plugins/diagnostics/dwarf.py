"""DWARF ``.debug_line`` line tables of a wasm module, and the Source Map v3 derived from them.

Why: Zig (and clang) describe a module with DWARF, not a source map; trap reports only read source
maps, so :func:`from_dwarf` turns the line-number program into one at build time. Only what a line
table needs (DWARF 2-5, 32-bit format). No Django here.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gonext_plugins.diagnostics.sourcemap import Segment, SourceMap
from gonext_plugins.diagnostics.wasmbin import CODE, custom_section, leb, wasm_sections
from gonext_plugins.errors import SourceMapError

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
    code = next((s for s in sections if s.id == CODE), None)
    debug_line = custom_section(wasm, ".debug_line")
    if code is None or debug_line is None:
        return None
    debug_line_str = custom_section(wasm, ".debug_line_str") or b""
    debug_str = custom_section(wasm, ".debug_str") or b""
    rows = list(parse_debug_line(debug_line, debug_str, debug_line_str))
    root = os.path.realpath(os.fspath(relative_to)) if relative_to is not None else None
    sources: list[str] = []
    index: dict[str, int] = {}
    # A line table names a few dozen files in thousands of rows: resolve each path once
    # (realpath per row was most of a Zig Debug build's post-processing time).
    displayed: dict[str, str] = {}
    segments: list[Segment] = []
    last: tuple[int | None, int, int] | None = None
    for row in sorted(rows, key=lambda r: (r.address, r.end_sequence)):
        column = code.payload + row.address
        if row.end_sequence or row.line == 0:  # line 0: compiler-made code with no source line
            key: tuple[int | None, int, int] = (None, 0, 0)
        else:
            name = displayed.get(row.file)
            if name is None:
                name = displayed[row.file] = _display_path(row.file, root)
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
        value, self.pos = leb(self.data, self.pos)
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
