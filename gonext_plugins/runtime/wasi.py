"""The sandboxed subset of WASI preview 1 (ABI.md, "WASI preview 1: a sandboxed subset").

Why it exists: the default output of ordinary toolchains (Rust ``wasm32-wasi``, TinyGo, C through
``zig cc``, AssemblyScript's WASI shim) imports ``wasi_snapshot_preview1`` for ``println!``, clocks
and the like. Every one of the 46 preview-1 functions is in :data:`WASI_IMPORTS` with its exact
core signature, so any such module links; each means only what ABI.md says:

- ``fd_write`` on fd 1/2: the plugin's log (info/warning), line-buffered (``HostContext.stdio``;
  the runtime flushes a partial line when the call ends), counted like ``gn_log``; other fds EBADF.
- ``fd_fdstat_get``: fds 0-2 are character devices; ``fd_close``/``fd_read`` on them EBADF,
  ``fd_seek``/``fd_tell`` ESPIPE. ``fd_prestat_get``: EBADF (no preopened directory, so no file).
- ``args_*``/``environ_*``: empty. Clocks: realtime and monotonic (others EINVAL). ``random_get``:
  the OS CSPRNG. ``sched_yield``: no-op. ``proc_exit(code)``: the call ends as a trap naming code.
- Everything else: ENOSYS, with no effect.

Every function goes through :func:`host.define_import`'s guarded trampoline (re-entrancy, deadline,
no exception out of a callback), so both dispatchers get it unchanged. Every guest pointer and length
is bounds-checked (EFAULT, never a read or write outside memory), and no guest-chosen size makes
the host allocate more than :data:`CHUNK` bytes at once. Inside ``gn_alloc``/``gn_free`` (while the
host places a result) every WASI function runs, since none calls back into the guest, except that
``fd_write``'s output is dropped there, as ``gn_log``'s is.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from gonext_plugins.errors import PluginTrap
from gonext_plugins.runtime.host import (
    RUN,
    STDIO_LEVELS,
    HostContext,
    ImportBody,
    ImportSpec,
    define_import,
    guest_log,
    guest_memory,
    read_guest,
    trap,
    write_guest,
)

WASI_MODULE = "wasi_snapshot_preview1"

# errno values of the preview-1 witx (``typenames.witx``).
ESUCCESS, EBADF, EFAULT, EINVAL, ENOSYS, ESPIPE = 0, 8, 21, 28, 52, 70

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
FILETYPE_CHARACTER_DEVICE = 2
RIGHT_FD_READ, RIGHT_FD_WRITE, RIGHT_POLL_FD_READWRITE = 1 << 1, 1 << 6, 1 << 27
STDIO_FDS = (0, 1, 2)

MAX_IOVECS = 1024
"""wasi-libc's ``IOV_MAX``: more iovecs in one ``fd_write`` is EINVAL, so a guest cannot make the
host walk an unbounded list."""

CHUNK = 64 * 1024
"""The most the host reads or generates at once for a guest-chosen size (iovec bodies, random_get)."""

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_IOVEC = struct.Struct("<II")
_FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype u8, flags u16, rights_base u64, rights_inheriting u64


def _errno(args: Any, value: int) -> int:
    """Set the call's errno result; 0 tells the trampoline the import returned normally."""
    args[0].i32 = value
    return 0


def _put(caller: Any, ctx: HostContext, ptr: int, data: bytes) -> int:
    """Write a result to guest memory: ESUCCESS, or EFAULT when it does not fit."""
    _, base, size = guest_memory(caller, ctx)
    return ESUCCESS if write_guest(base, size, ptr, data) else EFAULT


# --- the functions with a meaning --------------------------------------------------------------


def _empty_sizes(ctx: HostContext, caller: Any, args: Any) -> int:
    """``args_sizes_get``/``environ_sizes_get``: zero entries, zero bytes."""
    _, base, size = guest_memory(caller, ctx)
    count_ptr, bytes_ptr = args[0].i32, args[1].i32
    ok = write_guest(base, size, count_ptr, _U32.pack(0)) and write_guest(base, size, bytes_ptr, _U32.pack(0))
    return _errno(args, ESUCCESS if ok else EFAULT)


def _empty_get(ctx: HostContext, caller: Any, args: Any) -> int:
    """``args_get``/``environ_get``: nothing to write for an empty list."""
    return _errno(args, ESUCCESS)


def _clock_res_get(ctx: HostContext, caller: Any, args: Any) -> int:
    clock, res_ptr = args[0].i32, args[1].i32
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC):
        return _errno(args, EINVAL)
    info = time.get_clock_info("time" if clock == CLOCK_REALTIME else "monotonic")
    resolution = max(1, int(info.resolution * 1e9))
    return _errno(args, _put(caller, ctx, res_ptr, _U64.pack(resolution)))


