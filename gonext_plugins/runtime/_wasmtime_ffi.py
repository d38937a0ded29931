"""A thin cffi (ABI mode) view of the libwasmtime that the ``wasmtime`` wheel ships.

Why: wasmtime-py's ``Func.__call__`` re-reads the function type and boxes every value on each
call (tens of µs); the same C call through cffi with cached argument arrays costs well under 1 µs.
We dlopen the *same* shared library wasmtime-py already loaded (``dlopen`` hands back the loaded
copy), so stores, functions and memories created through wasmtime-py are valid here.

The struct layouts mirror wasmtime-py's generated ``_bindings.py`` for wasmtime 50; ``_check_layout``
compares them against wasmtime-py's ctypes definitions at import, so a wheel upgrade that changes
them fails loudly instead of corrupting memory. The declarations (``CDEF``) are loaded already parsed
from the generated ``_wasmtime_cdef`` module when it matches them (see ``load_ffi``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib
import io
import tempfile
from pathlib import Path
from typing import Any

import cffi
import wasmtime
from wasmtime import _ffi as _wffi

CDEF = """
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct { size_t size; char *data; } wasm_byte_vec_t;
typedef struct { uint64_t store_id; void *__private; } wasmtime_func_t;
typedef struct {
    struct { uint64_t store_id; uint32_t __private1; } _anon_1;
    uint32_t __private2;
} wasmtime_memory_t;
typedef union {
    int32_t i32; int64_t i64; float f32; double f64; uint8_t v128[16];
    uint32_t anyref; uint32_t externref; uint32_t exnref; void *funcref;
} wasmtime_val_raw_t;

wasmtime_error_t *wasmtime_func_call_unchecked(wasmtime_context_t *store, const wasmtime_func_t *func,
    wasmtime_val_raw_t *args_and_results, size_t args_and_results_len, wasm_trap_t **trap);
