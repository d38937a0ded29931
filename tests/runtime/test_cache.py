"""The compiled-artifact cache: hits, and corrupt, truncated or foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from gonext_plugins.runtime import Runtime

from .conftest import wat


def _load(cache_dir: Path) -> tuple[Runtime, int, int, int]:
    runtime = Runtime(cache_dir=cache_dir, dispatcher="slow")
    plugin = runtime.load(wat("abi_guest"), name="cached")
    assert plugin.invoke_filter("upper", "cache") == "CACHE"
    assert runtime.cache is not None
    stats = runtime.cache.hits, runtime.cache.misses, runtime.cache.rejected
    runtime.close()
    return runtime, *stats


def test_second_load_comes_from_the_cache(tmp_path: Path) -> None:
    assert _load(tmp_path)[1:] == (0, 1, 0)
    files = list(tmp_path.glob("*.gnmod"))
    assert len(files) == 1
    assert _load(tmp_path)[1:] == (1, 0, 0)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign", "other-key"])
def test_a_damaged_file_is_ignored_and_rewritten(tmp_path: Path, damage: str) -> None:
    _load(tmp_path)
    (path,) = tmp_path.glob("*.gnmod")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "empty":
        data = bytearray()
    elif damage == "foreign":
        data = bytearray(b"\x7fELF" + bytes(200))
    else:  # a valid entry of another module under this name
        other = Runtime(cache_dir=tmp_path / "other", dispatcher="slow")
        other.load(wat("minimal"), name="m")
        other.close()
        data = bytearray(next((tmp_path / "other").glob("*.gnmod")).read_bytes())
    path.write_bytes(bytes(data))
    assert _load(tmp_path)[1:] == (0, 1, 1)
    assert _load(tmp_path)[1:] == (1, 0, 0)  # rewritten, trusted again


def test_cache_key_depends_on_the_bytes(tmp_path: Path) -> None:
    runtime = Runtime(cache_dir=tmp_path, dispatcher="slow")
    assert runtime.cache is not None
    a = wasmtime.wat2wasm(wat("minimal"))
    b = wasmtime.wat2wasm(wat("abi_guest"))
    assert runtime.cache.key(bytes(a)) != runtime.cache.key(bytes(b))
    runtime.close()
