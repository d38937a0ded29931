"""``http.fetch``: an HTTP request to a host the manifest lists and the admin granted.

``{"url", "method"?, "headers"?, "body"?}`` -> ``{"status", "headers", "body", "url"}`` plus
``"bodyBase64"`` when the body is not UTF-8 (``body`` is then the bytes decoded with replacement
characters; ``bodyBase64`` is exact).

Every address a name resolves to is checked (``netpolicy``) and then really connected to, so DNS
rebinding cannot reach a refused address; redirects stay on the same host; the whole fetch,
redirects and name lookups included, runs within HTTP_TIMEOUT and what is left of the guest call's
deadline.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from .. import netpolicy
from ..conf import settings
from ..errors import (
    FetchBusy,
    FetchDenied,
    FetchError,
    FetchTimeout,
    HostFunctionError,
    ResponseTooLarge,
)
from ..host_rules import (
    DEFAULT_PORTS,
    FORBIDDEN_HEADERS,
    MAX_REQUEST_HEADERS,
    METHODS,
    allowed_hosts,
    fetch_request,
    fetch_target,
)
from ..host_rules import FetchTarget as _Target
from ..runtime import time_left
from ._payload import slug as slug_of

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
__all__ = ["DEFAULT_PORTS", "FORBIDDEN_HEADERS", "MAX_REDIRECTS", "MAX_REQUEST_HEADERS", "METHODS",
           "REDIRECT_STATUSES", "AddressInfo", "http_fetch", "lookups_running", "resolve_host"]


def _allowed(plugin: Any) -> set[tuple[str, int | None]]:
    """(host, port or None) pairs the plugin may reach: the manifest's list that the admin granted,
    as the registry computed it (``LoadedPlugin.hosts``); re-read on every call."""
    return allowed_hosts(getattr(getattr(plugin, "context", None), "hosts", ()) or ())


def _target(url: str, allowed: set[tuple[str, int | None]], slug: str) -> _Target:
    return fetch_target(url, allowed, slug, allow_private=settings.HTTP_FETCH_ALLOW_PRIVATE)


AddressInfo = tuple[int, int, int, str, Any]  # one getaddrinfo entry


def _system_resolve(host: str, port: int) -> list[AddressInfo]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [(family, kind, proto, name, sockaddr) for family, kind, proto, name, sockaddr in infos]


# The one place http.fetch turns a name into addresses. A hook rather than a direct call so a test
# can answer for names no DNS knows; whatever it answers is checked and then really connected to.
resolve_host: Callable[[str, int], list[AddressInfo]] = _system_resolve

# A lookup runs on its own daemon thread so that the fetch waits for it at most its remaining budget:
# getaddrinfo cannot be interrupted, and a nameserver that never answers would hold the call for the
# resolver's whole timeout (5 s per attempt), past the guest call's deadline. A lookup still running
# when its fetch gives up is left to finish on its own; these bound how many may be running, per
# plugin and in the process, so a flood of fetches to a dead nameserver cannot pile up threads.
MAX_LOOKUPS_PER_PLUGIN = 4
MAX_LOOKUPS = 32
_lookups_lock = threading.Lock()
_lookups: dict[str, int] = {}  # plugin slug -> its lookups still running


def lookups_running(slug: str | None = None) -> int:
    """How many name lookups are running, for one plugin or in all."""
    with _lookups_lock:
        return _lookups.get(slug, 0) if slug is not None else sum(_lookups.values())


def _claim_lookup(slug: str) -> bool:
    with _lookups_lock:
        if _lookups.get(slug, 0) >= MAX_LOOKUPS_PER_PLUGIN or sum(_lookups.values()) >= MAX_LOOKUPS:
            return False
        _lookups[slug] = _lookups.get(slug, 0) + 1
        return True


def _release_lookup(slug: str) -> None:
    with _lookups_lock:
        if _lookups[slug] > 1:
            _lookups[slug] -= 1
        else:
            del _lookups[slug]


def _resolve(host: str, port: int, timeout: float, budget: float, slug: str) -> list[AddressInfo]:
    """``resolve_host(host, port)`` on a lookup thread, waited for at most ``timeout`` seconds."""
    if not _claim_lookup(slug):
        raise FetchBusy(f"http.fetch: too many name lookups still running (at most {MAX_LOOKUPS_PER_PLUGIN} "
                        f"per plugin, {MAX_LOOKUPS} in all); is the nameserver of {host} answering?",
                        plugin=slug)
    resolver = resolve_host  # read here: the thread calls the hook in place when the fetch began
    done = threading.Event()
    outcome: list[list[AddressInfo] | BaseException] = []

    def lookup() -> None:
        try:
            outcome.append(resolver(host, port))
        except BaseException as exc:  # handed to the fetch, or dropped with the thread if it left
            outcome.append(exc)
        finally:
            _release_lookup(slug)
            done.set()

    try:
        threading.Thread(target=lookup, name=f"gonext-plugins lookup {host}", daemon=True).start()
    except RuntimeError as exc:  # the process cannot start another thread
        _release_lookup(slug)
        raise FetchBusy(f"http.fetch: cannot look up {host} now: {exc}", plugin=slug) from exc
    if not done.wait(max(0.0, timeout)):
        raise FetchTimeout(f"http.fetch: looking up {host} timed out after {budget:g} s", plugin=slug)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _addresses(host: str, port: int, timeout: float, budget: float, slug: str) -> list[tuple[int, Any]]:
    """Resolve once, check every address (netpolicy), and return them for the connect, so a DNS
    answer that changes between check and connect (rebinding) cannot reach a refused address. One
    refused address refuses the host: a name that also points inside is not a public service. The
    lookup is waited for at most ``timeout`` seconds (what is left of the fetch's budget)."""
    try:
        infos = _resolve(host, port, timeout, budget, slug)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"http.fetch: cannot resolve {host}: {exc}", plugin=slug) from exc
    allow_private = settings.HTTP_FETCH_ALLOW_PRIVATE
    result = []
    for family, _, _, _, sockaddr in infos:
        refusal = netpolicy.address_refusal(sockaddr[0], allow_private=allow_private)
        if refusal:
            hint = "" if allow_private else " (an intranet site may allow private addresses with " \
                "GONEXT_PLUGINS['HTTP_FETCH_ALLOW_PRIVATE'])"
            raise FetchDenied(f"http.fetch: {host} resolves to {refusal}, which plugins may not "
                              f"reach{hint}", plugin=slug)
        result.append((family, sockaddr))
    if not result:
        raise FetchError(f"http.fetch: {host} has no address", plugin=slug)
    return result


