"""The WebAssembly binary reader: LEB128 numbers, sections, custom sections, imports, functions.

Why one module: the loader counts functions before compiling, the Zig builder checks a module's
imports, source maps live in a custom section and trap reports place frames by function index.
Each used to carry its own LEB128 loop; they now share this one. No Django and nothing of
``gonext_plugins`` but :mod:`gonext_plugins.errors`, so ``runtime/`` may import it.

Format: https://webassembly.github.io/spec/core/binary/modules.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gonext_plugins.errors import SourceMapError

MAGIC = b"\0asm"
HEADER_SIZE = 8  # magic and version
CUSTOM, IMPORT, FUNCTION, CODE, DATA = 0, 2, 3, 10, 11  # section ids


def read_uleb(data: bytes, pos: int, *, max_bytes: int | None = None,
              what: str = "truncated LEB128 in wasm module") -> tuple[int, int]:
    """An unsigned LEB128 number at ``pos``: (value, position after it).

    ``ValueError`` (saying ``what``) when the bytes end inside the number, or when it is longer than
    ``max_bytes`` (5 for a u32: every count and size in a module is one)."""
    result = shift = 0
    start = pos
    while True:
        if max_bytes is not None and pos - start >= max_bytes:
            raise ValueError(f"LEB128 longer than {max_bytes} bytes")
        if pos >= len(data):
            raise ValueError(what)
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def leb(data: bytes, pos: int) -> tuple[int, int]:
    """:func:`read_uleb` for the diagnostics: a malformed module is a :class:`SourceMapError`."""
    try:
        return read_uleb(data, pos)
    except ValueError as exc:
        raise SourceMapError(str(exc)) from exc


def write_uleb(value: int) -> bytes:
    """``value`` as unsigned LEB128 (the inverse of :func:`read_uleb`)."""
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
    if wasm[:4] != MAGIC:
        raise SourceMapError("not a wasm binary module")
    out: list[WasmSection] = []
    pos = HEADER_SIZE
    while pos < len(wasm):
        start, sid = pos, wasm[pos]
        size, payload = leb(wasm, pos + 1)
        end = payload + size
        if end > len(wasm):
            raise SourceMapError("wasm section runs past the end of the module")
        name = ""
        if sid == CUSTOM:
            length, p = leb(wasm, payload)
            name = wasm[p:p + length].decode("utf-8", "replace")
        out.append(WasmSection(sid, name, start, payload, end))
        pos = end
    return out


def custom_section(wasm: bytes, name: str) -> bytes | None:
    """The contents (after the name) of the first custom section called ``name``."""
    for sec in wasm_sections(wasm):
        if sec.id == CUSTOM and sec.name == name:
            length, p = leb(wasm, sec.payload)
            return wasm[p + length:sec.end]
    return None


def make_custom_section(name: str, contents: bytes) -> bytes:
    encoded = name.encode()
    body = write_uleb(len(encoded)) + encoded + contents
    return b"\0" + write_uleb(len(body)) + body


def strip_custom_sections(wasm: bytes, drop: Callable[[str], bool]) -> bytes:
    """The module without the custom sections for which ``drop(name)`` is true. Custom sections
    after the code section do not move any code offset; ones before it would, so callers drop
    only trailing ones (the DWARF sections Zig emits come after the code)."""
    parts = [wasm[:HEADER_SIZE]]
    for sec in wasm_sections(wasm):
        if not (sec.id == CUSTOM and drop(sec.name)):
            parts.append(wasm[sec.start:sec.end])
    return b"".join(parts)


@dataclass(frozen=True)
class WasmImport:
    module: str
    name: str
    kind: int  # 0 function, 1 table, 2 memory, 3 global


def wasm_imports(wasm: bytes) -> list[WasmImport]:
    """Every import, read straight from the import section."""
    found: list[WasmImport] = []
    for sec in wasm_sections(wasm):
        if sec.id != IMPORT:
            continue
        count, p = leb(wasm, sec.payload)
        for _ in range(count):
            names = []
            for _ in range(2):
                length, p = leb(wasm, p)
                names.append(wasm[p:p + length].decode("utf-8", "replace"))
                p += length
            kind, p = wasm[p], p + 1
            if kind == 0:  # function: type index
                _, p = leb(wasm, p)
            elif kind in (1, 2):  # table: reftype + limits; memory: limits
                if kind == 1:
                    p += 1
                flags, p = leb(wasm, p)
                _, p = leb(wasm, p)
                if flags & 1:
                    _, p = leb(wasm, p)
            else:  # global: valtype + mutability
                p += 2
            found.append(WasmImport(names[0], names[1], kind))
    return found


@dataclass(frozen=True)
class WasmFunctions:
    """Function indices, names (name section) and code body offsets of a module."""

    imported: int = 0
    bodies: tuple[int, ...] = ()  # module offset of each defined function's first instruction
    names: dict[int, str] = field(default_factory=dict)

    def index_of(self, name: str) -> int | None:
        return next((i for i, n in self.names.items() if n == name), None)

    def entry(self, index: int) -> int | None:
        local = index - self.imported
        return self.bodies[local] if 0 <= local < len(self.bodies) else None


def wasm_functions(wasm: bytes) -> WasmFunctions:
    """Read the import, code and name sections (enough to place a function by index or name)."""
    imported = sum(1 for imp in wasm_imports(wasm) if imp.kind == 0)
    bodies: list[int] = []
    names: dict[int, str] = {}
    for sec in wasm_sections(wasm):
        if sec.id == CODE:
            count, p = leb(wasm, sec.payload)
            for _ in range(count):
                size, body = leb(wasm, p)
                # skip the locals declaration: the first instruction is what a frame at entry shows
                groups, q = leb(wasm, body)
                for _ in range(groups):
                    _, q = leb(wasm, q)
                    q += 1
                bodies.append(q)
                p = body + size
        elif sec.id == CUSTOM and sec.name == "name":
            length, p = leb(wasm, sec.payload)
            p += length
            while p < sec.end:
                sub, p = wasm[p], p + 1
                size, p = leb(wasm, p)
                if sub == 1:
                    count, q = leb(wasm, p)
                    for _ in range(count):
                        index, q = leb(wasm, q)
                        nlen, q = leb(wasm, q)
                        names[index] = wasm[q:q + nlen].decode("utf-8", "replace")
                        q += nlen
                p += size
    return WasmFunctions(imported, tuple(bodies), names)


# Constant-expression opcodes a data segment's offset may use (MVP and extended-const).
_CONST_LEB_OPS = frozenset({0x41, 0x42, 0x23})  # i32.const, i64.const (signed LEB), global.get (index)
_CONST_PLAIN_OPS = frozenset({0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E})  # i32/i64 add, sub, mul
_END = 0x0B


def _skip_const_expr(wasm: bytes, pos: int) -> int:
    """The position after a constant expression (its ``end``)."""
    while pos < len(wasm):
        op, pos = wasm[pos], pos + 1
        if op == _END:
            return pos
        if op in _CONST_LEB_OPS:
            _, pos = leb(wasm, pos)  # a signed LEB has the same length as an unsigned one
        elif op not in _CONST_PLAIN_OPS:
            raise SourceMapError(f"unexpected opcode {op:#x} in a data segment's offset")
    raise SourceMapError("truncated constant expression in wasm module")


def wasm_data(wasm: bytes) -> list[bytes]:
    """The bytes of every data segment (active or passive), in order: what a module's string
    literals compile to, so a lint can see which host functions it names."""
    segments: list[bytes] = []
    for sec in wasm_sections(wasm):
        if sec.id != DATA:
            continue
        count, p = leb(wasm, sec.payload)
        for _ in range(count):
            flags, p = leb(wasm, p)
            if flags == 2:
                _, p = leb(wasm, p)  # memory index
            if flags in (0, 2):
                p = _skip_const_expr(wasm, p)
            elif flags != 1:
                raise SourceMapError(f"unknown data segment kind {flags}")
            size, p = leb(wasm, p)
            if p + size > sec.end:
                raise SourceMapError("data segment runs past its section")
            segments.append(wasm[p:p + size])
            p += size
    return segments
