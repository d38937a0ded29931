"""Compilation before a transaction opens, through a loader the process-local layer provides.

A first compile runs in a limited child process and may take seconds; holding the database's
write lock meanwhile would stall every other writer (on SQLite, until they fail: "database is
locked"). So operations compile (or load from the artifact cache) first and shape-check inside
their transaction. The compiler lives above this package (``gonext_plugins.loading`` owns the
process's runtime), so it is handed in by :func:`set_loader` from ``AppConfig.ready`` rather than
imported: ``lifecycle`` stays below the layer that runs plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured
from wasmtime import Module

from ..manifest import Manifest
from ..models import PluginVersion

Compiled = Mapping[str, Module]
"""Modules compiled before a transaction opened, by the sha256 of their wasm."""


class Loader(Protocol):
    """What lifecycle needs from the layer that runs plugins."""

    def compile(self, wasm: bytes, slug: str) -> Module: ...

    def compile_stored(self, slug: str, blob_name: str, wasm_sha256: str) -> Module: ...

    def check_loadable(self, slug: str, module: Module, manifest: Manifest) -> None: ...


_loader: Loader | None = None


def set_loader(loader: Loader) -> None:
    """Install the compiler (``AppConfig.ready`` passes ``gonext_plugins.loading``)."""
    global _loader
    _loader = loader


def loader() -> Loader:
    if _loader is None:
        raise ImproperlyConfigured("gonext_plugins is not ready: add it to INSTALLED_APPS "
                                   "(its AppConfig.ready installs the plugin loader)")
    return _loader


def compile_wasm(slug: str, wasm: bytes, wasm_sha256: str) -> Compiled:
    """Compile (or load from the artifact cache) before any transaction opens."""
    return {wasm_sha256: loader().compile(wasm, slug)}


def compile_version(slug: str, version: PluginVersion | None) -> Compiled:
    """:func:`compile_wasm` for an installed version: from the artifact cache, its stored blob
    (maybe remote) read only when this machine has not compiled it yet."""
    if version is None:
        return {}
    return {version.wasm_sha256: loader().compile_stored(slug, version.blob_name, version.wasm_sha256)}
