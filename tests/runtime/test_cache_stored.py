"""Loading by sha256 (``Runtime.compile_stored``): the blob is fetched only on a cache miss, what is
fetched must hash to the recorded sha256, and a damaged artifact is never deserialized."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from gonext_plugins.errors import PluginLoadError
from gonext_plugins.runtime import Runtime

from .conftest import wat


def _wasm(name: str = "abi_guest") -> bytes:
    return bytes(wasmtime.wat2wasm(wat(name)))


class Fetcher:
    """Stands in for the blob store: counts reads, returns what it was given."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    def __call__(self) -> bytes:
        self.reads += 1
        return self.data


def _upper(runtime: Runtime, sha256: str, fetch: Callable[[], bytes]) -> str:
    module = runtime.compile_stored(sha256, fetch, "stored")
    plugin = runtime.load(module, name="stored")
    try:
        return str(plugin.invoke_filter("upper", "blob"))
    finally:
        plugin.close()


def test_a_hit_never_fetches_the_blob(tmp_path: Path) -> None:
    wasm = _wasm()
    sha256 = hashlib.sha256(wasm).hexdigest()
    fetch = Fetcher(wasm)
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as first:
        assert _upper(first, sha256, fetch) == "BLOB"
        assert first.cache is not None and (first.cache.hits, first.cache.misses) == (0, 1)
    assert fetch.reads == 1
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as second:  # another process, same machine
        assert _upper(second, sha256, fetch) == "BLOB"
        assert second.cache is not None and (second.cache.hits, second.cache.misses) == (1, 0)
    assert fetch.reads == 1
    # The same artifact serves a load by bytes (lifecycle's compile of an upload) and vice versa.
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as third:
        third.compile(wasm, "stored")
        assert third.cache is not None and (third.cache.hits, third.cache.misses) == (1, 0)


@pytest.mark.parametrize("damage", ["flip-payload", "flip-header", "truncate", "swap-other"])
def test_a_damaged_artifact_is_discarded_and_recompiled_from_the_blob(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    wasm = _wasm()
    sha256 = hashlib.sha256(wasm).hexdigest()
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as runtime:
        _upper(runtime, sha256, Fetcher(wasm))
        other = _wasm("minimal")
        runtime.compile_stored(hashlib.sha256(other).hexdigest(), Fetcher(other), "other")
    paths = {path.read_bytes(): path for path in tmp_path.glob("*.gnmod")}
    assert len(paths) == 2
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as probe:
        assert probe.cache is not None
        path = probe.cache.path(probe.cache.key(wasm))
    data = bytearray(path.read_bytes())
    if damage == "flip-payload":
        data[-50] ^= 0x01
    elif damage == "flip-header":
        data[20] ^= 0x01  # inside the key
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:  # a valid artifact of another module moved under this module's name
        data = bytearray(next(content for content, p in paths.items() if p != path))
    path.write_bytes(bytes(data))
    fetch = Fetcher(wasm)
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as runtime:
        assert _upper(runtime, sha256, fetch) == "BLOB"
        assert runtime.cache is not None
        assert (runtime.cache.hits, runtime.cache.misses, runtime.cache.rejected) == (0, 1, 1)
    assert fetch.reads == 1
    assert any("discarding compiled cache file" in record.getMessage() for record in caplog.records)
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as runtime:  # rewritten, trusted again
        assert _upper(runtime, sha256, Fetcher(b"")) == "BLOB"
        assert runtime.cache is not None and runtime.cache.hits == 1


@pytest.mark.parametrize("cached", [True, False])
def test_fetched_bytes_must_match_the_recorded_sha256(tmp_path: Path, cached: bool) -> None:
    wasm, tampered = _wasm(), _wasm("minimal")
    sha256 = hashlib.sha256(wasm).hexdigest()
    with Runtime(cache_dir=tmp_path if cached else None, dispatcher="slow") as runtime:
        with pytest.raises(PluginLoadError, match="do not match their recorded sha256"):
            runtime.compile_stored(sha256, Fetcher(tampered), "stored")
        if runtime.cache is not None:
            assert not list(tmp_path.glob("*.gnmod"))  # nothing compiled from the wrong bytes


def test_a_malformed_sha256_is_refused(tmp_path: Path) -> None:
    with Runtime(cache_dir=tmp_path, dispatcher="slow") as runtime, \
            pytest.raises(PluginLoadError, match="is not a sha256"):
        runtime.compile_stored("../../etc/passwd", Fetcher(b""), "stored")