def _connect(addresses: list[tuple[int, Any]], timeout: float) -> socket.socket:
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses resolved and checked beforehand; never via a proxy.

    ``abort()`` (from the watchdog thread) shuts the socket down so a blocked read returns at
    once: that is how the total timeout holds even against a server trickling bytes.
    """

    def __init__(self, host: str, port: int, addresses: list[tuple[int, Any]], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self._budget = timeout  # http.client types its own ``timeout`` as optional
        self.aborted = False

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._budget)

    def abort(self) -> None:
        self.aborted = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw fd, also under TLS


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def __init__(self, host: str, port: int, addresses: list[tuple[int, Any]], timeout: float) -> None:
        super().__init__(host, port, addresses, timeout)
        self._context = ssl.create_default_context()

    def connect(self) -> None:
        sock = _connect(self._addresses, self._budget)
        self.sock = sock  # so abort() can interrupt the handshake
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _budget(plugin: Any) -> float:
    """Seconds for the whole fetch, redirects included: HTTP_TIMEOUT, but never past what is left of
    the guest call's hard deadline (time in host functions counts against the call, and the call
    ends as a timeout when the fetch returns late anyway, so waiting longer only holds a worker)."""
    budget = float(settings.HTTP_TIMEOUT)
    left = time_left()
    if left is not None:
        return min(budget, left)
    limits = getattr(plugin, "limits", None)  # called outside a guest call (site code, tests)
    hard_ms = getattr(limits, "hard_timeout_ms", None)
    if hard_ms:
        budget = min(budget, hard_ms / 1000)
    return budget


def _send(target: _Target, method: str, headers: dict[str, str], body: bytes | None, deadline: float,
          budget: float, slug: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request/response, the body read in chunks and refused past HTTP_MAX_RESPONSE_BYTES."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchTimeout(f"http.fetch: timed out after {budget:g} s", plugin=slug)
    addresses = _addresses(target.host, target.port, remaining, budget, slug)
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = cls(target.host, target.port, addresses, max(0.001, deadline - time.monotonic()))
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), conn.abort)
    watchdog.daemon = True
    watchdog.start()
    cap = settings.HTTP_MAX_RESPONSE_BYTES
    try:
        conn.request(method, target.path, body=body, headers=headers)
        response = conn.getresponse()
        length = response.getheader("content-length")
        if method != "HEAD" and length and length.strip().isdigit() and int(length) > cap:
            raise ResponseTooLarge(f"http.fetch: {target.url} answered {length} bytes, over "
                                   f"HTTP_MAX_RESPONSE_BYTES={cap}", plugin=slug)
        chunks: list[bytes] = []
        size = 0
        if method != "HEAD" and response.status not in REDIRECT_STATUSES:
            while True:
                chunk = response.read(min(64 * 1024, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    raise ResponseTooLarge(f"http.fetch: the response from {target.url} is over "
                                           f"HTTP_MAX_RESPONSE_BYTES={cap}", plugin=slug)
        if conn.aborted:
            raise FetchTimeout(f"http.fetch: {target.url} timed out after {budget:g} s", plugin=slug)
        return response.status, response.getheaders(), b"".join(chunks)
    except HostFunctionError:
        raise
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        if conn.aborted or isinstance(exc, TimeoutError):
            raise FetchTimeout(f"http.fetch: {target.url} timed out after {budget:g} s", plugin=slug) from exc
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            raise FetchError(f"http.fetch: TLS error with {target.host}: {exc}", plugin=slug) from exc
        raise FetchError(f"http.fetch: {method} {target.url} failed: {type(exc).__name__}: {exc}",
                         plugin=slug) from exc
    finally:
        watchdog.cancel()
        conn.close()


def http_fetch(plugin: Any, payload: Any) -> dict[str, Any]:
    """An HTTP request to a host the manifest lists and the admin granted (see the module doc)."""
    slug = slug_of(plugin)
    request = fetch_request(payload, slug)
    url, method, headers, body = request.url, request.method, dict(request.headers), request.body
    if not any(name.lower() == "user-agent" for name in headers):
        headers["User-Agent"] = f"gonext-plugins (plugin {slug})"

    allowed = _allowed(plugin)
    target = _target(url, allowed, slug)
    origin = target
    budget = _budget(plugin)
    deadline = time.monotonic() + budget
    for hop in range(MAX_REDIRECTS + 1):
        status, raw_headers, content = _send(target, method, headers, body, deadline, budget, slug)
        location = next((v for k, v in raw_headers if k.lower() == "location"), None)
        if status not in REDIRECT_STATUSES or location is None:
            break
        if hop == MAX_REDIRECTS:
            raise FetchError(f"http.fetch: more than {MAX_REDIRECTS} redirects from {url}", plugin=slug)
        new_url = urljoin(target.url, location)
        new_host = (urlsplit(new_url).hostname or "").rstrip(".").lower()
        if new_host != origin.host:
            raise FetchDenied(f"http.fetch: {target.url} redirects to another host ({new_url}); only "
                              "redirects to the same host are followed", plugin=slug)
        new = _target(new_url, allowed, slug)
        if target.scheme == "https" and new.scheme == "http":
            raise FetchDenied(f"http.fetch: {target.url} redirects from https to http ({new_url})",
                              plugin=slug)
        if status == 303 or (status in (301, 302) and method == "POST"):
            method = "HEAD" if method == "HEAD" else "GET"
            body = None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        target = new

    result: dict[str, Any] = {"status": status, "url": target.url, "headers": {}}
    for name, value in raw_headers:
        lower = name.lower()
        result["headers"][lower] = f"{result['headers'][lower]}, {value}" if lower in result["headers"] \
            else value
    try:
        result["body"] = content.decode("utf-8")
    except UnicodeDecodeError:
        result["body"] = content.decode("utf-8", "replace")
        result["bodyBase64"] = base64.b64encode(content).decode("ascii")
    return result
