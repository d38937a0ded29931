"""Wasm blobs through Django's storage API, content-addressed by sha256.

A blob's name is derived from its hash, so two versions (or two plugins) with the same bytes share
one file, a blob is never overwritten with *different* content, and reading it back verifies it. A
stored blob that no longer matches its name (a torn write, a damaged disk) is rewritten when the
same content is saved again, instead of being reused and failing every later load.
"""

from __future__ import annotations

import hashlib
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

from .conf import settings
from .errors import PluginLoadError

PREFIX = "gonext_plugins/blobs"
CHUNK = 1024 * 1024

logger = logging.getLogger("gonext_plugins.storage")


def get_storage() -> Storage:
    storage_class = settings.STORAGE
    return storage_class() if storage_class else default_storage


def blob_name(sha256: str) -> str:
    return f"{PREFIX}/{sha256[:2]}/{sha256}.wasm"


def _stored_sha256(storage: Storage, name: str) -> str | None:
    """The sha256 of a stored file, read in chunks; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with storage.open(name, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def save_blob(data: bytes, sha256: str) -> tuple[str, bool]:
    """Store ``data`` under its hash; returns (name, created). An existing blob is reused only when
    its content still hashes to its name; a damaged one is replaced (and counts as created)."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("blob does not match its sha256")
    storage = get_storage()
    name = blob_name(sha256)
    if storage.exists(name):
        if _stored_sha256(storage, name) == sha256:
            return name, False
        logger.warning("blob %s does not match its sha256; rewriting it", name)
        storage.delete(name)
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
    except OSError as exc:  # FileNotFoundError is one
        raise PluginLoadError(f"wasm blob {name} cannot be read: {exc}", plugin=plugin) from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PluginLoadError(f"wasm blob {name} does not match its recorded sha256", plugin=plugin)
    return data


def delete_blob(name: str) -> None:
    storage = get_storage()
    if storage.exists(name):
        storage.delete(name)
