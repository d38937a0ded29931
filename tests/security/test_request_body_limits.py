"""Request bodies are bounded where they arrive, before anything buffers them (issue #13, class 3).

A real server process (``tests/api/server.py``) on a free loopback port gets 200 MiB multipart POSTs,
once with a declared ``Content-Length`` and once chunked (no length), to an anonymous page and to
every bundle upload URL. Each must be answered 413 in the API's error shape, and the server's peak
resident memory while they run must stay within 50 MiB of what it was before. The bodies are
generated lazily from one 1 MiB block, so the test itself never holds them. A normal upload under
the cap still installs a plugin, and a chunked body under the cap still reaches the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gonext_plugins import signing
from gonext_plugins.asgi import RequestBodyLimit
from gonext_plugins.conf import DEFAULTS, MiB

from ..api.helpers import signed_bundle
from ..api.server import WS_MAX_MESSAGE_BYTES, LiveServer

pytestmark = pytest.mark.slow

HUGE = 200 * MiB
BLOCK = b"\0" * MiB
BOUNDARY = "gnboundary7d9f"
GROWTH_BOUND_KIB = 50 * 1024  # the bound: RSS grows under 50 MiB while the huge bodies arrive

# (path, authenticated): an anonymous page, and each URL that takes a bundle upload.
TARGETS = [
    ("/posts/hello/", False),
    ("/api/plugins/", True),
    ("/api/plugins/demo/upgrade/", True),
    ("/admin/gonext_plugins/plugin/install/", False),
    ("/_/plugins/dev/install", False),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("body-limits")).start()
    try:
        yield live
    finally:
        live.stop()


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in KiB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Start ``VmHWM`` over from the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def multipart_parts() -> tuple[bytes, bytes]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"huge.gnplugin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail


def body_blocks(size: int) -> Iterator[bytes]:
    """A multipart body whose file part is ``size`` zero bytes, yielded block by block."""
    head, tail = multipart_parts()
    yield head
    left = size
    while left > 0:
        block = BLOCK if left >= len(BLOCK) else BLOCK[:left]
        left -= len(block)
        yield block
    yield tail


def post_raw(url: str, path: str, *, size: int, chunked: bool,
             token: str | None) -> tuple[int, dict[str, Any]]:
    """POST a ``size``-byte multipart upload over a raw socket: one thread writes the body while this
    one reads the answer, as a browser does, so an early answer is read even though the body is cut
    off (``requests`` would stop at the broken pipe and never read it). Returns (status, JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    head, tail = multipart_parts()
    headers = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}",
               f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
    if chunked:
        headers.append("Transfer-Encoding: chunked")
    else:
        headers.append(f"Content-Length: {len(head) + size + len(tail)}")
    if token:
        headers.append(f"Authorization: Token {token}")
    request_head = ("\r\n".join(headers) + "\r\n\r\n").encode()

    sock = socket.create_connection((host, int(port)), timeout=60)
    stop = threading.Event()

    def write_body() -> None:
        with contextlib.suppress(OSError):  # the server closing mid-body is the expected outcome
            sock.sendall(request_head)
            for block in body_blocks(size):
                if stop.is_set():
                    return
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")

    writer = threading.Thread(target=write_body, daemon=True)
    writer.start()
    try:
        status, payload = read_response(sock)
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        writer.join(60)
    return status, payload


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The first HTTP response on ``sock``: its status and its body parsed as JSON (``{}`` when the
    body is not JSON)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed the connection without an answer: {data[:300]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    try:
        return status, json.loads(body[:length] or b"{}")
    except ValueError:
        return status, {}


def test_normal_uploads_under_the_cap_still_work(server: LiveServer) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {server.token}"
    private, public = signing.generate_key()
    assert session.post(f"{server.url}/api/keys/", json={"name": "Body", "public_key": public},
                        timeout=30).status_code == 201
    done = session.post(f"{server.url}/api/plugins/", files={"bundle": ("demo.gnplugin",
                        signed_bundle(private, slug="demo"))}, data={"grant": "kv"}, timeout=30)
    assert done.status_code == 201, done.text[:500]
    # Just under the request cap but over the bundle cap: it reaches the bundle reader, which refuses
    # it as a bundle (400), not the body guard (413).
    near_cap = b"\0" * (DEFAULTS["MAX_REQUEST_BYTES"] - 64 * 1024)
    refused = session.post(f"{server.url}/api/plugins/", files={"bundle": ("big.gnplugin", near_cap)},
                           timeout=60)
    assert refused.status_code == 400 and refused.json()["error"] == "bundle_too_large", refused.text[:500]
    # A small chunked body is passed on to the app (which answers for itself: not a 413).
    status, payload = post_raw(server.url, "/api/plugins/", size=1024, chunked=True, token=None)
    assert status in (400, 401, 403), (status, payload)


def test_huge_bodies_are_refused_before_they_are_buffered(server: LiveServer) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    # Warm up every target once with a small body, so lazily imported code is not counted as growth.
    for path, authenticated in TARGETS:
        post_raw(server.url, path, size=1024, chunked=False, token=server.token if authenticated else None)
    baseline = memory_kib(pid, "VmRSS")
    peak_was_reset = reset_peak(pid)

    answers = []
    for path, authenticated in TARGETS:
        for chunked in (False, True):
            status, payload = post_raw(server.url, path, size=HUGE, chunked=chunked,
                                       token=server.token if authenticated else None)
            peak = memory_kib(pid, "VmHWM") if peak_was_reset else memory_kib(pid, "VmRSS")
            answers.append((path, "chunked" if chunked else "declared", status, payload.get("error"),
                            f"peak RSS +{(peak - baseline) // 1024} MiB"))
            assert server.proc.poll() is None, f"the server died:\n{server.log()[-3000:]}"
            assert peak - baseline < GROWTH_BOUND_KIB, answers
            assert status == 413, answers
            assert {"error", "detail", "problems"} <= set(payload), (payload, answers)
            assert payload["error"] == "request_too_large", (payload, answers)

    print("\n".join(map(str, answers)))
    # The server still serves.
    assert requests.get(f"{server.url}/posts/hello/", timeout=30).status_code == 200


def test_websocket_messages_over_the_cap_close_the_connection(server: LiveServer) -> None:
    """The server caps client WebSocket messages (``WS_MAX_MESSAGE_BYTES``, 64 KiB): the log page's
    commands fit; a 4 MiB message closes the connection with 1009 (message too big) instead of being
    assembled in memory and handed to the consumer."""
    headers = {"Authorization": f"Token {server.token}", "Origin": server.url}
    url = server.url.replace("http://", "ws://") + "/_/plugins/dev/logs/demo/"
    with connect(url, additional_headers=headers, open_timeout=10, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "backlog"
        ws.send(json.dumps({"min_level": 1, "filter": "x" * 1000}))
        assert json.loads(ws.recv(timeout=10))["type"] == "backlog"  # a normal command still works
        ws.send(json.dumps({"min_level": 0, "filter": "x" * (WS_MAX_MESSAGE_BYTES * 64)}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value


def run_guarded(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> list[dict[str, Any]]:
    """Drive ``RequestBodyLimit(app)`` in this process with ``chunks`` as the request body; the
    messages that reach the client."""
    incoming = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(RequestBodyLimit(app)(scope, receive, send))
    return sent


class EchoApp:
    """Reads the whole body, as Django does, then answers 200 with its length (and notes what it saw)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            self.events.append(message["type"])
            if message["type"] == "http.disconnect":
                break
            size += len(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.mark.parametrize("content_length", [None, b"junk", b"-5"])
def test_a_streamed_or_badly_declared_body_is_cut_at_the_cap(content_length: bytes | None) -> None:
    limit = DEFAULTS["MAX_REQUEST_BYTES"]
    app = EchoApp()
    headers = [(b"content-length", content_length)] if content_length is not None else []
    sent = run_guarded(app, headers, [BLOCK] * (limit // len(BLOCK)) + [b"x", b"never read"])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "request_too_large"
    # The app was told the client left; its own answer afterwards went nowhere.
    assert app.events[-1] == "http.disconnect"


def test_a_body_at_the_cap_reaches_the_app_whole() -> None:
    limit = DEFAULTS["MAX_REQUEST_BYTES"]
    sent = run_guarded(EchoApp(), [(b"content-length", str(limit).encode())], [BLOCK] * (limit // len(BLOCK)))
    assert sent[0]["status"] == 200 and sent[1]["body"] == str(limit).encode()
