"""Turning untrusted bytes into a checked ``wasmtime.Module``, and the compiled-artifact cache.

Everything wrong with a module is found here, at load, and reported as ``PluginLoadError`` naming the
offending import, export or limit, so nothing about the module's shape can fail later in a call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from wasmtime import Engine, FuncType, MemoryType, Module, ValType, WasmtimeError, wat2wasm

from gonext_plugins.diagnostics.wasmbin import read_uleb
from gonext_plugins.errors import CompileLimitExceeded, PluginLoadError
from gonext_plugins.runtime import compiler
from gonext_plugins.runtime.host import ENV_IMPORTS, ENV_MODULE, ImportSpec
from gonext_plugins.runtime.limits import CompileLimits
from gonext_plugins.runtime.wasi import WASI_IMPORTS, WASI_MODULE

logger = logging.getLogger("gonext_plugins.runtime")

_WASM_MAGIC = b"\0asm"
_I32, _I64 = ValType.i32(), ValType.i64()
_HOOK_SIG = FuncType([_I32, _I32, _I32, _I32], [_I64])
REQUIRED_EXPORTS: dict[str, FuncType] = {
    "gn_alloc": FuncType([_I32], [_I32]),
    "gn_free": FuncType([_I32, _I32], []),
    "gn_handle_hook": _HOOK_SIG,
}
OPTIONAL_EXPORTS: dict[str, FuncType] = {"gn_handle_job": _HOOK_SIG, "_initialize": FuncType([], [])}
"""``_initialize``: a WASI reactor's constructor, run once per new instance (``instance.py``)."""

ALLOWED_IMPORTS: dict[str, dict[str, ImportSpec]] = {ENV_MODULE: ENV_IMPORTS, WASI_MODULE: WASI_IMPORTS}
"""ABI.md's import modules, each with every function it offers."""

try:
    WASMTIME_VERSION = version("wasmtime")
except PackageNotFoundError:  # pragma: no cover - vendored wasmtime
    WASMTIME_VERSION = "unknown"


def to_wasm(source: bytes | bytearray | memoryview | str, name: str) -> bytes:
    """Binary module bytes from binary bytes or WAT text (str or bytes)."""
    if isinstance(source, str):
        return _wat(source, name)
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise PluginLoadError(f"expected wasm bytes or WAT text, got {type(source).__name__}", plugin=name)
    data = bytes(source)
    if data.startswith(_WASM_MAGIC) or not data:
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # not text: let validation describe what is wrong with it
    return _wat(text, name)


def _wat(text: str, name: str) -> bytes:
    try:
        return bytes(wat2wasm(text))
    except (WasmtimeError, ValueError) as exc:
        raise PluginLoadError(f"invalid WAT: {_first_line(exc)}", plugin=name) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _sig(ty: FuncType) -> str:
    params = ", ".join(str(t) for t in ty.params)
    results = ", ".join(str(t) for t in ty.results)
    return f"({params}) -> ({results})"


def _same_sig(a: FuncType, b: FuncType) -> bool:
    return list(a.params) == list(b.params) and list(a.results) == list(b.results)


def validate(engine: Engine, wasm: bytes, name: str) -> None:
    """wasmtime's own validation; a malformed or invalid module is a ``PluginLoadError``."""
    if not wasm.startswith(_WASM_MAGIC):
        raise PluginLoadError("not a WebAssembly module (bad magic number)", plugin=name)
    try:
        Module.validate(engine, wasm)
    except WasmtimeError as exc:
        raise PluginLoadError(f"invalid WebAssembly module: {_first_line(exc)}", plugin=name) from None


_U32_LEB_BYTES = 5  # every count and size in a module is a u32
_FUNCTION_SECTION = 3


def count_functions(wasm: bytes) -> int:
    """How many functions the module defines, read from its function section's count without
    decoding anything else (section headers only): cheap enough to run before every compile.
    A malformed module counts what could be read; validation then says what is wrong with it."""
    pos = 8  # magic and version
    try:
        while pos < len(wasm):
            section = wasm[pos]
            size, pos = read_uleb(wasm, pos + 1, max_bytes=_U32_LEB_BYTES)
            if section == _FUNCTION_SECTION:
                return read_uleb(wasm, pos, max_bytes=_U32_LEB_BYTES)[0]
            pos += size
    except ValueError:
        pass
    return 0


def check_compile_caps(wasm: bytes, name: str, limits: CompileLimits) -> None:
    """Refuse a module over the size or function-count cap before any work scales with it."""
    if len(wasm) > limits.max_module_bytes:
        raise CompileLimitExceeded(f"the module is {len(wasm)} bytes, over the cap of "
                                   f"{limits.max_module_bytes} bytes", plugin=name)
    functions = count_functions(wasm)
    if functions > limits.max_functions:
        raise CompileLimitExceeded(f"the module defines {functions} functions, over the cap of "
                                   f"{limits.max_functions} functions", plugin=name)


