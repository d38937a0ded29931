"""Wasm blobs through Django's storage API, content-addressed by sha256.

Where: ``STORAGES["gonext_plugins"]`` (Django's storage aliases: S3 through django-storages, or any
backend), else the older ``GONEXT_PLUGINS["STORAGE"]`` class path, else ``default_storage``. Nothing
here assumes a local disk (no ``storage.path()``), so the blob store may be remote and shared by
every machine; compiled modules are cached per machine by ``runtime.loader.ModuleCache``.

A blob's name is derived from its hash, so two versions (or two plugins) with the same bytes share
one file, a blob is never overwritten with *different* content, and reading it back verifies it. A
stored blob that no longer matches its name (a torn write, a damaged disk) is rewritten when the
same content is saved again, instead of being reused and failing every later load.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage, storages

from .conf import settings
from .errors import BlobStorageUnavailable, PluginError, PluginLoadError

PREFIX = "gonext_plugins/blobs"
CHUNK = 1024 * 1024
STORAGE_ALIAS = "gonext_plugins"
"""The ``STORAGES`` alias of the blob store."""

logger = logging.getLogger("gonext_plugins.storage")


def get_storage() -> Storage:
    """The blob store: ``GONEXT_PLUGINS["STORAGE"]`` when set (kept for existing sites; check W012
    warns when both are set), else ``STORAGES["gonext_plugins"]``, else the default storage."""
    storage_class = settings.STORAGE
    if storage_class:
        return storage_class()
    if STORAGE_ALIAS in django_settings.STORAGES:
        return storages[STORAGE_ALIAS]
    return default_storage


@contextmanager
def reaching_storage(what: str, *, plugin: str | None = None) -> Iterator[None]:
    """Turn whatever a storage backend raises (``OSError`` from a disk; botocore's errors from S3;
    each backend its own, with no common base) into :class:`BlobStorageUnavailable`, so an outage
    is a typed error with a 503, never a traceback. A missing file stays ``FileNotFoundError``:
    callers decide what absence means."""
    try:
        yield
    except (PluginError, FileNotFoundError):
        raise
    except Exception as exc:
        logger.warning("blob storage failed to %s: %s: %s", what, type(exc).__name__, exc)
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BlobStorageUnavailable(
            f"the plugin blob storage failed to {what} ({type(exc).__name__}: {detail}); "
            "retry when it is reachable", plugin=plugin) from exc


def blob_name(sha256: str) -> str:
    return f"{PREFIX}/{sha256[:2]}/{sha256}.wasm"


def _stored_sha256(storage: Storage, name: str) -> str | None:
    """The sha256 of a stored file, read in chunks; None when it is gone."""
    digest = hashlib.sha256()
    try:
        with reaching_storage(f"read {name}"), storage.open(name, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def save_blob(data: bytes, sha256: str) -> tuple[str, bool]:
    """Store ``data`` under its hash; returns (name, created). An existing blob is reused only when
    its content still hashes to its name; a damaged one is replaced (and counts as created)."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("blob does not match its sha256")
    storage = get_storage()
    name = blob_name(sha256)
    with reaching_storage(f"store {name}"):
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
        with reaching_storage(f"read {name}", plugin=plugin), storage.open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise PluginLoadError(f"wasm blob {name} cannot be read: {exc}", plugin=plugin) from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PluginLoadError(f"wasm blob {name} does not match its recorded sha256", plugin=plugin)
    return data


def delete_blob(name: str) -> None:
    storage = get_storage()
    with reaching_storage(f"delete {name}"):
        if storage.exists(name):
            storage.delete(name)
