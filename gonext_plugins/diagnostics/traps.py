"""Trap reports: a guest trap's wasm frames as the author's ``file:line``.

Why: "guest trapped: wasm trap: out of bounds memory access" with ``func[41]`` tells an author
nothing; ``main.zig:57:21 in main.theContent`` does. A frame is resolved through the module's
source map (:func:`gonext_plugins.diagnostics.sourcemap.load_for_module`: an embedded ``data:`` URL,
a ``sourceMappingURL`` file, or ``plugin.wasm.map`` beside the module).

Frames come in several shapes and all are accepted: wasmtime ``Frame`` objects (``func_index``,
``func_name``, ``module_offset``), dicts with those keys, and the strings ``PluginTrap.frames``
holds today (``"name"`` or ``"func[N]"``, optionally ``"@0x<module offset>"``). A frame without
an offset is resolved to its function's first instruction and marked approximate. Every frame is
placed as well as the module allows: a source line when a map has one, else the function's name
from the ``name`` section (``$inner+0x5``: the offset inside the function, as a WAT author reads
it), else its index (``func[5]+0x5``); the location then says which of map or line was missing.
No Django here.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gonext_plugins.diagnostics import sourcemap
from gonext_plugins.diagnostics.sourcemap import Position, SourceMap
from gonext_plugins.diagnostics.wasmbin import WasmFunctions, wasm_functions
from gonext_plugins.errors import PluginError, SourceMapError

__all__ = ["NO_SOURCE_MAP", "UNMAPPED", "DebugInfoCache", "Frame", "ModuleDebugInfo", "TrapReport",
           "WasmFunctions", "inspect", "parse_frame", "read_debug_info", "resolve_frames", "wasm_functions"]

NO_SOURCE_MAP = "<no source map>"
UNMAPPED = "<no source line>"
_FRAME_TEXT = re.compile(r"^(?:func\[(?P<index>\d+)\]|(?P<name>.*?))(?:@(?P<offset>0x[0-9a-fA-F]+|\d+))?$")


@dataclass(frozen=True)
class Frame:
    """One resolved frame (innermost first, as wasmtime lists them)."""

    func_index: int | None
    func_name: str | None
    module_offset: int | None
    position: Position | None = None
    approximate: bool = False  # resolved from the function's entry, not the trapping instruction
    mapped: bool = False  # a map was there to ask
    func_offset: int | None = None  # bytes from the function's first instruction to the frame

    @property
    def function(self) -> str:
        if self.func_name:
            return self.func_name
        return f"func[{self.func_index}]" if self.func_index is not None else "<unknown function>"

    @property
    def symbol(self) -> str:
        """The frame by the name section (``$name``) or index, plus its offset in the function."""
        base = f"${self.func_name}" if self.func_name else self.function
        return base + (f"+{self.func_offset:#x}" if self.func_offset is not None else "")

    @property
    def location(self) -> str:
        if self.position is None:
            return f"{self.symbol} ({(UNMAPPED if self.mapped else NO_SOURCE_MAP).strip('<>')})"
        return f"{self.position}{' (function entry)' if self.approximate else ''}"

    def as_dict(self) -> dict[str, Any]:
        pos = self.position
        return {
            "function": self.function, "func_index": self.func_index, "module_offset": self.module_offset,
            "source": pos.source if pos else None, "line": pos.line if pos else None,
            "column": pos.column + 1 if pos else None, "approximate": self.approximate,
            "func_offset": self.func_offset, "symbol": self.symbol, "location": self.location,
        }


@dataclass(frozen=True)
class TrapReport:
    """A readable trap: message, the guest's panic message, resolved frames, where the map came from."""

    message: str
    plugin: str | None = None
    guest_message: str | None = None
    frames: tuple[Frame, ...] = ()
    map_source: str | None = None
    map_error: str | None = None

    def text(self) -> str:
        """A multi-line report for terminals and log lines."""
        head = f"[{self.plugin}] " if self.plugin else ""
        lines = [f"{head}{self.message}"]
        if self.guest_message and self.guest_message not in self.message:
            lines.append(f"  panic: {self.guest_message}")
        if not self.frames:
            lines.append("  (no wasm frames)")
        width = max((len(f.function) for f in self.frames), default=0)
        for number, frame in enumerate(self.frames):
            offset = f" @{frame.module_offset:#x}" if frame.module_offset is not None else ""
            lines.append(f"  #{number:<2} {frame.function:<{width}}{offset}  {frame.location}")
        if self.map_error:
            lines.append(f"  (source map unusable: {self.map_error})")
        elif self.map_source:
            lines.append(f"  (source map: {self.map_source})")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (for the log stream, the admin's faults and the API)."""
        return {"message": self.message, "plugin": self.plugin, "guest_message": self.guest_message,
                "frames": [f.as_dict() for f in self.frames], "source_map": self.map_source,
                "source_map_error": self.map_error}

    def __str__(self) -> str:
        return self.text()


def parse_frame(raw: Any) -> tuple[int | None, str | None, int | None]:
    """(func_index, func_name, module_offset) of any accepted frame shape."""
    if isinstance(raw, str):
        match = _FRAME_TEXT.match(raw.strip())
        if not match:
            return None, raw, None
        offset = match["offset"]
        index = int(match["index"]) if match["index"] is not None else None
        return index, match["name"] or None, int(offset, 0) if offset else None
    if isinstance(raw, dict):
        return raw.get("func_index"), raw.get("func_name"), raw.get("module_offset")
    return (getattr(raw, "func_index", None), getattr(raw, "func_name", None),
            getattr(raw, "module_offset", None))


def resolve_frames(raw_frames: Iterable[Any], module: bytes | WasmFunctions | None,
                   smap: SourceMap | None) -> list[Frame]:
    """Each frame with its function name and source position (``module``: the wasm bytes, or
    their already-read :class:`WasmFunctions`)."""
    funcs = wasm_functions(module) if isinstance(module, bytes | bytearray) else module
    frames = []
    for raw in raw_frames:
        index, name, offset = parse_frame(raw)
        if funcs is not None:
            if index is None and name:
                index = funcs.index_of(name)
            if name is None and index is not None:
                name = funcs.names.get(index)
        approximate = False
        lookup_at = offset
        entry = funcs.entry(index) if funcs is not None and index is not None else None
        if lookup_at is None and entry is not None:
            lookup_at, approximate = entry, True
        func_offset = offset - entry if offset is not None and entry is not None and offset >= entry else None
        position = smap.lookup_offset(lookup_at) if smap is not None and lookup_at is not None else None
        frames.append(Frame(index, name, offset, position, approximate=approximate and position is not None,
                            mapped=smap is not None, func_offset=func_offset))
    return _without_ignored_top(frames, smap)


def _without_ignored_top(frames: list[Frame], smap: SourceMap | None) -> list[Frame]:
    """Drops the innermost frames in the map's ``ignoreList`` sources (an SDK's abort handler), so
    the frame that called it is on top; all of them are kept when nothing else would remain."""
    if smap is None or not smap.ignore_list:
        return frames
    top = 0
    while top < len(frames) and (at := frames[top].position) is not None and smap.ignored(at.source):
        top += 1
    return frames[top:] if top < len(frames) else frames


@dataclass(frozen=True)
class ModuleDebugInfo:
    """What a trap report needs from a module, parsed once: its functions and its source map (or
    why it has none usable)."""

    functions: WasmFunctions | None = None
    source_map: SourceMap | None = None
    map_source: str | None = None
    map_error: str | None = None


def read_debug_info(wasm: bytes, wasm_path: str | os.PathLike[str] | None = None, *,
                    max_map_bytes: int | None = None) -> ModuleDebugInfo:
    """Parse a module's function table and source map; a broken or oversized one is an error
    string, never an exception."""
    smap, map_source, map_error = None, None, None
    try:
        found = sourcemap.load_for_module(wasm, wasm_path, max_bytes=max_map_bytes)
    except SourceMapError as exc:
        found, map_error = None, exc.message
    if found is not None:
        smap, map_source = found
    try:
        functions: WasmFunctions | None = wasm_functions(wasm)
    except (SourceMapError, IndexError, ValueError) as exc:  # a malformed module
        functions, map_error = None, getattr(exc, "message", str(exc))
    return ModuleDebugInfo(functions, smap, map_source, map_error)


class DebugInfoCache:
    """A bounded LRU of :class:`ModuleDebugInfo` by module sha256, so a plugin that traps on every
    request parses its (possibly multi-megabyte) source map once, not once per trap."""

    def __init__(self, maxsize: int = 16) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[str, int | None], ModuleDebugInfo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, wasm: bytes, *, max_map_bytes: int | None = None) -> ModuleDebugInfo:
        key = (sha256, max_map_bytes)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        info = read_debug_info(wasm, max_map_bytes=max_map_bytes)  # outside the lock: it is slow
        with self._lock:
            self._entries[key] = info
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return info

    def __len__(self) -> int:
        return len(self._entries)