def compile_module(engine: Engine, wasm: bytes, name: str) -> Module:
    try:
        return Module(engine, wasm)
    except WasmtimeError as exc:
        raise PluginLoadError(f"module does not compile: {_first_line(exc)}", plugin=name) from None


def check_shape(module: Module, name: str, max_pages: int) -> tuple[list[ImportSpec], bool]:
    """Check imports and exports against ABI.md; returns (the imports resolved, in import order;
    whether it has gn_handle_job)."""
    imports: list[ImportSpec] = []
    for imp in module.imports:
        what = f"{imp.module}.{imp.name}"
        offered = ALLOWED_IMPORTS.get(imp.module)
        if offered is None:
            raise PluginLoadError(f"forbidden import {what}: only ABI.md's env functions "
                                  f"({', '.join(sorted(ENV_IMPORTS))}) and its {WASI_MODULE} subset may be "
                                  "imported", plugin=name)
        spec = offered.get(imp.name or "")
        if spec is None:
            raise PluginLoadError(f"forbidden import {what}: {imp.module} has no function {imp.name!r} "
                                  "(ABI.md)", plugin=name)
        ty = imp.type
        if not isinstance(ty, FuncType) or not spec.matches(ty):
            got = _sig(ty) if isinstance(ty, FuncType) else type(ty).__name__
            raise PluginLoadError(f"import {what} has the wrong type {got}; ABI.md says {spec.signature()}",
                                  plugin=name)
        imports.append(spec)
    exports = {exp.name: exp.type for exp in module.exports}
    for export, expected in REQUIRED_EXPORTS.items():
        export_type = exports.get(export)
        if export_type is None:
            raise PluginLoadError(f"missing required export {export}", plugin=name)
        if not isinstance(export_type, FuncType) or not _same_sig(export_type, expected):
            raise PluginLoadError(f"export {export} must be a function {_sig(expected)}", plugin=name)
    for export, expected in OPTIONAL_EXPORTS.items():
        found = exports.get(export)
        if found is not None and (not isinstance(found, FuncType) or not _same_sig(found, expected)):
            raise PluginLoadError(f"export {export} must be a function {_sig(expected)}", plugin=name)
    mem = exports.get("memory")
    if mem is None:
        raise PluginLoadError("missing required export memory", plugin=name)
    if not isinstance(mem, MemoryType):
        raise PluginLoadError("export memory must be a linear memory", plugin=name)
    if mem.is_64:
        raise PluginLoadError("export memory is a 64-bit memory; ABI.md requires 32-bit", plugin=name)
    if mem.is_shared:
        raise PluginLoadError("export memory is shared; ABI.md requires an unshared memory", plugin=name)
    if mem.page_size != 65536:
        raise PluginLoadError("export memory uses custom page sizes", plugin=name)
    minimum = mem.limits.min
    if minimum > max_pages:
        raise PluginLoadError(f"memory declares a minimum of {minimum} pages, over the cap of {max_pages} "
                              f"pages", plugin=name)
    return imports, "gn_handle_job" in exports


# --- compiled-artifact cache -----------------------------------------------------------------

_COMPILER = str(Path(compiler.__file__).resolve())


def compile_in_child(wasm: bytes, name: str, key: bytes, path: Path, limits: CompileLimits) -> None:
    """Compile ``wasm`` in a child process under ``limits`` and have it write the artifact for
    ``key`` to ``path``. Blocks only this thread (the GIL is free while it waits). Every failure is
    a ``PluginLoadError``; running out of CPU time or memory is a ``CompileLimitExceeded``."""
    args = [sys.executable, "-I", _COMPILER, str(path), key.hex(), str(limits.cpu_seconds),
            str(limits.memory_bytes)]
    # A backstop for a child that stops using CPU without ending; CPU time is the real bound.
    wall_seconds = limits.cpu_seconds * 4 + 30
    started = time.monotonic()
    try:
        done = subprocess.run(args, input=wasm, capture_output=True, timeout=wall_seconds, check=False)
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        raise CompileLimitExceeded(f"compiling the module took over {wall_seconds} s", plugin=name) from exc
    stderr = done.stderr.decode("utf-8", "replace").strip()
    status = done.returncode
    # Debug: a routine step of every install and first load (a failure is raised below, with why).
    logger.debug("compiled %s in a child process: exit status %s in %.2f s", name, status,
                 time.monotonic() - started)
    if status == 0:
        return
    if status == compiler.EXIT_COMPILE_ERROR:
        raise PluginLoadError(f"module does not compile: {stderr[:500]}", plugin=name)
    if status == compiler.EXIT_CACHE_UNWRITABLE:
        raise PluginLoadError(f"the compiled module cannot be written to the cache: {stderr[:500]}",
                              plugin=name)
    if status in (-signal.SIGXCPU, -signal.SIGKILL):
        raise CompileLimitExceeded(f"compiling the module used more than its {limits.cpu_seconds} s "
                                   f"of CPU time", plugin=name)
    if status == compiler.EXIT_OUT_OF_MEMORY or (status == -signal.SIGABRT and "alloc" in stderr):
        raise CompileLimitExceeded(f"compiling the module needed more than its "
                                   f"{limits.memory_bytes >> 20} MiB of memory", plugin=name)
    logger.warning("the compiler process for %s failed with exit status %s: %s", name, status,
                   stderr[-2000:])
    raise PluginLoadError(f"the compiler process failed (exit status {status})", plugin=name)


