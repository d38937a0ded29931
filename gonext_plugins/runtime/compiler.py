"""The engine configuration, the compiled-artifact file format, and the compiler child process.

Compiling untrusted wasm can take minutes and gigabytes (300k empty functions: 29-68 s, 2 GB), so
a module seen for the first time is compiled by this file run as a child process, under
``RLIMIT_CPU`` and ``RLIMIT_AS`` set before it reads a byte. The child writes
``Module.serialize()`` output to the compiled cache in the format below; the parent
(``loader.ModuleCache``) reads it back with the same header and checksum checks as any cache file.

This file imports only the standard library and wasmtime, and is run by path (``python -I
compiler.py``), not with ``-m``: importing the ``gonext_plugins.runtime`` package would cost the
child ~0.25 s of start-up for nothing. Parent and child build their engines with the same
:func:`new_engine`, so an artifact written by one is accepted by the other.
"""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import sys
import tempfile
from pathlib import Path

from wasmtime import Config, Engine, Module, WasmtimeError

ENGINE_SETTINGS: dict[str, object] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "wasm_memory64": False,
    "wasm_threads": False,
    "wasm_multi_memory": False,
    "cranelift_opt_level": "speed",
    # Linear memory never moves: a 32-bit memory fits the default 4 GiB reservation, so growth needs
    # no move, and the fast dispatcher keeps one base pointer per instance for its whole life.
    "memory_may_move": False,
}

# Child exit status when wasmtime refused the module (the reason is on stderr).
EXIT_COMPILE_ERROR = 3
# Child exit status when it ran out of its address-space limit inside Python.
EXIT_OUT_OF_MEMORY = 4
# Child exit status when the artifact cannot be written to the cache directory (reason on stderr).
EXIT_CACHE_UNWRITABLE = 5


def new_engine() -> tuple[Engine, str]:
    """The one engine configuration, and its description (part of every cache key)."""
    config = Config()
    for key, value in ENGINE_SETTINGS.items():
        setattr(config, key, value)
    description = ";".join(f"{k}={v}" for k, v in sorted(ENGINE_SETTINGS.items()))
    return Engine(config), description


# --- compiled-artifact files -------------------------------------------------------------------

ARTIFACT_MAGIC = b"GNPLUGC1"
ARTIFACT_HEADER = struct.Struct("<8s32s32sQ")  # magic, key, sha256(payload), payload length


def parse_artifact(blob: bytes, key: bytes) -> tuple[bytes | None, str]:
    """(payload, "") when ``blob`` is a complete artifact for ``key``; (None, why) otherwise.

    ``Module.deserialize`` trusts its input completely, so nothing reaches it unless the magic,
    the full key, the length and the sha256 of the payload all match."""
    if len(blob) < ARTIFACT_HEADER.size:
        return None, "truncated header"
    magic, file_key, digest, length = ARTIFACT_HEADER.unpack_from(blob)
    payload = blob[ARTIFACT_HEADER.size:]
    if magic != ARTIFACT_MAGIC or file_key != key:
        return None, "foreign file"
    if length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None, "corrupt payload"
    return payload, ""


def write_artifact(path: Path, key: bytes, payload: bytes) -> None:
    """Write header + payload under a temporary name and move it into place with ``os.replace``,
    so a reader (another process) never sees half a file."""
    header = ARTIFACT_HEADER.pack(ARTIFACT_MAGIC, key, hashlib.sha256(payload).digest(), len(payload))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".gnmod")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- the child process ---------------------------------------------------------------------------


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    """CPU time (all compiler threads together; SIGXCPU at the limit, SIGKILL a second later) and
    address space, both before any untrusted byte is read."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def main(argv: list[str]) -> int:
    """``compiler.py OUT_PATH KEY_HEX CPU_SECONDS MEMORY_BYTES`` with the wasm on stdin."""
    out_path, key_hex, cpu_seconds, memory_bytes = argv
    _limit(int(cpu_seconds), int(memory_bytes))
    try:
        wasm = sys.stdin.buffer.read()
        engine, _ = new_engine()
        try:
            payload = bytes(Module(engine, wasm).serialize())
        except WasmtimeError as exc:
            sys.stderr.write((str(exc).strip().splitlines() or ["wasmtime refused the module"])[0])
            return EXIT_COMPILE_ERROR
        try:
            write_artifact(Path(out_path), bytes.fromhex(key_hex), payload)
        except OSError as exc:
            sys.stderr.write(str(exc))
            return EXIT_CACHE_UNWRITABLE
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
