"""The author's subcommands of ``manage.py plugin``: ``new`` (scaffold) and ``dev`` (the build loop).

A mixin beside ``plugin.py``, like ``_plugin_lifecycle.py``: only option parsing here; the work is
in :mod:`gonext_plugins.devtools` (which does not import Django, so it also runs without a site).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from gonext_plugins.devtools import builders, devloop, scaffold, upload
from gonext_plugins.devtools import lang as langs
from gonext_plugins.devtools.extras import MissingAuthorPackage, author_module

DEV_SUBCOMMANDS: dict[str, str] = {
    "new": ("scaffold a plugin that builds and runs out of the box "
            f"(--lang {'|'.join(scaffold.SCAFFOLD_LANGUAGES)})"),
    "dev": "build, check and upload a plugin project on every save; print the capability diff, tail logs",
}


class DevCommands:
    """``args_<name>`` / ``handle_<name>`` for ``new`` and ``dev`` (see ``plugin.py``)."""

    stdout: Any
    stderr: Any

    # --- new -------------------------------------------------------------------------------------

    def args_new(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("directory", help="where to create the plugin (must not exist, or be empty)")
        parser.add_argument("--lang", choices=scaffold.SCAFFOLD_LANGUAGES, default="zig")
        parser.add_argument("--slug", help="the manifest slug (default: from the directory name)")
        parser.add_argument("--name", help="the plugin's display name (default: from the slug)")

    def handle_new(self, *, directory: str, lang: str, slug: str | None, name: str | None, **_: Any) -> None:
        written = scaffold.create(directory, lang, slug=slug, name=name)
        listing = "\n".join(f"  {path}" for path in written)
        self.stdout.write(f"created a {lang} plugin in {directory}:\n{listing}\n"
                          f"next: manage.py plugin dev {directory} --build-only   (then without --build-only "
                          "against a running dev site)")

    # --- pack DIRECTORY (``plugin.py``'s ``pack`` asks for the build) ---------------------------------

    def build_release(self, directory: str) -> tuple[bytes, bytes, Path]:
        """The release build ``pack`` ships (optimized, into ``build/release/``, never the dev
        build): (manifest bytes, wasm bytes, the default bundle path)."""
        if not Path(directory).is_dir():
            raise CommandError(f"usage: {directory} is not a directory", returncode=2)
        built, checked = builders.build(directory, release=True, source_map=False)
        self.stdout.write(f"built {built.wasm_path} ({len(checked.wasm):,} bytes, {built.lang}, release"
                          f"{', cached' if built.cached else ''}) in {built.seconds:.2f} s")
        manifest = checked.manifest
        return (checked.manifest_bytes, checked.wasm,
                built.wasm_path.parent / f"{manifest.slug}-{manifest.version}.gnplugin")

    # --- dev -------------------------------------------------------------------------------------

    def args_dev(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("project_dir", help="the plugin project (main.zig, plugin.wat, Cargo.toml, ...)")
        parser.add_argument("--host", default=os.environ.get("GONEXT_DEV_HOST", upload.DEFAULT_HOST),
                            help="the running dev site (default: %(default)s)")
        parser.add_argument("--token", default=os.environ.get("GONEXT_TOKEN"),
                            help="API token with install permission (default: $GONEXT_TOKEN)")
        parser.add_argument("--watch", action=argparse.BooleanOptionalAction, default=True,
                            help="rebuild and upload on every change (default: on)")
        parser.add_argument("--build-only", action="store_true",
                            help="build and check once; no upload, no watching")
        parser.add_argument("--lang", choices=(langs.AUTO, *langs.LANGUAGES), default=langs.AUTO,
                            help="the project's language (default: detect from its files)")
        parser.add_argument("--logs", action="store_true", help="tail the plugin's log stream")
        parser.add_argument("--optimize", choices=("Debug", "ReleaseSafe", "ReleaseFast", "ReleaseSmall"),
                            help="Zig only: the dev build's optimize mode (default Debug, the fastest to "
                                 "compile); release builds, for every language, come from `plugin pack DIR`")
        parser.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                            help="ANSI colours (default: when stdout is a terminal and NO_COLOR is unset)")

    def handle_dev(self, *, project_dir: str, host: str, token: str | None, watch: bool, build_only: bool,
                   lang: str, logs: bool, optimize: str | None, color: bool | None, **_: Any) -> None:
        if not Path(project_dir).is_dir():
            raise CommandError(f"usage: {project_dir} is not a directory", returncode=2)
        try:  # before the first build: a missing package is said at once, not after it
            if watch and not build_only:
                author_module("watchfiles", "plugin dev (watching; --no-watch builds and uploads once)")
            if logs:
                author_module("websockets", "plugin dev --logs")
        except MissingAuthorPackage as exc:
            raise CommandError(f"missing_package: {exc}", returncode=1) from None
        options = devloop.DevOptions(Path(project_dir), host=host, token=token or None, watch=watch,
                                     build_only=build_only, lang=lang, logs=logs, optimize=optimize,
                                     color=color)
        out = getattr(self.stdout, "_out", self.stdout)  # Django's OutputWrapper adds a newline per write
        status = devloop.DevLoop(options, out).run()
        if status:
            raise CommandError("dev_failed: the first build or upload failed (see above)", returncode=status)
