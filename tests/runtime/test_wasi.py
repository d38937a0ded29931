"""The WASI preview-1 subset (ABI.md), through WAT guests calling each function on both
dispatchers, and the output of real toolchains (Rust ``wasm32-wasi``, C through ``zig cc``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import wasmtime

from gonext_plugins.diagnostics.traps import inspect
from gonext_plugins.errors import PluginLoadError, PluginTrap
from gonext_plugins.runtime import Limits, Plugin, Runtime
from gonext_plugins.runtime.levels import INFO, WARNING
from gonext_plugins.runtime.wasi import WASI_IMPORTS, WASI_MODULE

from .conftest import LogRecorder, wat

EBADF, EFAULT, EINVAL, ENOSYS, ESPIPE = 8, 21, 28, 52, 70


def guest_lines(logs: LogRecorder) -> list[tuple[int, str]]:
    return [(level, message) for _, level, message, source in logs.lines if source == "guest"]


@pytest.fixture
def calls(rt: Runtime) -> Plugin:
    return rt.load(wat("wasi_calls"), name="wasi")


# --- linking --------------------------------------------------------------------------------------


def test_a_module_importing_all_46_functions_loads(rt: Runtime) -> None:
    plugin = rt.load(wat("wasi_all"), name="all")
    assert len(WASI_IMPORTS) == 46
    assert plugin.invoke_action("anything") is None


def test_the_table_has_the_signatures_wasmtimes_own_wasi_has() -> None:
    """A second source for the 46 signatures: wasmtime's WASI implementation links the same module
    (instantiation checks every import's type)."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module(engine, wat("wasi_all"))
    assert sorted(imp.name or "" for imp in module.imports) == sorted(WASI_IMPORTS)
    linker.instantiate(store, module)


GUEST_TAIL = """(memory (export "memory") 1)
  (func (export "gn_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gn_free") (param i32 i32))
  (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (i64.const 0)))"""


@pytest.mark.parametrize(("imports", "fragment"), [
    ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32) (result i32)))',
     r"import wasi_snapshot_preview1\.fd_write has the wrong type \(i32, i32, i32\) -> \(i32\); "
     r"ABI\.md says \(i32, i32, i32, i32\) -> \(i32\)"),
    ('(import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32)))',
     r"import wasi_snapshot_preview1\.proc_exit has the wrong type"),
    ('(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i32 i32) (result i32)))',
     r"import wasi_snapshot_preview1\.clock_time_get has the wrong type"),
    ('(import "wasi_snapshot_preview1" "fd_open" (func (param i32) (result i32)))',
     r"forbidden import wasi_snapshot_preview1\.fd_open: wasi_snapshot_preview1 has no function 'fd_open'"),
    ('(import "wasi_snapshot_preview1" "fd_write" (global i32))',
     r"import wasi_snapshot_preview1\.fd_write has the wrong type GlobalType"),
    ('(import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
     r"forbidden import wasi_unstable\.fd_write"),
    ('(import "wasi:cli/stdout@0.2.0" "get-stdout" (func (result i32)))',
     r"forbidden import wasi:cli/stdout@0\.2\.0\.get-stdout"),
])
def test_a_wrong_wasi_import_fails_the_load_naming_it(slow_rt: Runtime, imports: str, fragment: str) -> None:
    with pytest.raises(PluginLoadError, match=fragment):
        slow_rt.load(f"(module {imports} {GUEST_TAIL}", name="bad")


def test_initialize_with_the_wrong_type_fails_the_load(slow_rt: Runtime) -> None:
    with pytest.raises(PluginLoadError, match=r"export _initialize must be a function \(\) -> \(\)"):
        slow_rt.load(f'(module (func (export "_initialize") (param i32)) {GUEST_TAIL}', name="bad")


# --- the functions with a meaning -----------------------------------------------------------------


def test_args_and_environ_are_empty(calls: Plugin) -> None:
    assert calls.invoke_action("a") == [0, 0, 0]
    assert calls.invoke_action("b") == [0, 0, 0]
    assert calls.invoke_action("t") == [0, 0, 0]  # sched_yield, args_get, environ_get


def test_clocks_are_realtime_and_monotonic(calls: Plugin) -> None:
    before = time.time_ns()
    errno, now = calls.invoke_action("c")
    assert errno == 0 and before <= now <= time.time_ns()
    errno1, first, errno2, second = calls.invoke_action("d")
    assert errno1 == errno2 == 0 and 0 < first <= second <= time.monotonic_ns()
    assert calls.invoke_action("e") == [EINVAL, EINVAL]  # CPU-time clocks are not offered
    errno1, realtime_res, errno2, monotonic_res = calls.invoke_action("f")
    assert errno1 == errno2 == 0
    assert 1 <= realtime_res <= 1_000_000_000 and 1 <= monotonic_res <= 1_000_000_000
    assert calls.invoke_action("w") == [EFAULT]


