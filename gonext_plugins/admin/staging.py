"""Held uploads: the store between the install (or upgrade) dialog's two steps.

Why a store: an admin must see what a bundle asks for before anything is written, and the bytes
installed must be exactly the bytes reviewed. The uploaded file is kept in the plugin storage under
a random name; the form carries only a token signed with the site's ``SECRET_KEY`` naming that file,
its sha256, the user and the purpose. On confirm the file is read back and its hash compared (the
views then verify the bundle again from scratch: a key may have been revoked in the meantime).
Tokens and files expire after an hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.core import signing
from django.core.files.base import ContentFile
from django.utils import timezone

from ..errors import BlobStorageUnavailable, PendingError
from ..storage import get_storage, reaching_storage

PENDING_PREFIX = "gonext_plugins/pending"
PENDING_MAX_AGE = 3600  # seconds an uploaded bundle waits for the admin's decision
PENDING_SALT = "gonext_plugins.admin.pending"

__all__ = ["PENDING_MAX_AGE", "PENDING_PREFIX", "PENDING_SALT", "PendingError", "discard_upload",
           "fetch_upload", "hold_upload"]


def _sweep_pending() -> None:
    """Delete held uploads older than the token lifetime (nobody can confirm them any more)."""
    storage = get_storage()
    cutoff = timezone.now() - timedelta(seconds=PENDING_MAX_AGE)
    try:
        with reaching_storage(f"list {PENDING_PREFIX}"):
            names = storage.listdir(PENDING_PREFIX)[1]
    except (FileNotFoundError, NotImplementedError, BlobStorageUnavailable):
        return  # a sweep is housekeeping: the next upload tries again
    for name in names:
        path = f"{PENDING_PREFIX}/{name}"
        try:
            with reaching_storage(f"sweep {path}"):
                if storage.get_modified_time(path) < cutoff:
                    storage.delete(path)
        except (NotImplementedError, FileNotFoundError, BlobStorageUnavailable):
            continue


def hold_upload(raw: bytes, user: Any, purpose: str) -> str:
    """Keep ``raw`` until the admin confirms; return the signed token that names it."""
    _sweep_pending()
    storage = get_storage()
    with reaching_storage("hold the upload"):
        name = storage.save(f"{PENDING_PREFIX}/{secrets.token_hex(16)}.gnplugin", ContentFile(raw))
    return signing.dumps(
        {"n": name, "h": hashlib.sha256(raw).hexdigest(), "u": user.pk, "p": purpose}, salt=PENDING_SALT
    )


def _token_data(token: str, user: Any, purpose: str) -> dict[str, Any]:
    try:
        data = signing.loads(token, salt=PENDING_SALT, max_age=PENDING_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise PendingError("This upload has expired: uploads wait an hour for a decision. "
                           "Upload the file again.") from exc
    except signing.BadSignature as exc:
        raise PendingError("This upload is unknown. Upload the file again.") from exc
    name = str(data.get("n", ""))
    if (data.get("u") != user.pk or data.get("p") != purpose
            or not name.startswith(PENDING_PREFIX + "/") or ".." in name):
        raise PendingError("This upload is unknown. Upload the file again.")
    return data


def fetch_upload(token: str, user: Any, purpose: str) -> bytes:
    """The held bytes, only if they still hash to what was reviewed."""
    data = _token_data(token, user, purpose)
    storage = get_storage()
    try:
        with reaching_storage("read the held upload"), storage.open(data["n"], "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, OSError) as exc:
        raise PendingError("This upload is no longer on the server (it expired or was already used). "
                           "Upload the file again.") from exc
    if hashlib.sha256(raw).hexdigest() != data["h"]:
        discard_upload(token, user, purpose)
        raise PendingError("The uploaded file changed on the server after you reviewed it, so it was "
                           "discarded and nothing was installed. Upload the file again.")
    return raw


def discard_upload(token: str, user: Any, purpose: str) -> None:
    try:
        name = _token_data(token, user, purpose)["n"]
    except PendingError:
        return
    storage = get_storage()
    # Best effort: the decision is already made; an upload left behind is swept after an hour.
    with contextlib.suppress(BlobStorageUnavailable), reaching_storage("discard the held upload"):
        if storage.exists(name):
            storage.delete(name)