class ModuleCache:
    """``Module.serialize`` output under ``cache_dir``, keyed by wasm sha256 + wasmtime + settings.

    The key needs only the wasm's sha256 (:meth:`load_stored`), so a site whose blobs are remote
    (S3) loads a cached module without fetching its blob: the blob store is read once per machine,
    on the first load, and the cache is disposable (a lost directory is refilled from the blobs).

    A miss is compiled by a child process under ``compile_limits`` (:func:`compile_in_child`),
    which writes the file; a hit costs no process. ``Module.deserialize`` trusts its input
    completely, so a file is only handed to it when our header matches: magic, the full key, the
    payload length and the payload's sha256 (:func:`compiler.parse_artifact`). Anything else
    (corrupt, truncated, foreign, an older wasmtime) is ignored and replaced. Files are moved into
    place with ``os.replace``, so readers never see half a file. The cache directory must only be
    writable by the site itself.
    """

    def __init__(self, directory: str | os.PathLike[str], engine: Engine, settings: str,
                 compile_limits: CompileLimits | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._engine = engine
        self._settings = f"wasmtime={WASMTIME_VERSION};{settings}"
        self.compile_limits = compile_limits or CompileLimits()
        self.hits = 0  # counters for tests and the benchmark
        self.misses = 0
        self.rejected = 0

    def key(self, wasm: bytes) -> bytes:
        return self.key_for_digest(hashlib.sha256(wasm).digest())

    def key_for_digest(self, wasm_sha256: bytes) -> bytes:
        """The key of the module whose wasm has this sha256 (digest bytes) under these settings."""
        return hashlib.sha256(wasm_sha256 + self._settings.encode()).digest()

    def path(self, key: bytes) -> Path:
        return self.directory / f"{key.hex()}.gnmod"

    def load(self, wasm: bytes, name: str) -> Module:
        """The compiled module, from the cache when a trustworthy entry exists, else compiled by a
        limited child process into the cache and read back from there."""
        return self._load(self.key(wasm), lambda: wasm, name)

    def load_stored(self, wasm_sha256: str, fetch: Callable[[], bytes], name: str) -> Module:
        """The compiled module of the wasm whose sha256 (hex) is ``wasm_sha256``: from the cache
        without calling ``fetch``, else ``fetch()`` the bytes (once), check they hash to
        ``wasm_sha256`` (a ``PluginLoadError`` if not) and compile them into the cache."""
        try:
            digest = bytes.fromhex(wasm_sha256)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise PluginLoadError(f"{wasm_sha256!r} is not a sha256", plugin=name)

        def fetched() -> bytes:
            wasm = fetch()
            if hashlib.sha256(wasm).digest() != digest:
                raise PluginLoadError("the module's bytes do not match their recorded sha256", plugin=name)
            return wasm

        return self._load(self.key_for_digest(digest), fetched, name)

    def _load(self, key: bytes, wasm_of: Callable[[], bytes], name: str) -> Module:
        path = self.path(key)
        module = self._read(path, key)
        if module is not None:
            self.hits += 1
            return module
        self.misses += 1
        wasm = wasm_of()
        validate(self._engine, wasm, name)
        compile_in_child(wasm, name, key, path, self.compile_limits)
        module = self._read(path, key)
        if module is None:
            raise PluginLoadError("the compiled module could not be read back from the cache "
                                  f"directory {self.directory}", plugin=name)
        return module

    def _read(self, path: Path, key: bytes) -> Module | None:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read compiled cache %s: %s", path, exc)
            return None
        payload, why = compiler.parse_artifact(blob, key)
        if payload is None:
            self._reject(path, why)
            return None
        try:
            return Module.deserialize(self._engine, payload)
        except WasmtimeError as exc:
            self._reject(path, f"wasmtime refused it: {_first_line(exc)}")
            return None

    def _reject(self, path: Path, why: str) -> None:
        """Discard an untrustworthy file (it is never deserialized); the caller recompiles."""
        self.rejected += 1
        logger.warning("discarding compiled cache file %s (%s); recompiling", path, why)
        with contextlib.suppress(OSError):
            path.unlink()