def test_random_get_fills_from_the_csprng_and_refuses_ranges_outside_memory(calls: Plugin) -> None:
    errno, *words = calls.invoke_action("g")
    again = calls.invoke_action("g")[1:]
    assert errno == 0 and words != again and any(words)
    assert calls.invoke_action("h") == [EFAULT, EFAULT]


def test_stdout_and_stderr_go_to_the_plugin_log_line_by_line(calls: Plugin, logs: LogRecorder) -> None:
    assert calls.invoke_action("i") == [0, 12]
    assert guest_lines(logs) == [(INFO, "hello"), (INFO, "world")]
    assert calls.invoke_action("j") == [0, 12]
    assert guest_lines(logs)[2:] == [(WARNING, "hello"), (WARNING, "world")]
    assert all(plugin == "wasi" for plugin, *_ in logs.lines)


def test_a_partial_line_is_logged_when_the_call_ends(calls: Plugin, logs: LogRecorder) -> None:
    assert calls.invoke_action("y") == [0]
    assert guest_lines(logs) == [(INFO, "partial")]


def test_fd_write_checks_every_fd_pointer_and_length(calls: Plugin, logs: LogRecorder) -> None:
    assert calls.invoke_action("k") == [EBADF, EBADF]  # fd 3, and stdin
    assert calls.invoke_action("l") == [EFAULT, EFAULT]  # iovec array, nwritten outside memory
    assert calls.invoke_action("m") == [EFAULT, EFAULT]  # an iovec's bytes outside memory
    assert calls.invoke_action("n") == [EINVAL, EINVAL]  # 5000 iovecs; -1 iovecs
    assert guest_lines(logs) == []  # a refused write logs nothing, not even its valid part


def test_the_standard_fds_are_character_devices_that_cannot_be_closed_seeked_or_read(calls: Plugin) -> None:
    errno, filetype, rights, errno0, filetype0 = calls.invoke_action("o")
    assert (errno, filetype, errno0, filetype0) == (0, 2, 0, 2)
    assert rights & (1 << 6)  # fd_write
    assert calls.invoke_action("p") == [EBADF, EFAULT]
    assert calls.invoke_action("q") == [EBADF, ESPIPE, EBADF]


def test_no_file_directory_or_socket_is_reachable(calls: Plugin) -> None:
    assert calls.invoke_action("r") == [EBADF]  # fd_prestat_get: no preopened directory
    assert calls.invoke_action("s") == [ENOSYS, ENOSYS, ENOSYS]  # path_open, poll_oneoff, sock_send


@pytest.mark.parametrize(("case", "code"), [("u", 0), ("v", 7)])
def test_proc_exit_ends_the_call_as_a_trap_naming_the_code(calls: Plugin, case: str, code: int) -> None:
    with pytest.raises(PluginTrap, match=rf"proc_exit\({code}\): a plugin must return") as info:
        calls.invoke_action(case)
    assert info.value.code == "trap"
    assert calls.invoke_action("a") == [0, 0, 0]  # the trapped instance is replaced; the plugin serves on


def test_stdout_counts_against_the_log_limit_like_gn_log(rt: Runtime, logs: LogRecorder) -> None:
    plugin = rt.load(wat("wasi_calls"), name="wasi", limits=Limits(max_host_calls=1))
    assert plugin.invoke_action("i") == [0, 12]  # two lines, one allowed
    assert guest_lines(logs) == [(INFO, "hello")]
    assert [m for _, _, m, s in logs.lines if s == "host"] == [
        "gn_log called too often in one call; further lines dropped"]


def test_a_long_line_is_cut_at_max_log_bytes(rt: Runtime, logs: LogRecorder) -> None:
    plugin = rt.load(wat("wasi_calls"), name="wasi", limits=Limits(max_log_bytes=4))
    assert plugin.invoke_action("i") == [0, 12]
    assert guest_lines(logs) == [(INFO, "hell"), (INFO, "o"), (INFO, "worl"), (INFO, "d")]


