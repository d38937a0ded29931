"""Moved to :mod:`gonext_plugins.diagnostics.sourcemap` (and ``.wasmbin``, ``.dwarf``): production
code reads source maps too, and must not import the author's tools. Re-exported for old imports."""

from gonext_plugins.diagnostics.dwarf import LineRow, from_dwarf, parse_debug_line
from gonext_plugins.diagnostics.sourcemap import *  # noqa: F403
from gonext_plugins.diagnostics.sourcemap import __all__ as _moved

__all__ = [*_moved, "LineRow", "from_dwarf", "parse_debug_line"]
