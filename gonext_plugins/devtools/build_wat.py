"""The WAT builder behind ``compile_project``: ``main.wat`` (or the one ``.wat`` file) through
wasmtime's own ``wat2wasm``.

Why so little: WAT is already the module; there is no optimizer, so the dev and the release
builds are the same bytes (in their own output paths), and the name section that ``$names``
produce is what trap reports show. No Django here.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

from gonext_plugins.devtools.fsutil import forget_build_key, write_atomic
from gonext_plugins.errors import BuildError


def build(project: Path, out: Path, *, source_map: bool, release: bool, timeout: float) -> bool:
    """Compile the project's WAT into ``out``; never cached (wat2wasm takes milliseconds)."""
    files = sorted(p for p in project.iterdir() if p.is_file() and p.suffix == ".wat")
    if not files:
        raise BuildError(f"no .wat file in {project}")
    if len(files) > 1:
        main = project / "main.wat"
        if not main.is_file():
            raise BuildError(f"{len(files)} .wat files in {project} ({', '.join(p.name for p in files)}) and "
                             "no main.wat; name the plugin's module main.wat")
        files = [main]
    source = files[0]
    try:
        wasm = wasmtime.wat2wasm(source.read_text(encoding="utf-8"))
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
        raise BuildError(f"{source.name} does not compile:\n{exc}", stderr=str(exc)) from exc
    write_atomic(out, bytes(wasm))
    forget_build_key(out)
    return False