def test_wasi_calls_inside_gn_alloc_run_and_output_there_is_dropped(rt: Runtime, logs: LogRecorder) -> None:
    """No WASI function calls back into the guest, so all run while the host places a payload
    (toolchains call some there: wasm-ld wraps every export in the constructors); fd_write's
    output there is dropped, as gn_log's is."""
    plugin = rt.load("""(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "clock_time_get" (func $t (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $e (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 256) "from alloc\\n")
      (global $errors (mut i32) (i32.const 0))
      (func $check (param i32) (global.set $errors (i32.add (global.get $errors) (local.get 0))))
      (func (export "gn_alloc") (param i32) (result i32)
        (i32.store (i32.const 32) (i32.const 256)) (i32.store (i32.const 36) (i32.const 11))
        (call $check (call $w (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48)))
        (call $check (call $t (i32.const 0) (i64.const 1) (i32.const 64)))
        (call $check (call $r (i32.const 64) (i32.const 8)))
        (call $check (call $e (i32.const 64) (i32.const 72)))
        (i32.const 4096))
      (func (export "gn_free") (param i32 i32))
      (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64)
        (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (global.get $errors)))
        (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 1))))""", name="alloc")
    assert plugin.invoke_action("x") == 0  # every errno was 0
    assert guest_lines(logs) == []


# --- _initialize and _start -------------------------------------------------------------------------


def test_initialize_runs_once_per_new_instance_and_start_never(rt: Runtime, logs: LogRecorder) -> None:
    plugin = rt.load(wat("wasi_reactor"), name="reactor", limits=Limits(min_instances=1, max_instances=1))
    assert [plugin.invoke_action("x") for _ in range(3)] == [1, 1, 1]
    assert guest_lines(logs) == [(INFO, "initialized")]
    with pytest.raises(PluginTrap):
        plugin.invoke_action("trap")
    assert plugin.invoke_action("x") == 1  # a new instance, initialized once in its turn
    assert guest_lines(logs) == [(INFO, "initialized"), (INFO, "initialized")]


def test_initialize_runs_under_the_call_limits(rt: Runtime) -> None:
    spin = f'(module (func (export "_initialize") (loop $l (br $l))) {GUEST_TAIL}'
    with pytest.raises(PluginTrap, match=r"\] _initialize failed: out of fuel"):
        rt.load(spin, name="spin", limits=Limits(fuel=100_000))


def test_a_trap_in_initialize_says_so_and_why(rt: Runtime, logs: LogRecorder) -> None:
    with pytest.raises(PluginTrap, match=r"\] _initialize failed: guest trapped: .*unreachable") as info:
        rt.load(wat("wasi_reactor_trap"), name="reactor")
    assert any(frame.startswith("$setup") or frame.startswith("setup") or "_initialize" in frame
               for frame in info.value.frames), info.value.frames
    assert guest_lines(logs) == [(WARNING, "starting up")]  # its output up to the trap is kept


# --- the real reason of a trap inside gn_alloc during a host call -------------------------------------


@pytest.fixture
def alloc_trap(rt: Runtime) -> Plugin:
    rt.host_functions.register("echo", "test.echo", lambda plugin, payload: {"echo": payload})
    return rt.load(wat("alloc_trap_guest"), name="alloc", capabilities={"test.echo"},
                   limits=Limits(fuel=5_000_000))


def test_an_unreachable_in_gn_alloc_during_a_host_call_keeps_its_reason(alloc_trap: Plugin) -> None:
    with pytest.raises(PluginTrap) as info:
        alloc_trap.invoke_action("u")
    err = info.value
    assert err.code == "trap"
    assert err.message.startswith("guest trapped in gn_alloc during a host call: guest trapped: ")
    assert "unreachable" in err.message
    assert err.frames and err.frames[0].startswith("gn_alloc@"), err.frames
    assert any(frame.startswith("gn_handle_hook@") for frame in err.frames), err.frames


def test_the_trap_report_keeps_the_reason_and_every_frame(alloc_trap: Plugin) -> None:
    """The structured report (what the log stream, the admin's faults and the API show)."""
    with pytest.raises(PluginTrap) as info:
        alloc_trap.invoke_action("u")
    report = inspect(info.value, wasmtime.wat2wasm(wat("alloc_trap_guest")))
    assert "unreachable" in report.message and report.plugin == "alloc"
    names = [frame.function for frame in report.frames]
    assert names[0] == "gn_alloc" and "ask_host" in names and "gn_handle_hook" in names, names
    assert report.as_dict()["message"] == info.value.message


def test_a_panic_in_gn_alloc_during_a_host_call_keeps_its_message(alloc_trap: Plugin) -> None:
    """gn_panic there is still re-entry (ABI.md), but the guest's message is the reason kept."""
    with pytest.raises(PluginTrap) as info:
        alloc_trap.invoke_action("p")
    err = info.value
    assert err.code == "reentrant_host_call"
    assert err.message.startswith("guest trapped in gn_alloc during a host call: gn_panic called from inside "
                                  "gn_alloc")
    assert err.message.endswith("the guest panicked: allocator exploded")
    assert err.guest_message == "allocator exploded"
    assert err.as_dict()["detail"] == err.message
    assert err.frames and err.frames[0].startswith("gn_alloc@"), err.frames