char *wasmtime_memory_data(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
size_t wasmtime_memory_data_size(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
wasmtime_error_t *wasmtime_context_set_fuel(wasmtime_context_t *store, uint64_t fuel);
wasmtime_error_t *wasmtime_context_get_fuel(const wasmtime_context_t *context, uint64_t *fuel);
void wasmtime_context_set_epoch_deadline(wasmtime_context_t *context, uint64_t ticks_beyond_current);

void wasmtime_error_delete(wasmtime_error_t *error);
void wasmtime_error_message(const wasmtime_error_t *error, wasm_byte_vec_t *message);
void wasm_trap_delete(wasm_trap_t *trap);
void wasm_byte_vec_delete(wasm_byte_vec_t *vec);
"""

GENERATED_MODULE = "gonext_plugins.runtime._wasmtime_cdef"
"""``CDEF`` already parsed: cffi's out-of-line ABI mode (``set_source(name, None)``), a plain Python
module written by :func:`write_generated_module` and shipped in the package. Parsing ``CDEF`` at
import takes pycparser about 45 ms (more on a busy machine) in every fresh process; importing the
generated module takes well under one."""


def cdef_digest() -> str:
    """What the generated module must have been built from (``CDEF`` and the cffi version)."""
    return hashlib.sha256(f"{cffi.__version__}\n{CDEF}".encode()).hexdigest()


def load_ffi(module_name: str = GENERATED_MODULE) -> tuple[Any, str]:
    """The FFI for ``CDEF`` and where it came from: ``"generated"`` when ``module_name`` exists and
    was built from this ``CDEF`` with this cffi, else ``"cdef"`` (parsed now): a stale or missing
    module costs start-up time, never correctness."""
    try:
        generated = importlib.import_module(module_name)
    except ImportError:  # not generated (or an older cffi backend refusing its format)
        generated = None
    if generated is not None and getattr(generated, "CDEF_DIGEST", None) == cdef_digest():
        return generated.ffi, "generated"
    parsed = cffi.FFI()
    parsed.cdef(CDEF)
    return parsed, "cdef"


def write_generated_module(path: Path | None = None) -> Path:
    """(Re)write the generated module after a change to ``CDEF`` or a cffi upgrade (a test compares
    the shipped file with a fresh one): ``python -c "from gonext_plugins.runtime._wasmtime_ffi
    import write_generated_module as w; w()"``."""
    target = path or Path(__file__).with_name(GENERATED_MODULE.rsplit(".", 1)[1] + ".py")
    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source(GENERATED_MODULE, None)
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        emitted = Path(scratch) / "out.py"
        builder.emit_python_code(str(emitted))  # prints "generating ..."
        code = emitted.read_text()
    header = ("# auto-generated file: gonext_plugins.runtime._wasmtime_ffi.write_generated_module\n"
              "# ruff: noqa: E501\n")
    code = code.replace("# auto-generated file\n", header, 1)
    target.write_text(f"{code}\nCDEF_DIGEST = {cdef_digest()!r}\n")
    return target


ffi, FFI_SOURCE = load_ffi()

LIBRARY_PATH = Path(_wffi.filename)
lib: Any = ffi.dlopen(str(LIBRARY_PATH))
"""Every call through ``lib`` releases the GIL and takes it back: right for running long guest code
(it runs in parallel, and a Python epoch ticker keeps running), wrong for the calls below."""

# --- calls that keep the GIL --------------------------------------------------------------------
# Setting fuel or a deadline, or reading a memory's size, takes nanoseconds. Releasing the GIL around
# them hands it to any thread waiting for it, and the caller then waits until that thread gives it
# back: with two threads making small hook calls, that made them slower than one. A ``PyDLL``
# function is called with the GIL held. Guest code runs through ``held_func_call`` only.
_held = ctypes.PyDLL(str(LIBRARY_PATH))


def _keeping_gil(name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(_held, name)
    function.restype = restype
    function.argtypes = argtypes
    return function


_ptr, _u64 = ctypes.c_void_p, ctypes.c_uint64
held_set_fuel = _keeping_gil("wasmtime_context_set_fuel", _ptr, _ptr, _u64)
"""(context address, fuel) -> address of a ``wasmtime_error_t`` or None."""
held_get_fuel = _keeping_gil("wasmtime_context_get_fuel", _ptr, _ptr, _ptr)
"""(context address, address of a uint64) -> address of a ``wasmtime_error_t`` or None."""
held_set_epoch_deadline = _keeping_gil("wasmtime_context_set_epoch_deadline", None, _ptr, _u64)
held_memory_data_size = _keeping_gil("wasmtime_memory_data_size", ctypes.c_size_t, _ptr, _ptr)
held_memory_data = _keeping_gil("wasmtime_memory_data", _ptr, _ptr, _ptr)
held_caller_context = _keeping_gil("wasmtime_caller_context", _ptr, _ptr)
"""(address of a ``wasmtime_caller_t``) -> address of its ``wasmtime_context_t``: inside a host function."""
held_func_call = _keeping_gil("wasmtime_func_call_unchecked", _ptr, _ptr, _ptr, _ptr, ctypes.c_size_t, _ptr)
"""(context, func, args_and_results, len, trap slot addresses) -> address of a ``wasmtime_error_t`` or
None: guest code run *keeping* the GIL, for calls ``gil.GilPolicy`` judged short, and only while a
native epoch ticker (``epoch_timer``) bounds them. Host functions the guest calls re-take the GIL
re-entrantly (cffi callbacks, like ctypes ones, use ``PyGILState_Ensure``)."""


_prepared_lib = ctypes.PyDLL(str(LIBRARY_PATH))  # a second view: its functions get no argtypes


def _prepared(function: Any) -> Any:
    """A second handle on ``function`` without ``argtypes``, for a hot path whose every argument is
    a ready ctypes object (:func:`held_arg`, ``c_uint64``, ``c_size_t``): ctypes then passes each
    as it is, skipping the per-argument conversion checks (about a sixth of such a call). Given a
    plain int it would pass a C ``int``, so nothing else may use these."""
    prepared = getattr(_prepared_lib, function.__name__)
    prepared.restype = function.restype
    return prepared


prepared_set_fuel = _prepared(held_set_fuel)
prepared_get_fuel = _prepared(held_get_fuel)
prepared_set_epoch_deadline = _prepared(held_set_epoch_deadline)
prepared_memory_data_size = _prepared(held_memory_data_size)
prepared_func_call = _prepared(held_func_call)


def address_of(pointer: Any) -> int:
    """A cffi pointer as the integer the ``held_*`` functions take."""
    return int(ffi.cast("uintptr_t", pointer))


def held_arg(pointer: Any) -> ctypes.c_void_p:
    """A cffi pointer as a ready ``held_*`` argument: ctypes passes a ``c_void_p`` object as is,
    while an int is converted on every call (about 0.1 µs each, several per hook call)."""
    return ctypes.c_void_p(address_of(pointer))


def error_at(address: int) -> Any:
    """The ``wasmtime_error_t*`` a ``held_*`` function returned, as cffi data for ``fault_from``."""
    return ffi.cast("wasmtime_error_t *", address)


def _check_layout() -> None:
    """Refuse to run if our struct copies disagree with wasmtime-py's own definitions."""
    pairs = [("wasmtime_func_t", _wffi.wasmtime_func_t), ("wasmtime_memory_t", _wffi.wasmtime_memory_t),
             ("wasmtime_val_raw_t", _wffi.wasmtime_val_raw_t)]
    for name, ctype in pairs:
        if ffi.sizeof(name) != ctypes.sizeof(ctype):
            raise ImportError(f"libwasmtime's {name} layout changed; update _wasmtime_ffi")


_check_layout()


def context_of(store: wasmtime.Store) -> Any:
    """The store's ``wasmtime_context_t*`` as cffi data (valid as long as ``store`` lives)."""
    address = ctypes.cast(store._context(), ctypes.c_void_p).value
    return ffi.cast("wasmtime_context_t *", address)


def _copy_struct(ctype_value: ctypes.Structure, cname: str) -> Any:
    """Copy a small by-value handle struct (func, memory) from ctypes into cffi-owned memory."""
    size = ctypes.sizeof(ctype_value)
    out = ffi.new(cname + " *")
    ffi.memmove(out, ctypes.string_at(ctypes.addressof(ctype_value), size), size)
    return out


def func_of(func: wasmtime.Func) -> Any:
    """A ``wasmtime_func_t*`` for an exported function (a handle: store id + index, no ownership)."""
    return _copy_struct(func._func, "wasmtime_func_t")


def memory_of(memory: wasmtime.Memory) -> Any:
    """A ``wasmtime_memory_t*`` for an exported memory."""
    return _copy_struct(memory._memory, "wasmtime_memory_t")


def consume_error(error: Any) -> str:
    """Read and free a ``wasmtime_error_t*`` (for the rare errors of fuel calls)."""
    vec = ffi.new("wasm_byte_vec_t *")
    lib.wasmtime_error_message(error, vec)
    lib.wasmtime_error_delete(error)
    text = ffi.unpack(vec.data, vec.size).decode("utf-8", "replace") if vec.size else ""
    lib.wasm_byte_vec_delete(vec)
    return text


def fault_from(error: Any, trap_slot: Any) -> BaseException:
    """The wasmtime-py exception that ``Func.__call__`` would have raised for this failed call.

    Ownership of the C error or trap moves into the returned ``WasmtimeError`` or ``Trap`` (wasmtime-py
    frees it when the object is collected), so nothing leaks and the shared ``trap_error`` sees
    exactly what it sees on the slow path, frames included. ``trap_slot`` is cleared for reuse.
    """
    trap = trap_slot[0]
    trap_slot[0] = ffi.NULL
    if error != ffi.NULL:
        if trap != ffi.NULL:  # not expected from wasmtime, but never leak it
            lib.wasm_trap_delete(trap)
        address = int(ffi.cast("uintptr_t", error))
        return wasmtime.WasmtimeError._from_ptr(ctypes.cast(address, ctypes.POINTER(_wffi.wasmtime_error_t)))
    address = int(ffi.cast("uintptr_t", trap))
    return wasmtime.Trap._from_ptr(ctypes.cast(address, ctypes.POINTER(_wffi.wasm_trap_t)))


def set_fuel(context: Any, fuel: int) -> None:
    """Set the store's fuel (raises ValueError when the engine does not meter fuel)."""
    error = lib.wasmtime_context_set_fuel(context, fuel)
    if error != ffi.NULL:
        raise ValueError(consume_error(error))


def get_fuel(context: Any, out: Any) -> int:
    """Remaining fuel; ``out`` is a reusable ``uint64_t*`` (saves an allocation per call)."""
    error = lib.wasmtime_context_get_fuel(context, out)
    if error != ffi.NULL:
        raise ValueError(consume_error(error))
    return int(out[0])
