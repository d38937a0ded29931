"""The hook check ``plugin dev`` runs after each upload: which hooks in the manifest the dev site
does not offer.

Why after the upload, from the site: the catalogue is what the *site's* code declares
(``hooks.declare``), and only the running dev site knows it. The loop reads it from the site's API,
``GET {host}/api/hooks/`` with the same token as the upload (``--host`` is the site's address plus
the prefix it includes ``gonext_plugins.urls`` under, as for the upload). A hook the site does not
offer is a warning, not a refusal: the site may fire it without declaring it (WordPress semantics).
The rule itself is :func:`gonext_plugins.hooks.unoffered`, the same one the admin's install dialog
uses. Stdlib HTTP only, like :mod:`.upload`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from gonext_plugins import hooks
from gonext_plugins.errors import HookDeclarationError, UploadError

from .upload import USER_AGENT

HOOKS_PATH = "/api/hooks/"


def catalogue_url(host: str) -> str:
    host = host if "://" in host else f"http://{host}"
    return host.rstrip("/") + HOOKS_PATH


def fetch_json(host: str, path: str, *, token: str | None = None, timeout: float = 10.0) -> Any:
    """``GET {host}{path}`` from the dev site's API, decoded. Raises :class:`UploadError` when it
    cannot be read (the hook and the capability checks share it)."""
    host = host if "://" in host else f"http://{host}"
    url = host.rstrip("/") + path
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Token {token}"
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = " (pass --token of a user with the view_plugin permission)" if exc.code in (401, 403) else ""
        raise UploadError(f"HTTP {exc.code} from {url}{hint}", status=exc.code,
                          error=f"http_{exc.code}") from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError, ValueError) as exc:
        raise UploadError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from exc


def fetch_catalogue(host: str, *, token: str | None = None,
                    timeout: float = 10.0) -> list[hooks.DeclaredHook]:
    """The dev site's hook catalogue. Raises :class:`UploadError` when it cannot be read."""
    url = catalogue_url(host)
    data = fetch_json(host, HOOKS_PATH, token=token, timeout=timeout)
    if not isinstance(data, list):
        raise UploadError(f"{url} did not answer with a list of hooks")
    try:
        return [hooks.DeclaredHook.from_dict(entry) for entry in data]
    except HookDeclarationError as exc:
        raise UploadError(f"{url}: {exc.message}") from exc


def manifest_hooks(manifest: Any) -> list[tuple[str, str]]:
    """``(name, kind)`` of each hook of a ``Manifest`` or a raw manifest dict."""
    if isinstance(manifest, Mapping):
        return [(str(h.get("name")), str(h.get("kind"))) for h in manifest.get("hooks") or []
                if isinstance(h, Mapping)]
    return [(hook.name, hook.kind) for hook in manifest.hooks]


def warnings(manifest: Any, offered: list[hooks.DeclaredHook]) -> list[str]:
    """One line per manifest hook the site does not offer, saying why; empty when all are offered."""
    return [f"{kind} {name}: {why}" for name, kind, why in hooks.unoffered(manifest_hooks(manifest), offered)]
