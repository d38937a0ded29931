"""Build an AssemblyScript plugin with the project's own ``asc`` and the SDK shipped in this package.

Why the builder passes the flags (not the author's asconfig.json): a module that imports
``env.abort`` cannot load, so ``--use abort=...`` (and ``trace``, ``seed``) must always be there,
and ``--path`` makes ``import ... from "gonext"`` resolve to ``sdk/assemblyscript/gonext/`` without
copying the SDK into the project. The compiler comes from the project's ``node_modules`` (one
``npm install``, which installs :data:`ASSEMBLYSCRIPT_VERSION` as the scaffold's package.json pins).

Source map: asc writes ``plugin.wasm.map`` with ``sourceRoot`` ``./plugin`` and marks code it has
no location for (the shadow-stack bookkeeping around a call) as unmapped, so a caller's frame had
no line. The builder rewrites the map: sources relative to the project (``assembly/index.ts``),
unmapped segments dropped so an offset maps to the statement it belongs to, and the SDK's abort
handler in ``ignoreList`` so a trap report starts at the frame that called abort. No Django here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from gonext_plugins.devtools.fsutil import forget_build_key, is_up_to_date, record_build_key, run_tool
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.diagnostics import sourcemap
from gonext_plugins.errors import BuildError, ToolchainMissing

# The one pin: the scaffold's package.json, the tests and the docs all read it from here.
ASSEMBLYSCRIPT_VERSION = "0.28.20"
SDK_PACKAGE = "gonext"  # `import ... from "gonext"` -> <sdk>/gonext/index.ts
ABORT_SOURCE = f"~lib/{SDK_PACKAGE}/abort.ts"  # the SDK file the trap report hides
RUNTIME_ALIASES = ("abort=gnAbort", "trace=gnTrace", "seed=gnSeed")
DEV_FLAGS = ("--debug",)
# Measured on the reading-time example: -O3 with shrink level 1 is within a few percent of -O3's
# speed at a smaller module; assertions stay (a plugin's failed assert must trap, not go on).
RELEASE_FLAGS = ("--optimizeLevel", "3", "--shrinkLevel", "1")
DEFAULT_ENTRY = "assembly/index.ts"
INSTALL_HINT = (f"run `npm install` in the plugin directory (its package.json pins assemblyscript "
                f"{ASSEMBLYSCRIPT_VERSION}), or `npm install -D assemblyscript@{ASSEMBLYSCRIPT_VERSION}`")


def find_asc(project: Path) -> Path:
    """The ``asc`` entry point of the nearest ``node_modules`` at or above ``project`` (node's own
    lookup order); ToolchainMissing with the install hint when there is none."""
    for folder in (project, *project.parents):
        candidate = folder / "node_modules" / "assemblyscript" / "bin" / "asc.js"
        if candidate.is_file():
            return candidate
    raise ToolchainMissing("the AssemblyScript compiler (asc) is not installed for this plugin",
                           hint=INSTALL_HINT)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissing("node not found",
                               hint=f"install Node.js 18 or later (https://nodejs.org), then {INSTALL_HINT}")
    return node


def compiler_flags(*, source_map: bool, release: bool) -> list[str]:
    """Every flag the builder adds to the author's asconfig.json (CLI flags take precedence)."""
    sdk = sdk_dir("assemblyscript")
    flags = ["--path", str(sdk)]
    for alias in RUNTIME_ALIASES:
        name, target = alias.split("=")
        flags += ["--use", f"{name}=~lib/{SDK_PACKAGE}/abort/{target}"]
    flags += list(RELEASE_FLAGS if release else DEV_FLAGS)
    if source_map:
        flags.append("--sourceMap")
    return flags


def _entries(project: Path) -> tuple[list[str], list[str]]:
    """(config flags, entry files): asconfig.json's own ``entries`` when it lists some."""
    config_path = project / "asconfig.json"
    if not config_path.is_file():
        return [], [DEFAULT_ENTRY]
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read asconfig.json: {exc}") from exc
    if not isinstance(config, dict):
        raise BuildError("asconfig.json must be a JSON object")
    return ["--config", "asconfig.json"], ([] if config.get("entries") else [DEFAULT_ENTRY])


def _cache_key(project: Path, asc: Path, flags: list[str]) -> str:
    """Every input of a compile: the project's sources and configs, the SDK, the compiler, the flags."""
    digest = hashlib.sha256()
    files = [p for p in project.rglob("*") if p.is_file()
             and not {"node_modules", "build", ".git"} & set(p.relative_to(project).parts)
             and (p.suffix == ".ts" or p.name in ("asconfig.json", "package.json"))]
    files += [p for p in sdk_dir("assemblyscript").rglob("*.ts")]
    for path in sorted(files):
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((asc.parent.parent / "package.json").read_bytes())
    digest.update("\0".join(flags).encode())
    return digest.hexdigest()


def build(project: Path, out: Path, *, source_map: bool, release: bool, timeout: float) -> bool:
    """Compile ``project`` to ``out`` (and ``out.map`` with ``source_map``); True when the cache
    answered and nothing was compiled."""
    node = node_binary()
    asc = find_asc(project)
    config, entries = _entries(project)
    flags = compiler_flags(source_map=source_map, release=release)
    key = _cache_key(project, asc, flags)
    map_path = out.with_name(out.name + ".map")
    if is_up_to_date(out, key) and (map_path.is_file() or not source_map):
        return True
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".asc-", dir=out.parent) as tmp_dir:
        tmp = Path(tmp_dir) / out.name
        cmd = [node, str(asc), *entries, *config, *flags, "--outFile", str(tmp), "--noColors"]
        done = run_tool(cmd, project, timeout, "asc")
        if done.returncode != 0 or not tmp.is_file():
            output = (done.stderr.strip() or done.stdout.strip())
            raise BuildError(f"asc failed (exit {done.returncode}):\n{output}", stderr=output, command=cmd)
        tmp_map = tmp.with_name(tmp.name + ".map")
        forget_build_key(out)
        if source_map and tmp_map.is_file():
            tmp_map.write_text(json.dumps(rewrite_map(json.loads(tmp_map.read_text(encoding="utf-8")))))
            os.replace(tmp_map, map_path)
        else:
            with contextlib.suppress(FileNotFoundError):
                map_path.unlink()
        os.replace(tmp, out)  # after the map: post_process keeps a map no older than the module
    record_build_key(out, key)
    return False


def rewrite_map(data: dict[str, object]) -> dict[str, object]:
    """asc's map made fit for trap reports: project-relative sources (no ``./plugin`` root), no
    unmapped segments (each offset maps to the last located instruction before it), the SDK's
    abort handler ignore-listed. The sources' contents are dropped (the files are the project's)."""
    data = {**data, "sourceRoot": ""}
    data.pop("sourcesContent", None)
    smap = sourcemap.SourceMap.parse(data)
    for line, segments in smap.lines.items():
        smap.lines[line] = [seg for seg in segments if seg.source is not None]
    smap.ignore_list = [i for i, source in enumerate(smap.sources) if source == ABORT_SOURCE]
    return smap.to_dict()
