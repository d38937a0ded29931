"""Reading the WebAssembly binary format where the devtools need it (imports, custom sections)."""

from __future__ import annotations


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``pos``: (value, position after it). ``ValueError`` when the
    bytes end inside the number."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated LEB128 in wasm module")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos
