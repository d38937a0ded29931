"""Upload a dev build to a running site: ``POST {host}/_/plugins/dev/install``.

Why stdlib only: the dev loop must run wherever the site's package does, with no HTTP client to
install. The request is multipart/form-data with two file parts, ``manifest`` (application/json,
``manifest.json``) and ``wasm`` (application/wasm, ``plugin.wasm``), filenames included so Django
puts both in ``request.FILES``; ``Authorization: Token <token>`` when a token is given. A refusal
comes back in the API's error shape ``{"error", "detail", "problems"}`` and is raised as
:class:`UploadError` carrying those fields. No Django here.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from gonext_plugins.errors import UploadError

INSTALL_PATH = "/_/plugins/dev/install"
DEFAULT_HOST = "http://127.0.0.1:8000"
USER_AGENT = "gonext-plugin-dev/1"


@dataclass(frozen=True)
class Part:
    name: str
    filename: str
    content_type: str
    data: bytes


def encode_multipart(parts: list[Part], boundary: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type header) of a multipart/form-data request (RFC 7578)."""
    boundary = boundary or f"gonext-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for part in parts:
        for value in (part.name, part.filename):
            if any(ch in value for ch in '"\r\n'):
                raise ValueError(f"multipart name/filename may not contain quotes or newlines: {value!r}")
        chunks.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{part.name}"; filename="{part.filename}"\r\n'
            f"Content-Type: {part.content_type}\r\n\r\n".encode()
        )
        if boundary.encode() in part.data:
            raise ValueError("boundary occurs in a part; use another boundary")
        chunks.append(part.data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def install_url(host: str) -> str:
    host = host if "://" in host else f"http://{host}"
    return host.rstrip("/") + INSTALL_PATH


def install(host: str, manifest: bytes, wasm: bytes, *, token: str | None = None, timeout: float = 60.0,
            boundary: str | None = None) -> dict[str, Any]:
    """Upload and return the site's JSON answer (``{}`` when it sent none). Raises UploadError."""
    url = install_url(host)
    body, content_type = encode_multipart([
        Part("manifest", "manifest.json", "application/json", manifest),
        Part("wasm", "plugin.wasm", "application/wasm", wasm),
    ], boundary)
    headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _refusal(url, exc.code, exc.read(), exc.headers.get("Content-Type", "")) from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UploadError(f"cannot reach {url}: {reason}; is the site running (in dev mode)?") from exc
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"body": raw.decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"body": data}


def _refusal(url: str, status: int, raw: bytes, content_type: str) -> UploadError:
    text = raw.decode("utf-8", "replace")
    data: Any = None
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if isinstance(data, dict) and ("error" in data or "detail" in data):
        error = str(data.get("error") or f"http_{status}")
        detail = str(data.get("detail") or "")
        raw_problems = data.get("problems")
        problems = raw_problems if isinstance(raw_problems, list) else []
        lines = "".join(f"\n  {_problem(p)}" for p in problems)
        # The code is the error's own (``describe_error`` prints it first): the message is the rest.
        return UploadError(f"{detail}{_API_HINTS.get(error, '')}{lines}", status=status, error=error,
                           detail=detail, problems=problems, body=text)
    hint = ""
    if status == 404:
        hint = " (no dev install endpoint: is the site in dev mode, and is --host right?)"
    elif status in (401, 403):
        hint = " (pass --token with an API token that may install plugins)"
    return UploadError(f"HTTP {status} from {url}{hint}", status=status, error=f"http_{status}",
                       detail=text[:500], body=text)


_API_HINTS = {
    "not_authenticated": " (set GONEXT_TOKEN or pass --token: an API token of a user who may install, "
                         "grant and activate plugins; `manage.py drf_create_token <user>` makes one)",
    "authentication_failed": " (the token is not one of this site's: `manage.py drf_create_token <user>`)",
    "permission_denied": " (the token's user needs install, grant and activate permissions, or to be a "
                         "superuser)",
    "unknown_capability": " (the capabilities the site knows: GET /api/capabilities/ on it)",
}
"""What to do about the refusals an author meets first, after the site's own sentence."""


def _problem(problem: Any) -> str:
    if isinstance(problem, dict):
        where = problem.get("path") or problem.get("capability") or ""
        what = problem.get("message") or problem.get("detail") or ""
        return f"{where}: {what}" if where and what else json.dumps(problem)
    return str(problem)
