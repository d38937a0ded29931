"""Wasm blobs through Django's storage API, content-addressed by sha256.

A blob's name is derived from its hash, so two versions (or two plugins) with the same bytes share
one file, a blob is never overwritten with different content, and reading it back verifies it.
"""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

from .conf import settings
from .errors import PluginLoadError

PREFIX = "gonext_plugins/blobs"


def get_storage() -> Storage:
    storage_class = settings.STORAGE
    return storage_class() if storage_class else default_storage


def blob_name(sha256: str) -> str:
    return f"{PREFIX}/{sha256[:2]}/{sha256}.wasm"


def save_blob(data: bytes, sha256: str) -> tuple[str, bool]:
    """Store ``data`` under its hash; returns (name, created). Existing blobs are reused."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("blob does not match its sha256")
    storage = get_storage()
    name = blob_name(sha256)
    if storage.exists(name):
        return name, False
    saved = storage.save(name, ContentFile(data))
    if saved != name:  # a racing writer stored the same content first; keep one copy
        storage.delete(saved)
    return name, True


def read_blob(name: str, sha256: str, *, plugin: str | None = None) -> bytes:
    """Read a blob and check its hash: storage is outside the sandbox's trust boundary."""
    storage = get_storage()
    try:
        with storage.open(name, "rb") as handle:
            data = handle.read()
    except (OSError, FileNotFoundError) as exc:
        raise PluginLoadError(f"wasm blob {name} cannot be read: {exc}", plugin=plugin)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PluginLoadError(f"wasm blob {name} does not match its recorded sha256", plugin=plugin)
    return data


def delete_blob(name: str) -> None:
    storage = get_storage()
    if storage.exists(name):
        storage.delete(name)
