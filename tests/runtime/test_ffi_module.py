"""The fast dispatcher's cffi declarations come from a generated out-of-line module (no pycparser run
in each fresh process), built from the same ``CDEF`` with the same cffi; a missing or stale module
falls back to parsing ``CDEF``, with the same types (issue #18, start-up)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins.runtime import _wasmtime_ffi as wffi

TYPES = ("wasmtime_func_t", "wasmtime_memory_t", "wasmtime_val_raw_t", "wasm_byte_vec_t")


def test_the_shipped_module_is_current_and_in_use(tmp_path: Path) -> None:
    shipped = Path(wffi.__file__).with_name("_wasmtime_cdef.py")
    fresh = wffi.write_generated_module(tmp_path / "fresh.py")
    assert shipped.read_text() == fresh.read_text(), (
        "CDEF or cffi changed: run write_generated_module() and commit runtime/_wasmtime_cdef.py")
    assert wffi.FFI_SOURCE == "generated"
    assert wffi.ffi is sys.modules[wffi.GENERATED_MODULE].ffi


def same_types(ffi: Any) -> None:
    """The layouts the dispatcher relies on, and libwasmtime's functions callable through ``ffi``."""
    for name in TYPES:
        assert ffi.sizeof(name) == wffi.ffi.sizeof(name)
    assert ffi.offsetof("wasm_byte_vec_t", "data") == wffi.ffi.offsetof("wasm_byte_vec_t", "data")
    assert int(ffi.cast("uintptr_t", ffi.cast("wasmtime_context_t *", 4096))) == 4096
    lib = ffi.dlopen(str(wffi.LIBRARY_PATH))
    vec = ffi.new("wasm_byte_vec_t *")
    lib.wasm_byte_vec_delete(vec)  # an empty vector: a real call into libwasmtime, nothing freed
    assert vec.size == 0


def test_a_missing_module_falls_back_to_parsing() -> None:
    ffi, source = wffi.load_ffi("gonext_plugins.runtime._no_such_cdef_module")
    assert source == "cdef"
    same_types(ffi)


def test_a_stale_module_falls_back_to_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = wffi.write_generated_module(tmp_path / "stale_cdef.py")
    stale.write_text(stale.read_text().replace("CDEF_DIGEST = '", "CDEF_DIGEST = 'old"))
    monkeypatch.syspath_prepend(str(tmp_path))
    ffi, source = wffi.load_ffi("stale_cdef")
    assert source == "cdef"
    same_types(ffi)


def test_a_current_module_elsewhere_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wffi.write_generated_module(tmp_path / "other_cdef.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    ffi, source = wffi.load_ffi("other_cdef")
    assert source == "generated"
    same_types(ffi)
    assert ffi is sys.modules["other_cdef"].ffi
