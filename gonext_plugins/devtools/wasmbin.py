"""Moved to :mod:`gonext_plugins.diagnostics.wasmbin`, the one wasm binary reader (the loader uses it
too). Re-exported for old imports."""

from gonext_plugins.diagnostics.wasmbin import read_uleb

__all__ = ["read_uleb"]