def _clock_time_get(ctx: HostContext, caller: Any, args: Any) -> int:
    clock, time_ptr = args[0].i32, args[2].i32  # args[1] is the precision, a hint
    if clock == CLOCK_REALTIME:
        now = time.time_ns()
    elif clock == CLOCK_MONOTONIC:
        now = time.monotonic_ns()
    else:
        return _errno(args, EINVAL)
    return _errno(args, _put(caller, ctx, time_ptr, _U64.pack(now)))


def _fd_write(ctx: HostContext, caller: Any, args: Any) -> int:
    fd, iovs, iovs_len, nwritten_ptr = args[0].i32, args[1].i32, args[2].i32, args[3].i32
    if fd not in STDIO_LEVELS:
        return _errno(args, EBADF)
    if not 0 <= iovs_len <= MAX_IOVECS:
        return _errno(args, EINVAL)
    _, base, size = guest_memory(caller, ctx)
    table = read_guest(base, size, iovs, iovs_len * _IOVEC.size)
    if table is None:
        return _errno(args, EFAULT)
    vectors = list(_IOVEC.iter_unpack(table))
    if any((ptr & 0xFFFFFFFF) + length > size for ptr, length in vectors):
        return _errno(args, EFAULT)  # checked before anything is logged: all or nothing
    total = sum(length for _, length in vectors)
    if total > 0xFFFFFFFF:
        return _errno(args, EINVAL)  # nwritten is a u32
    if not write_guest(base, size, nwritten_ptr, _U32.pack(total)):
        return _errno(args, EFAULT)
    if not ctx.placing:  # inside gn_alloc/gn_free: dropped, like gn_log there
        for ptr, length in vectors:
            for start in range(0, length, CHUNK):
                if _over_log_limit(ctx):  # nothing more would be logged in this call
                    break
                data = read_guest(base, size, ptr + start, min(CHUNK, length - start))
                _buffer_output(ctx, fd, data or b"")
    return _errno(args, ESUCCESS)


def _buffer_output(ctx: HostContext, fd: int, data: bytes) -> None:
    """Append to fd's pending line and log each complete one; a line over ``max_log_bytes`` is
    logged in pieces of that size, so the buffer never holds more than that plus one chunk."""
    pending = ctx.stdio.setdefault(fd, bytearray())
    pending += data
    cap = ctx.limits.max_log_bytes
    if b"\n" not in data and len(pending) < cap:
        return
    level = STDIO_LEVELS[fd]
    *lines, rest = bytes(pending).split(b"\n")
    for line in lines:
        line = line.removesuffix(b"\r")
        for start in range(0, max(len(line), 1), cap):
            if _over_log_limit(ctx):
                ctx.stdio[fd] = bytearray()
                return
            guest_log(ctx, level, line[start:start + cap])
    while len(rest) >= cap and not _over_log_limit(ctx):
        guest_log(ctx, level, rest[:cap])
        rest = rest[cap:]
    ctx.stdio[fd] = bytearray(rest)


def _over_log_limit(ctx: HostContext) -> bool:
    """Past the per-call line limit (one warning already said so): stop splitting lines."""
    return ctx.log_calls > ctx.limits.max_host_calls


def _fd_fdstat_get(ctx: HostContext, caller: Any, args: Any) -> int:
    fd, stat_ptr = args[0].i32, args[1].i32
    if fd not in STDIO_FDS:
        return _errno(args, EBADF)
    rights = RIGHT_FD_READ if fd == 0 else RIGHT_FD_WRITE
    stat = _FDSTAT.pack(FILETYPE_CHARACTER_DEVICE, 0, rights | RIGHT_POLL_FD_READWRITE, 0)
    return _errno(args, _put(caller, ctx, stat_ptr, stat))


def _ebadf(ctx: HostContext, caller: Any, args: Any) -> int:
    """``fd_close``/``fd_read`` on any fd, ``fd_prestat_get`` (no preopened directories)."""
    return _errno(args, EBADF)


def _seek_on_stdio(ctx: HostContext, caller: Any, args: Any) -> int:
    """``fd_seek``/``fd_tell``: a character device cannot seek; no other fd exists."""
    return _errno(args, ESPIPE if args[0].i32 in STDIO_FDS else EBADF)


def _random_get(ctx: HostContext, caller: Any, args: Any) -> int:
    buf, length = args[0].i32 & 0xFFFFFFFF, args[1].i32 & 0xFFFFFFFF
    _, base, size = guest_memory(caller, ctx)
    if buf + length > size:
        return _errno(args, EFAULT)
    for start in range(0, length, CHUNK):
        write_guest(base, size, buf + start, os.urandom(min(CHUNK, length - start)))
    return _errno(args, ESUCCESS)


def _sched_yield(ctx: HostContext, caller: Any, args: Any) -> int:
    return _errno(args, ESUCCESS)


def _proc_exit(ctx: HostContext, caller: Any, args: Any) -> int:
    code = args[0].i32
    ctx.error = PluginTrap(f"guest called proc_exit({code}): a plugin must return from the call, not exit",
                           plugin=ctx.name)
    return trap(f"proc_exit({code})")