def inspect(trap: BaseException, wasm: bytes | None = None, *, source_map: SourceMap | None = None,
            wasm_path: str | os.PathLike[str] | None = None,
            frames: Sequence[Any] | None = None, debug: ModuleDebugInfo | None = None) -> TrapReport:
    """Build a report for ``trap`` (a ``PluginTrap`` or a raw wasmtime ``Trap``).

    ``wasm`` is the module's bytes (read from ``wasm_path`` when not given); ``source_map``
    overrides the module's own; ``frames`` overrides the trap's (e.g. wasmtime ``Frame`` objects
    captured with their offsets); ``debug`` is the module's already-parsed debug info (from a
    :class:`DebugInfoCache`), so nothing is parsed here.
    """
    if debug is None and wasm is None and wasm_path is not None:
        with open(wasm_path, "rb") as handle:
            wasm = handle.read()
    if debug is None and wasm is not None:
        debug = read_debug_info(wasm, wasm_path)
    debug = debug or ModuleDebugInfo()
    smap, map_source, map_error = debug.source_map, debug.map_source, debug.map_error
    if source_map is not None:
        smap, map_source = source_map, "given"
    raw = list(frames) if frames is not None else list(getattr(trap, "frames", None) or [])
    try:
        resolved = resolve_frames(raw, debug.functions, smap)
    except SourceMapError as exc:  # a malformed module: frames as they are, never a crash
        resolved, map_error = resolve_frames(raw, None, None), exc.message
    message = trap.message if isinstance(trap, PluginError) else _first_line(trap)
    return TrapReport(message=str(message), plugin=getattr(trap, "plugin", None),
                      guest_message=getattr(trap, "guest_message", None), frames=tuple(resolved),
                      map_source=map_source, map_error=map_error)


def _first_line(exc: BaseException) -> str:
    """The reason of a raw wasmtime trap: it follows "Caused by:", below wasmtime's backtrace."""
    text = str(getattr(exc, "message", None) or exc)
    if "Caused by:" in text:
        text = text.rsplit("Caused by:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