def test_fuel_running_out_in_gn_alloc_during_a_host_call_says_so(alloc_trap: Plugin) -> None:
    with pytest.raises(PluginTrap, match=r"\] guest trapped in gn_alloc during a host call: out of fuel"):
        alloc_trap.invoke_action("f")


# --- real toolchains ------------------------------------------------------------------------------------

RUST_PLUGIN = r"""
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static mut HEAP: [u8; 65536] = [0; 65536];
static mut TOP: usize = 0;

#[no_mangle]
pub extern "C" fn gn_alloc(size: i32) -> i32 {
    unsafe {
        if TOP + size as usize > HEAP.len() { return 0; }
        let ptr = HEAP.as_mut_ptr().add(TOP) as i32;
        TOP += size as usize;
        ptr
    }
}

#[no_mangle]
pub extern "C" fn gn_free(_ptr: i32, _size: i32) {}

#[no_mangle]
pub extern "C" fn gn_handle_hook(_name: i32, name_len: i32, _payload: i32, _payload_len: i32) -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let started = Instant::now();
    let clock_ok = since_epoch.as_secs() > 1_600_000_000;
    println!("rust says hello, name of {} bytes, clock ok: {}", name_len, clock_ok);
    eprintln!("rust warns after {} s", started.elapsed().as_secs());
    0
}
"""

C_PLUGIN = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((export_name("gn_alloc"))) int32_t gn_alloc(int32_t size) {
    return (int32_t)(intptr_t)malloc((size_t)size);
}
__attribute__((export_name("gn_free"))) void gn_free(int32_t ptr, int32_t size) {
    (void)size;
    free((void *)(intptr_t)ptr);
}
__attribute__((export_name("gn_handle_hook")))
int64_t gn_handle_hook(int32_t name, int32_t name_len, int32_t payload, int32_t payload_len) {
    (void)name; (void)payload; (void)payload_len;
    printf("c says hello, name of %d bytes, clock ok: %d\n", (int)name_len, time(NULL) > 1600000000);
    printf("no newline at the end");
    fflush(stdout); /* libc's buffer is emptied; the host logs the partial line when the call ends */
    return 0;
}
"""


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"


def test_a_rust_wasm32_wasi_cdylib_prints_to_the_plugin_log(rt: Runtime, logs: LogRecorder,
                                                            tmp_path: Path) -> None:
    rustc = Path("/usr/bin/rustc")
    if not rustc.exists() or not list(Path("/usr/lib/rustlib/wasm32-wasi").glob("lib/libstd-*.rlib")):
        pytest.skip("Debian's rustc with the wasm32-wasi std (libstd-rust-dev-wasm32) is not installed")
    (tmp_path / "plugin.rs").write_text(RUST_PLUGIN)
    _run([str(rustc), "--target", "wasm32-wasi", "--crate-type", "cdylib", "-C", "opt-level=1",
          "-C", "strip=debuginfo", "plugin.rs", "-o", "plugin.wasm"], tmp_path)
    wasm = (tmp_path / "plugin.wasm").read_bytes()
    imports = {imp.module for imp in wasmtime.Module(wasmtime.Engine(), wasm).imports}
    assert imports == {WASI_MODULE}  # really WASI output, not freestanding
    plugin = rt.load(wasm, name="rusty")
    assert plugin.invoke_action("the_content") is None
    assert guest_lines(logs) == [(INFO, "rust says hello, name of 11 bytes, clock ok: true"),
                                 (WARNING, "rust warns after 0 s")]


def test_a_c_reactor_built_by_zig_cc_prints_to_the_plugin_log(rt: Runtime, logs: LogRecorder,
                                                              tmp_path: Path) -> None:
    (tmp_path / "plugin.c").write_text(C_PLUGIN)
    _run([sys.executable, "-m", "ziglang", "cc", "--target=wasm32-wasi", "-mexec-model=reactor", "-Os", "-s",
          "-Wl,-z,stack-size=65536", "plugin.c", "-o", "plugin.wasm"], tmp_path)
    wasm = (tmp_path / "plugin.wasm").read_bytes()
    module = wasmtime.Module(wasmtime.Engine(), wasm)
    assert "_initialize" in {exp.name for exp in module.exports}  # a reactor: the host runs it once
    assert {imp.module for imp in module.imports} == {WASI_MODULE}
    plugin = rt.load(wasm, name="cee")
    assert plugin.invoke_action("wp_head") is None
    assert plugin.invoke_action("wp_footer") is None
    assert guest_lines(logs) == [(INFO, "c says hello, name of 7 bytes, clock ok: 1"),
                                 (INFO, "no newline at the end"),
                                 (INFO, "c says hello, name of 9 bytes, clock ok: 1"),
                                 (INFO, "no newline at the end")]
