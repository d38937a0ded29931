"""Build a Rust plugin (``Cargo.toml`` + ``src/lib.rs``) with ``rustc`` and the bundled ``gonext`` crate.

Why ``rustc`` and not ``cargo``: there is no crates.io here and the SDK has no dependencies, so two
``rustc`` runs (the SDK as an rlib, cached, then the plugin as a ``cdylib``) are all a build is, and
they work offline with Debian's ``rustc`` + ``libstd-rust-dev-wasm32``. The project still looks like
a normal Cargo project: ``Cargo.toml`` names the package, the ``cdylib`` and the ``gonext`` path
dependency, and ``[package.metadata.gonext] target`` picks ``wasm32-unknown-unknown`` (the default:
no WASI imports) or ``wasm32-wasi``.

Why toolchain discovery: the first ``rustc`` on ``PATH`` is often rustup's, without any wasm target.
:func:`find_rustc` tries ``$GONEXT_RUSTC``, ``rustc`` on ``PATH`` and ``/usr/bin/rustc`` and takes
the first whose sysroot has the target's ``libstd``. No Django here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gonext_plugins.devtools.fsutil import is_up_to_date, record_build_key, run_tool, staged_output
from gonext_plugins.devtools.sdks import sdk_dir
from gonext_plugins.errors import BuildError, ToolchainMissing

TARGETS = ("wasm32-unknown-unknown", "wasm32-wasi")
DEFAULT_TARGET = TARGETS[0]
SYSTEM_RUSTC = "/usr/bin/rustc"
SDK_CRATE = "gonext"
# Dev: fast, with DWARF line tables (post_process turns them into the source map). Release (`pack`):
# small; LTO over the SDK and std, debug info stripped but the name section kept for trap reports.
DEV_FLAGS = ("-C", "opt-level=1", "-C", "debuginfo=1")
RELEASE_FLAGS = ("-C", "opt-level=s", "-C", "lto=fat", "-C", "codegen-units=1", "-C", "strip=debuginfo")


@dataclass(frozen=True)
class Project:
    """What the builder reads from ``Cargo.toml``."""

    crate_name: str
    edition: str
    source: Path
    target: str


def read_project(project: Path) -> Project:
    """``Cargo.toml`` checked for what a plugin needs; a BuildError says what to change."""
    try:
        cargo = tomllib.loads((project / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read Cargo.toml: {exc}") from exc
    package = cargo.get("package", {})
    lib = cargo.get("lib", {})
    if "cdylib" not in lib.get("crate-type", []):
        raise BuildError('Cargo.toml needs [lib] crate-type = ["cdylib"] to produce a wasm module')
    extra = sorted(set(cargo.get("dependencies", {})) - {SDK_CRATE})
    if extra:
        raise BuildError(f"Cargo.toml depends on {', '.join(extra)}: plugins are built offline with the "
                         f"{SDK_CRATE} SDK only (no crates.io); vendor the code into src/")
    target = package.get("metadata", {}).get("gonext", {}).get("target", DEFAULT_TARGET)
    if target not in TARGETS:
        raise BuildError(f"[package.metadata.gonext] target = {target!r}: choose {' or '.join(TARGETS)}")
    source = project / lib.get("path", "src/lib.rs")
    if not source.is_file():
        raise BuildError(f"no {source.relative_to(project)} in {project}")
    name = str(lib.get("name") or package.get("name") or project.name).replace("-", "_")
    return Project(name, str(package.get("edition", "2021")), source, target)


@lru_cache(maxsize=32)
def _has_target(rustc: str, target: str) -> bool:
    """True when ``rustc``'s sysroot holds ``libstd`` for ``target`` (rustup's proxy prints a
    target-libdir even for a target it does not have, so the directory's contents decide)."""
    try:
        done = subprocess.run([rustc, "--print", "target-libdir", "--target", target], capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    libdir = Path(done.stdout.strip())
    return done.returncode == 0 and libdir.is_dir() and any(libdir.glob("libstd-*.rlib"))


def candidates() -> list[str]:
    """The rustc binaries to try, in order, without duplicates."""
    found = [os.environ.get("GONEXT_RUSTC") or None, shutil.which("rustc"),
             SYSTEM_RUSTC if os.access(SYSTEM_RUSTC, os.X_OK) else None]
    seen: list[str] = []
    for path in found:
        if path and path not in seen:
            seen.append(path)
    return seen


def find_rustc(target: str = DEFAULT_TARGET) -> str:
    """The first candidate rustc that has ``target``; ToolchainMissing (naming those tried) otherwise."""
    tried = candidates()
    for rustc in tried:
        if _has_target(rustc, target):
            return rustc
    where = f" (tried {', '.join(tried)})" if tried else " (no rustc found)"
    if target == DEFAULT_TARGET:
        hint = (f"`apt install rustc libstd-rust-dev-wasm32`, or `rustup target add {target}`; "
                "GONEXT_RUSTC may name the rustc to use")
    else:
        hint = f"`rustup target add {target}` (Debian: `apt install libstd-rust-dev-wasm32`)"
    raise ToolchainMissing(f"no rustc with the {target} target{where}", hint=hint)


def _fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def _tree(root: Path) -> list[bytes]:
    """Every ``.rs`` file under ``root`` and its ``Cargo.toml``, as (name, bytes) parts for a key."""
    parts = []
    for path in sorted([*root.rglob("*.rs"), root / "Cargo.toml"]):
        if path.is_file() and "target" not in path.relative_to(root).parts[:1]:
            parts += [str(path.relative_to(root)).encode(), path.read_bytes()]
    return parts


def _rustc_identity(rustc: str) -> bytes:
    stat = os.stat(shutil.which(rustc) or rustc)
    return f"{os.path.realpath(rustc)}:{stat.st_size}:{stat.st_mtime_ns}".encode()


def _compile(cmd: list[str], cwd: Path, timeout: float, what: Path) -> None:
    done = run_tool(cmd, cwd, timeout, "rustc")
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        raise BuildError(f"rustc of {what} failed (exit {done.returncode}):\n{output}", stderr=output,
                         command=cmd)


def _sdk_rlib(rustc: str, target: str, flags: tuple[str, ...], cache: Path, timeout: float) -> Path:
    """The SDK compiled once per (rustc, target, mode, SDK source): an edit recompiles only the plugin."""
    sdk = sdk_dir("rust")
    key = _fingerprint(_rustc_identity(rustc), target.encode(), " ".join(flags).encode(), *_tree(sdk))
    folder = cache / key[:16]
    rlib = folder / f"lib{SDK_CRATE}.rlib"
    if rlib.is_file():
        return rlib
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sdk-", dir=cache))
    try:
        # Run outside the SDK: rustc records a source under its working directory as a relative path,
        # which a line table would then resolve against the plugin's project (SDK frames as src/lib.rs).
        source = sdk / "src" / "lib.rs"
        _compile([rustc, "--edition", "2021", "--crate-type", "rlib", "--crate-name", SDK_CRATE,
                  "--target", target, *flags, "--color", "never", "--out-dir", str(tmp), str(source)],
                 tmp, timeout, source)
        os.replace(tmp / rlib.name, rlib)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rlib


def build(project: Path, out: Path, *, source_map: bool, release: bool, timeout: float) -> bool:
    """Compile ``project`` to ``out``; True when the cache answered (nothing compiled).

    ``release=False`` is the dev build (opt-level 1 with line tables, so traps map to
    ``src/lib.rs:LINE``); ``release=True`` the small one ``pack`` ships. ``source_map=False`` leaves
    the debug info out of a dev build too.
    """
    config = read_project(project)
    rustc = find_rustc(config.target)
    flags = RELEASE_FLAGS if release else (DEV_FLAGS if source_map else ("-C", "opt-level=1"))
    sdk = sdk_dir("rust")
    key = _fingerprint(_rustc_identity(rustc), config.target.encode(), " ".join(flags).encode(),
                       config.crate_name.encode(), config.edition.encode(), *_tree(project), *_tree(sdk))
    if is_up_to_date(out, key):
        return True
    out.parent.mkdir(parents=True, exist_ok=True)
    rlib = _sdk_rlib(rustc, config.target, flags, out.parent / ".rust-sdk", timeout)
    with staged_output(out) as tmp:
        # Run in the project with a relative source path: DWARF (and panics) then name src/lib.rs.
        cmd = [rustc, "--edition", config.edition, "--crate-type", "cdylib", "--crate-name",
               config.crate_name, "--target", config.target, *flags, "--color", "never",
               "-L", f"dependency={rlib.parent}", "--extern", f"{SDK_CRATE}={rlib}", "-o", str(tmp),
               os.path.relpath(config.source, project)]
        _compile(cmd, project, timeout, config.source)
    record_build_key(out, key)
    return False
