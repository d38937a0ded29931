"""Blob handling for lifecycle operations: a blob written by a failed operation is removed again,
and blobs are deleted only after the rows that referenced them are gone for good."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from ..bundle import Bundle
from ..errors import BlobStorageUnavailable
from ..models import PluginVersion
from ..storage import PREFIX, delete_blob, get_storage, reaching_storage, save_blob

T = TypeVar("T")

logger = logging.getLogger("gonext_plugins.storage")


def run_guarded(bundle: Bundle, body: Callable[[str], T]) -> T:
    """Save the blob, run ``body(blob_name)`` in a transaction, undo the blob on failure."""
    name, created = save_blob(bundle.wasm, bundle.wasm_sha256)
    try:
        with transaction.atomic():
            return body(name)
    except BaseException:
        # Remove the blob only if this operation created it and no version (of any plugin) uses it.
        if created and not PluginVersion.objects.filter(blob_name=name).exists():
            _delete_or_leave_for_gc(name)
        raise


def remove_unreferenced_on_commit(names: Iterable[str]) -> None:
    """Once the transaction commits, delete each blob of ``names`` no version references any more
    (two versions, or two plugins, may share one blob)."""
    blobs = set(names)
    if not blobs:
        return

    def remove() -> None:
        for name in blobs:
            if not PluginVersion.objects.filter(blob_name=name).exists():
                _delete_or_leave_for_gc(name)

    transaction.on_commit(remove)


def _delete_or_leave_for_gc(name: str) -> None:
    """Delete a blob nothing references; with the storage down, leave it to ``plugin gc``: the
    operation that made it unreferenced has committed (or failed for its own reason) and must not
    report a storage error instead."""
    try:
        delete_blob(name)
    except BlobStorageUnavailable as exc:
        logger.warning("blob %s left for `plugin gc`: %s", name, exc)


def collect_blobs(grace_seconds: float = 3600, *, dry_run: bool = False) -> list[str]:
    """Delete stored blobs no version references (left behind when a caller's own transaction
    rolled back after an install wrote its blob, or a process died between writing a blob and
    committing its version). Blobs younger than ``grace_seconds`` are kept: another process may be
    installing them right now. Returns the names deleted (with ``dry_run``: that would be).
    ``manage.py plugin gc`` runs it."""
    storage = get_storage()
    with reaching_storage(f"list {PREFIX}"):
        try:
            folders, _ = storage.listdir(PREFIX)
        except (FileNotFoundError, NotImplementedError):
            return []
    referenced = set(PluginVersion.objects.values_list("blob_name", flat=True))
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    deleted = []
    for folder in folders:
        with reaching_storage(f"list {PREFIX}/{folder}"):
            names = storage.listdir(f"{PREFIX}/{folder}")[1]
        for name in names:
            path = f"{PREFIX}/{folder}/{name}"
            if path in referenced:
                continue
            with reaching_storage(f"collect {path}"):
                try:
                    if grace_seconds and storage.get_modified_time(path) > cutoff:
                        continue
                except NotImplementedError:
                    pass
                if not dry_run:
                    storage.delete(path)
            deleted.append(path)
    return sorted(deleted)
