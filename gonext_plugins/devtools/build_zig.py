"""The Zig builder behind ``compile_project``: a fast dev build with line tables, a release build
for ``pack``.

Why two modes: the dev loop recompiles on every save, so its build is the mode that compiles
fastest while keeping DWARF line tables (the source map of a trap report comes from them);
``pack`` ships what runs fastest on every page view. Each goes to its own output path, so one
never overwrites the other. The flags, the cache and the compiler itself are :mod:`zigbuild`'s.
No Django here.
"""

from __future__ import annotations

from pathlib import Path

from gonext_plugins.devtools import zigbuild
from gonext_plugins.devtools.fsutil import build_key_file
from gonext_plugins.errors import BuildError

# Measured on the scaffold and the SEO example (docs/plugin-authors.md, "How fast is the loop"):
# Debug compiles in about half the CPU time of ReleaseSafe and keeps the safety checks
# (bounds, overflow, unreachable -> a readable panic).
DEV_OPTIMIZE = "Debug"
RELEASE_OPTIMIZE = zigbuild.DEFAULT_OPTIMIZE


def build(project: Path, out: Path, *, source_map: bool, release: bool, timeout: float,
          optimize: str | None = None) -> bool:
    """Compile ``project/main.zig`` into ``out``; True when the cache answered (nothing compiled).

    ``optimize`` overrides the mode (``plugin dev --optimize``). DWARF is kept only for a source
    map; ``post_process`` turns it into one and strips it.
    """
    if not (project / "main.zig").is_file():
        raise BuildError(f"no main.zig in {project}: Zig plugins are built from main.zig with the "
                         "gonext SDK (build.zig is not run)")
    mode = optimize or (RELEASE_OPTIMIZE if release else DEV_OPTIMIZE)
    key_file = build_key_file(out)
    before = key_file.read_text() if key_file.is_file() and out.is_file() else None
    zigbuild.build_zig(project, out, optimize=mode, timeout=timeout, debug_info=source_map)
    return before is not None and key_file.read_text() == before