def _enosys(ctx: HostContext, caller: Any, args: Any) -> int:
    """Files, sockets, polling, signals: not in the sandbox; nothing happens."""
    return _errno(args, ENOSYS)


# --- the table ---------------------------------------------------------------------------------

_P = tuple[str, ...]
_I = ("i32",)
_ERRNO = ("i32",)

# (name, params, results, body): every function of the preview-1 witx, in its order, with the core
# signature wasi-libc and Rust's std import.
_TABLE: tuple[tuple[str, _P, _P, ImportBody], ...] = (
    ("args_get", ("i32", "i32"), _ERRNO, _empty_get),
    ("args_sizes_get", ("i32", "i32"), _ERRNO, _empty_sizes),
    ("environ_get", ("i32", "i32"), _ERRNO, _empty_get),
    ("environ_sizes_get", ("i32", "i32"), _ERRNO, _empty_sizes),
    ("clock_res_get", ("i32", "i32"), _ERRNO, _clock_res_get),
    ("clock_time_get", ("i32", "i64", "i32"), _ERRNO, _clock_time_get),
    ("fd_advise", ("i32", "i64", "i64", "i32"), _ERRNO, _enosys),
    ("fd_allocate", ("i32", "i64", "i64"), _ERRNO, _enosys),
    ("fd_close", _I, _ERRNO, _ebadf),
    ("fd_datasync", _I, _ERRNO, _enosys),
    ("fd_fdstat_get", ("i32", "i32"), _ERRNO, _fd_fdstat_get),
    ("fd_fdstat_set_flags", ("i32", "i32"), _ERRNO, _enosys),
    ("fd_fdstat_set_rights", ("i32", "i64", "i64"), _ERRNO, _enosys),
    ("fd_filestat_get", ("i32", "i32"), _ERRNO, _enosys),
    ("fd_filestat_set_size", ("i32", "i64"), _ERRNO, _enosys),
    ("fd_filestat_set_times", ("i32", "i64", "i64", "i32"), _ERRNO, _enosys),
    ("fd_pread", ("i32", "i32", "i32", "i64", "i32"), _ERRNO, _enosys),
    ("fd_prestat_get", ("i32", "i32"), _ERRNO, _ebadf),
    ("fd_prestat_dir_name", ("i32", "i32", "i32"), _ERRNO, _enosys),
    ("fd_pwrite", ("i32", "i32", "i32", "i64", "i32"), _ERRNO, _enosys),
    ("fd_read", ("i32", "i32", "i32", "i32"), _ERRNO, _ebadf),
    ("fd_readdir", ("i32", "i32", "i32", "i64", "i32"), _ERRNO, _enosys),
    ("fd_renumber", ("i32", "i32"), _ERRNO, _enosys),
    ("fd_seek", ("i32", "i64", "i32", "i32"), _ERRNO, _seek_on_stdio),
    ("fd_sync", _I, _ERRNO, _enosys),
    ("fd_tell", ("i32", "i32"), _ERRNO, _seek_on_stdio),
    ("fd_write", ("i32", "i32", "i32", "i32"), _ERRNO, _fd_write),
    ("path_create_directory", ("i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_filestat_get", ("i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_filestat_set_times", ("i32", "i32", "i32", "i32", "i64", "i64", "i32"), _ERRNO, _enosys),
    ("path_link", ("i32", "i32", "i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_open", ("i32", "i32", "i32", "i32", "i32", "i64", "i64", "i32", "i32"), _ERRNO, _enosys),
    ("path_readlink", ("i32", "i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_remove_directory", ("i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_rename", ("i32", "i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_symlink", ("i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("path_unlink_file", ("i32", "i32", "i32"), _ERRNO, _enosys),
    ("poll_oneoff", ("i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("proc_exit", _I, (), _proc_exit),
    ("proc_raise", _I, _ERRNO, _enosys),
    ("sched_yield", (), _ERRNO, _sched_yield),
    ("random_get", ("i32", "i32"), _ERRNO, _random_get),
    ("sock_accept", ("i32", "i32", "i32"), _ERRNO, _enosys),
    ("sock_recv", ("i32", "i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("sock_send", ("i32", "i32", "i32", "i32", "i32"), _ERRNO, _enosys),
    ("sock_shutdown", ("i32", "i32"), _ERRNO, _enosys),
)

WASI_IMPORTS: dict[str, ImportSpec] = {
    # RUN inside gn_alloc/gn_free: no WASI function calls back into the guest, so none can make the
    # host recurse, and toolchains call some there (wasm-ld wraps every export of a module without
    # _initialize in the C/Rust constructors, which read the environment); fd_write drops its output
    # there itself, as gn_log is dropped.
    name: define_import(WASI_MODULE, name, params, results, body, RUN)
    for name, params, results, body in _TABLE
}
"""Every ``wasi_snapshot_preview1`` function by name; a module links only those it imports."""

