"""Compiling untrusted wasm is bounded, and never holds the database write lock (issue #13, class 5).

The bomb: a 1.2 MB module of 300,000 empty functions (plus the ABI exports, so only its size can
be held against it). Unbounded, it took 29-68 s and 2 GB to compile, inside the activation's
transaction, so a concurrent write waited 20 s and failed with "database is locked".
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error

from gonext_plugins import bundle, lifecycle, signing
from gonext_plugins.checks import check_settings
from gonext_plugins.diagnostics.wasmbin import write_uleb
from gonext_plugins.errors import CompileLimitExceeded, PluginLoadError
from gonext_plugins.models import Plugin
from gonext_plugins.registry import registry
from gonext_plugins.runtime.loader import count_functions

from ..api.helpers import assert_error, signed_bundle
from ..conftest import make_manifest
from ..test_api import client_for, install, make_user
from ..test_cross_process import PROCS, JsonProcess, base_env, manage

BOMB_FUNCTIONS = 300_000
CPU_LIMIT = 3  # COMPILE_CPU_SECONDS for the bomb in the two-process test
WRITE_BOUND = 1.0  # seconds: the bound the issue demands for a concurrent write (generous)


# --- the bomb ---------------------------------------------------------------------------------------



def _section(section_id: int, body: bytes) -> bytes:
    return bytes([section_id]) + write_uleb(len(body)) + body


def _vector(items: list[bytes]) -> bytes:
    return write_uleb(len(items)) + b"".join(items)


def function_bomb(empty_functions: int = BOMB_FUNCTIONS) -> bytes:
    """A valid plugin module (memory, gn_alloc, gn_free, gn_handle_hook) plus ``empty_functions``
    functions that do nothing: everything about it is allowed except how much there is to compile."""
    i32, i64 = b"\x7f", b"\x7e"
    types = [b"\x60\x00\x00",                        # 0: () -> ()
             b"\x60\x01" + i32 + b"\x01" + i32,       # 1: gn_alloc (i32) -> i32
             b"\x60\x02" + i32 * 2 + b"\x00",         # 2: gn_free (i32, i32) -> ()
             b"\x60\x04" + i32 * 4 + b"\x01" + i64]   # 3: gn_handle_hook (i32 x4) -> i64
    exports = [write_uleb(6) + b"memory" + b"\x02\x00",
               write_uleb(8) + b"gn_alloc" + b"\x00\x00",
               write_uleb(7) + b"gn_free" + b"\x00\x01",
               write_uleb(14) + b"gn_handle_hook" + b"\x00\x02"]
    bodies = [b"\x00\x41\x80\x08\x0b",  # i32.const 1024
              b"\x00\x0b",
              b"\x00\x42\x00\x0b"]      # i64.const 0
    functions = write_uleb(3 + empty_functions) + b"\x01\x02\x03" + b"\x00" * empty_functions
    code = write_uleb(3 + empty_functions) + b"".join(write_uleb(len(b)) + b for b in bodies) \
        + b"\x02\x00\x0b" * empty_functions
    return (b"\0asm\x01\0\0\0" + _section(1, _vector(types)) + _section(3, functions)
            + _section(5, b"\x01\x00\x01") + _section(7, _vector(exports)) + _section(10, code))


def _child_cpu() -> float:
    """CPU seconds of the child processes this process has waited for (the compiler children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- caps checked before compiling (default settings) ---------------------------------------------


@pytest.mark.django_db
def test_default_caps_refuse_the_bomb_before_compiling(make_bundle: Callable[..., Any]) -> None:
    wasm = function_bomb()
    assert 1_100_000 < len(wasm) < 1_300_000 and count_functions(wasm) == BOMB_FUNCTIONS + 3
    small = lifecycle.install(make_bundle(wasm=function_bomb(10), slug="small"), ["kv"], "tests",
                              activate=True)
    assert small.plugin.state == "active"  # the same module with 10 empty functions is a fine plugin
    with pytest.raises(CompileLimitExceeded, match=f"defines {BOMB_FUNCTIONS + 3} functions, over the "
                                                   "cap of 50000") as caught:
        lifecycle.install(make_bundle(wasm=wasm, slug="bomb"), ["kv"], "tests", activate=True)
    assert isinstance(caught.value, PluginLoadError) and caught.value.code == "compile_limit"
    assert caught.value.plugin == "bomb"
    assert not Plugin.objects.filter(slug="bomb").exists()
    assert registry.runtime.cache is not None and registry.runtime.cache.misses == 1  # only "small"


@pytest.mark.django_db
def test_module_over_the_byte_cap_is_refused(make_bundle: Callable[..., Any], settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_MODULE_BYTES": 1024}
    wasm = function_bomb(400)
    with pytest.raises(CompileLimitExceeded, match=f"the module is {len(wasm)} bytes, over the cap of 1024"):
        lifecycle.install(make_bundle(wasm=wasm, slug="big"), ["kv"], "tests", activate=True)
    assert not Plugin.objects.filter(slug="big").exists()


@pytest.mark.django_db
def test_api_refuses_the_bomb_in_the_error_shape(publisher: Any) -> None:
    admin = client_for(make_user("root", superuser=True))
    raw = signed_bundle(publisher.private_key, wasm=function_bomb(), slug="bomb")
    data = assert_error(install(admin, raw, "kv", activate=True), 409, "compile_limit")
    assert "over the cap of 50000" in data["detail"]
    assert not Plugin.objects.filter(slug="bomb").exists()


@pytest.mark.django_db
def test_first_compile_runs_in_a_child_then_the_cache_serves(make_bundle: Callable[..., Any]) -> None:
    """A normal plugin: compiled once by a child process (a cache miss), then every load is a hit
    that starts no process."""
    before = _child_cpu()
    result = lifecycle.install(make_bundle(), ["kv"], "tests", activate=True)
    assert _child_cpu() > before  # the compile ran in a child this process waited for
    cache = registry.runtime.cache
    assert cache is not None and (cache.misses, cache.hits) == (1, 0)
    assert len(list(Path(cache.directory).glob("*.gnmod"))) == 1
    lifecycle.deactivate(result.plugin, "tests")
    before = _child_cpu()
    lifecycle.activate(result.plugin, "tests")
    assert registry.get("demo") is not None
    assert cache.misses == 1 and cache.hits >= 2  # the second activation and the registry's load
    assert _child_cpu() == before  # and no child process for either


def test_compile_settings_out_of_range_fail_the_system_check(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_MODULE_BYTES": 0, "MAX_FUNCTIONS": 2_000_000,
                               "COMPILE_CPU_SECONDS": 0, "COMPILE_MEMORY_BYTES": 1024}
    messages = [m.msg for m in check_settings() if isinstance(m, Error) and m.id == "gonext_plugins.E003"]
    for key in ("MAX_MODULE_BYTES", "MAX_FUNCTIONS", "COMPILE_CPU_SECONDS", "COMPILE_MEMORY_BYTES"):
        assert any(key in message for message in messages), (key, messages)


# --- the child's CPU limit, while another process writes (SQLite file) -----------------------------


@pytest.mark.slow
def test_bomb_is_stopped_by_the_cpu_limit_while_a_concurrent_write_completes(tmp_path: Path) -> None:
    """Process A installs and activates the bomb with the function cap lifted, so it reaches the
    compiler child and its CPU limit; process B writes to the same SQLite file all the while. Every
    write completes in under a second, and the bomb is refused as ``compile_limit`` having used no
    more CPU than the limit allows."""
    media = tmp_path / "media"
    media.mkdir()
    env = base_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", media)
    manage(env, "migrate", "--noinput", "-v0")
    private, public = signing.generate_key()
    manage(env, "plugin", "trust-key", "Bomb publisher", public)
    bundle_path = tmp_path / "bomb.gnplugin"
    bundle_path.write_bytes(bundle.sign(bundle.pack(make_manifest(slug="bomb"), function_bomb()), private))

    limits = json.dumps({"MAX_FUNCTIONS": 1_000_000, "COMPILE_CPU_SECONDS": CPU_LIMIT})
    script = str(PROCS / "compile_actor.py")
    actor = JsonProcess([sys.executable, script, limits], env, "installer (A)")
    writer = JsonProcess([sys.executable, script, limits], env, "writer (B)")
    stop = tmp_path / "stop-writing"
    try:
        actor.expect(event="ready")
        writer.expect(event="ready")
        writer.send(op="writes", stop_file=str(stop))
        writer.expect(event="write")  # B is writing before A starts
        actor.send(op="install", bundle=str(bundle_path), grant=["kv"])
        try:
            done = actor.expect(event="done", timeout=CPU_LIMIT * 4 + 120)
        finally:  # the writes are the headline: report them even when A never finished
            stop.touch()
            writer.expect(event="done", timeout=60)
            writes = [line for line in writer.seen if line["event"] == "write"]
            failed = [w for w in writes if w["error"] or w["seconds"] >= WRITE_BOUND]
            assert failed == [], failed
        during = [w for w in writes if done["started"] <= w["started"] <= done["finished"]]
        print(f"\nbomb refused after {done['finished'] - done['started']:.2f} s wall, "
              f"{done['child_cpu']:.2f} s child CPU; {len(during)} writes meanwhile, slowest "
              f"{max(w['seconds'] for w in writes):.3f} s")
        assert len(during) >= 3, (done, writes)
        assert done["installed"] is False, done
        assert done["error_type"] == "CompileLimitExceeded" and done["error"] == "compile_limit", done
        assert f"more than its {CPU_LIMIT} s of CPU time" in done["detail"], done
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later (the hard limit).
        assert done["child_cpu"] <= CPU_LIMIT + 1.5, done
        writer.send(op="plugins")
        assert writer.expect(event="done", op="plugins")["plugins"] == []  # nothing was installed
    finally:
        stop.touch()
        actor.stop()
        writer.stop()
