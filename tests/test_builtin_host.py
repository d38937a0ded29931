"""The built-in host functions (kv.*, http.fetch, log) through real active plugins and real guest
calls: ``tests/guests/hostcall_guest.wat`` runs a filter whose hook name is the host function and
whose value is the payload, and answers ``{"value": <result>}`` or ``{"value": {"hc": -N}}``.

HTTP tests only ever talk to servers on 127.0.0.1 started here.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gonext_plugins import capabilities, lifecycle
from gonext_plugins.errors import ManifestError, PluginTrap
from gonext_plugins.models import PluginKV
from gonext_plugins.registry import LoadedPlugin, registry
from tests.conftest import guest_wasm
from tests.test_cross_process import postgres_url  # noqa: F401  (a fixture)

# Real commits only where threads or other processes write (marked on those tests); elsewhere the
# lifecycle's on-commit work runs through captured on-commit callbacks.
pytestmark = pytest.mark.django_db

DENIED = {"hc": -5}
BAD_PAYLOAD = {"hc": -3}
ERROR = {"hc": -1}
BAD_PAYLOAD = {"hc": -3}  # ABI.md: not an object, or a missing or unknown field


@cache
def _wasm() -> bytes:
    return guest_wasm("hostcall_guest")


@pytest.fixture
def plugin(make_bundle, django_capture_on_commit_callbacks) -> Callable[..., LoadedPlugin]:  # type: ignore[no-untyped-def]
    """``plugin(slug="demo", caps=("kv",), grant=None, optional=(), hosts=(), grant_hosts=None)``:
    install and activate a hostcall_guest plugin and return it as the registry loaded it."""

    def factory(slug: str = "demo", caps: tuple[str, ...] = ("kv",), grant: tuple[str, ...] | None = None,
                optional: tuple[str, ...] = (), hosts: tuple[str, ...] = (),
                grant_hosts: tuple[str, ...] | None = None) -> LoadedPlugin:
        fields: dict[str, Any] = {"slug": slug, "capabilities": list(caps)}
        if optional:
            fields["optionalCapabilities"] = list(optional)
        if hosts:
            fields["http"] = {"allowedHosts": list(hosts)}
        bundle = make_bundle(wasm=_wasm(), **fields)
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(bundle, caps if grant is None else grant, "tests", activate=True,
                              hosts=grant_hosts)
        loaded = registry.get(slug)
        assert loaded is not None
        return loaded

    return factory


@pytest.fixture(autouse=True)
def _intranet_site(settings) -> None:  # type: ignore[no-untyped-def]
    """The servers here listen on 127.0.0.1, which http.fetch reaches only on a site that opted in
    (tests/security/test_http_fetch_addresses.py holds the default: never)."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "HTTP_FETCH_ALLOW_PRIVATE": True}


def call(loaded: LoadedPlugin, function: str, payload: Any) -> Any:
    """One guest call that makes one host call; the host's answer, or {"hc": -N}."""
    return loaded.invoke("filter", function, payload)


def logged(caplog: pytest.LogCaptureFixture, *needles: str) -> bool:
    return any(all(n in record.getMessage() for n in needles) for record in caplog.records)


def rows(slug: str) -> dict[str, Any]:
    return dict(PluginKV.objects.filter(plugin_slug=slug).values_list("key", "value"))


# --- kv --------------------------------------------------------------------------------------


def test_kv_set_get_delete_round_trip(plugin) -> None:  # type: ignore[no-untyped-def]
    demo = plugin()
    assert call(demo, "kv.get", {"key": "greeting"}) == {"found": False, "value": None}
    assert call(demo, "kv.set", {"key": "greeting", "value": {"text": "héllo", "n": [1, 2.5, None]}}) \
        == {"ok": True}
    assert call(demo, "kv.get", {"key": "greeting"}) == \
        {"found": True, "value": {"text": "héllo", "n": [1, 2.5, None]}}
    assert call(demo, "kv.set", {"key": "greeting", "value": "bye"}) == {"ok": True}  # overwrite
    assert call(demo, "kv.set", {"key": "nothing", "value": None}) == {"ok": True}
    assert call(demo, "kv.get", {"key": "nothing"}) == {"found": True, "value": None}
    assert call(demo, "kv.list", {}) == {"keys": ["greeting", "nothing"]}
    assert call(demo, "kv.list", {"prefix": "gr"}) == {"keys": ["greeting"]}
    row = PluginKV.objects.get(plugin_slug="demo", key="greeting")
    assert (row.value, row.size) == ("bye", len(b'"bye"'))
    assert call(demo, "kv.delete", {"key": "greeting"}) == {"deleted": True}
    assert call(demo, "kv.delete", {"key": "greeting"}) == {"deleted": False}
    assert call(demo, "kv.get", {"key": "greeting"}) == {"found": False, "value": None}
    assert rows("demo") == {"nothing": None}


def test_kv_is_private_to_each_plugin(plugin) -> None:  # type: ignore[no-untyped-def]
    alpha, beta = plugin("alpha"), plugin("beta")
    assert call(alpha, "kv.set", {"key": "k", "value": "from alpha"}) == {"ok": True}
    assert call(beta, "kv.get", {"key": "k"}) == {"found": False, "value": None}
    assert call(beta, "kv.set", {"key": "k", "value": "from beta"}) == {"ok": True}
    assert call(alpha, "kv.get", {"key": "k"}) == {"found": True, "value": "from alpha"}
    assert call(beta, "kv.delete", {"key": "k"}) == {"deleted": True}
    assert call(alpha, "kv.get", {"key": "k"}) == {"found": True, "value": "from alpha"}
    assert rows("alpha") == {"k": "from alpha"} and rows("beta") == {}


def test_kv_key_count_quota(plugin, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_KEYS": 3}
    demo = plugin()
    for key in "abc":
        assert call(demo, "kv.set", {"key": key, "value": key}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "d", "value": "d"}) == ERROR
    assert rows("demo") == {"a": "a", "b": "b", "c": "c"}
    assert logged(caplog, "demo", "KV_MAX_KEYS=3")
    assert call(demo, "kv.set", {"key": "a", "value": "updated"}) == {"ok": True}  # not a new key
    assert call(demo, "kv.delete", {"key": "b"}) == {"deleted": True}
    assert call(demo, "kv.set", {"key": "d", "value": "d"}) == {"ok": True}  # room again


def test_kv_value_size_quota(plugin, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_VALUE_BYTES": 20}
    demo = plugin()
    assert call(demo, "kv.set", {"key": "ok", "value": "x" * 18}) == {"ok": True}  # 20 bytes with quotes
    assert call(demo, "kv.set", {"key": "big", "value": "x" * 19}) == ERROR
    assert call(demo, "kv.set", {"key": "ok", "value": "y" * 19}) == ERROR  # not even as an update
    assert rows("demo") == {"ok": "x" * 18}
    assert logged(caplog, "demo", "KV_MAX_VALUE_BYTES=20")


def test_kv_total_bytes_quota(plugin, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_TOTAL_BYTES": 100}
    demo = plugin()
    forty = "x" * 38  # 40 bytes encoded
    assert call(demo, "kv.set", {"key": "a", "value": forty}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "b", "value": forty}) == {"ok": True}
    assert call(demo, "kv.set", {"key": "c", "value": forty}) == ERROR
    assert call(demo, "kv.set", {"key": "b", "value": "x" * 59}) == ERROR  # growing b to 61 bytes
    assert rows("demo") == {"a": forty, "b": forty}
    assert logged(caplog, "demo", "KV_MAX_TOTAL_BYTES=100")
    assert call(demo, "kv.set", {"key": "b", "value": "x" * 58}) == {"ok": True}  # exactly 100
    assert call(demo, "kv.set", {"key": "c", "value": 1}) == ERROR


@pytest.mark.parametrize(("function", "payload", "status"), [
    ("kv.get", {"key": ""}, ERROR),
    ("kv.get", {"key": "k" * 256}, ERROR),
    ("kv.get", {"key": 5}, ERROR),
    ("kv.get", {}, BAD_PAYLOAD),
    ("kv.get", ["key"], BAD_PAYLOAD),
    ("kv.get", "key", BAD_PAYLOAD),
    ("kv.set", {"key": "k"}, BAD_PAYLOAD),
    ("kv.set", {"key": "k", "value": 1, "ttl": 5}, BAD_PAYLOAD),
    ("kv.set", {"key": "k", "value": 1, "ttlSeconds": 0}, ERROR),
    ("kv.set", {"key": "k", "value": 1, "ttlSeconds": -1}, ERROR),
    ("kv.set", {"key": "k", "value": 1, "ttlSeconds": "60"}, ERROR),
    ("kv.set", {"key": "k", "value": 1, "ttlSeconds": True}, ERROR),
    ("kv.set", {"key": "k", "value": 1, "ttlSeconds": 10**12}, ERROR),
    ("kv.delete", {"key": None}, ERROR),
    ("kv.list", {"prefix": 3}, ERROR),
    ("kv.list", {"prefix": "a", "limit": 3}, BAD_PAYLOAD),
    ("kv.incr", {}, BAD_PAYLOAD),
    ("kv.incr", {"key": "n", "step": 2}, BAD_PAYLOAD),
    ("kv.incr", {"key": "n", "by": 1.5}, ERROR),
    ("kv.incr", {"key": "n", "by": "2"}, ERROR),
    ("kv.incr", {"key": "n", "by": True}, ERROR),
    ("kv.incr", {"key": "n", "by": 2**63}, ERROR),
    ("kv.cas", {"key": "n", "value": 1}, BAD_PAYLOAD),
    ("kv.cas", {"key": "n", "expected": None}, BAD_PAYLOAD),
    ("kv.cas", {"key": "n", "expected": None, "value": 1, "ttlSeconds": 5}, BAD_PAYLOAD),
    ("kv.cas", {"key": "", "expected": None, "value": 1}, ERROR),
    ("kv.cas", {"key": "k", "expected": None, "value": "a\u0000b"}, ERROR),
])
def test_kv_bad_input_is_an_error(  # type: ignore[no-untyped-def]
        plugin, caplog, function: str, payload: Any, status: dict[str, int]) -> None:
    """Input is refused before anything is stored: -3 when the call is malformed (not an object,
    a field missing or unknown), -1 when a field's value is not acceptable."""
    demo = plugin()
    assert call(demo, function, payload) == status
    assert logged(caplog, "demo", function)
    assert rows("demo") == {}
    assert call(demo, "kv.set", {"key": "k" * 255, "value": 1}) == {"ok": True}  # the longest key


def test_an_unknown_payload_field_is_a_bad_payload(plugin, caplog) -> None:  # type: ignore[no-untyped-def]
    """ABI.md: an unknown field is a bad payload (-3), not a refusal of a value (-1)."""
    demo = plugin()
    assert call(demo, "kv.set", {"key": "k", "value": 1, "ttl": 5}) == {"hc": -3}
    assert call(demo, "kv.get", {"key": "k", "plugin": "other"}) == {"hc": -3}
    assert logged(caplog, "demo", "unknown field(s) ttl")
    assert rows("demo") == {}


@pytest.mark.django_db(transaction=True)  # twelve threads, each with its own connection
def test_kv_concurrent_writers_never_exceed_the_key_quota(plugin, settings) -> None:  # type: ignore[no-untyped-def]
    """Many threads add distinct keys at once, each retrying on -1 (the test database's in-memory
    SQLite answers some concurrent writers "table is locked" at once): exactly KV_MAX_KEYS of them
    succeed and every {"ok": true} is a row."""
    from django.db import connection

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_KEYS": 5, "MAX_INSTANCES": 4}
    demo = plugin()
    results: dict[str, Any] = {}
    start = threading.Barrier(12)

    def writer(n: int) -> None:
        try:
            start.wait()
            for _ in range(100):
                results[f"k{n}"] = call(demo, "kv.set", {"key": f"k{n}", "value": n})
                if results[f"k{n}"] == {"ok": True}:
                    break
                time.sleep(0.005)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stored = rows("demo")
    assert len(stored) == 5
    assert {k for k, v in results.items() if v == {"ok": True}} == set(stored)
    assert all(v in ({"ok": True}, ERROR) for v in results.values())


def test_kv_without_the_grant_is_capability_denied_also_after_a_revoke(  # type: ignore[no-untyped-def]
        plugin, django_capture_on_commit_callbacks) -> None:
    demo = plugin(caps=(), optional=("kv",), grant=())
    assert call(demo, "kv.set", {"key": "k", "value": 1}) == DENIED
    assert call(demo, "kv.get", {"key": "k"}) == DENIED
    assert rows("demo") == {}

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.grant("demo", ["kv"], "tests")
    demo = registry.get("demo")  # re-syncs after the commit
    assert demo is not None and "kv" in demo.capabilities
    assert call(demo, "kv.set", {"key": "k", "value": 1}) == {"ok": True}

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.revoke("demo", "kv", "tests")
    registry.sync(force=True)
    assert registry.get("demo") is demo  # still running, just without kv
    assert call(demo, "kv.get", {"key": "k"}) == DENIED
    assert call(demo, "kv.set", {"key": "k", "value": 2}) == DENIED
    assert rows("demo") == {"k": 1}


# --- log -------------------------------------------------------------------------------------


def test_log_is_always_granted(plugin) -> None:  # type: ignore[no-untyped-def]
    from gonext_plugins import logs
    from gonext_plugins.models import PluginLogEntry

    logs.writer.reset()  # under tests lines wait for flush(): forget earlier tests' lines
    demo = plugin(caps=())
    assert "log" in demo.capabilities
    assert call(demo, "log", {"level": "warning", "message": "disk almost full"}) == {"ok": True}
    assert call(demo, "log", {"message": "plain info"}) == {"ok": True}
    logs.flush()  # the plugin's log (gonext_plugins.logs) stores lines through its writer
    stored = PluginLogEntry.objects.filter(plugin="demo", source="guest").order_by("id")
    assert list(stored.values_list("level", "message")) == [
        (logs.WARNING, "disk almost full"), (logs.INFO, "plain info")]
    assert call(demo, "log", {"level": "loud", "message": "x"}) == {"hc": -1}  # a value it refuses
    assert call(demo, "kv.get", {"key": "k"}) == DENIED  # "log" does not widen anything else


# --- faults in host functions ----------------------------------------------------------------


@pytest.fixture
def test_functions() -> Iterator[None]:
    """A site capability with a host function that raises and one that returns non-JSON."""
    capabilities.register("tests.faulty", "Host functions that misbehave, for tests.", "low")

    @capabilities.host_function("tests.raise", capability="tests.faulty")
    def raising(plugin: Any, payload: Any) -> Any:
        raise RuntimeError("kaboom in the host")

    @capabilities.host_function("tests.nonjson", capability="tests.faulty")
    def not_json(plugin: Any, payload: Any) -> Any:
        return {"when": object()}

    @capabilities.host_function("tests.echo", capability="tests.faulty")
    def echo(plugin: Any, payload: Any) -> Any:
        return {"plugin": plugin.context.slug, "payload": payload}

    yield
    capabilities.unregister("tests.faulty")


def test_a_raising_host_function_is_error_logged_and_the_host_keeps_serving(  # type: ignore[no-untyped-def]
        plugin, test_functions, caplog) -> None:
    demo = plugin(caps=("tests.faulty", "kv"))
    assert call(demo, "tests.raise", {}) == ERROR
    failure = next(r for r in caplog.records if r.exc_info and "tests.raise" in r.getMessage())
    assert "demo" in failure.getMessage() and "kaboom in the host" in str(failure.exc_info[1])
    assert call(demo, "tests.echo", [1]) == {"plugin": "demo", "payload": [1]}
    assert call(demo, "kv.set", {"key": "after", "value": True}) == {"ok": True}


def test_a_host_function_returning_non_json_is_an_error(plugin, test_functions, caplog) -> None:  # type: ignore[no-untyped-def]
    demo = plugin(caps=("tests.faulty",))
    assert call(demo, "tests.nonjson", {}) == ERROR
    assert logged(caplog, "tests.nonjson", "demo")
    assert call(demo, "tests.echo", "again") == {"plugin": "demo", "payload": "again"}


@pytest.mark.parametrize("function", ["kv.get", "log"])
def test_every_host_call_counts_against_max_host_calls(plugin, settings, function: str) -> None:  # type: ignore[no-untyped-def]
    payload = {"key": "k"} if function == "kv.get" else {"message": "tick"}
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_HOST_CALLS": 10}
    demo = plugin()
    assert call(demo, f"loop:{function}", payload) != ERROR  # exactly ten calls: fine
    registry.close()

    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "MAX_HOST_CALLS": 9}
    demo = registry.get("demo")
    assert demo is not None and demo.runtime_plugin.limits.max_host_calls == 9
    with pytest.raises(PluginTrap, match="max_host_calls=9"):
        call(demo, f"loop:{function}", payload)
    assert call(demo, function, payload) != ERROR  # the next guest call starts a fresh count


# --- http.fetch ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.hits.append(self.path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self._route(url.path, query)

    def _route(self, path: str, query: dict[str, str]) -> None:
        if path == "/ok":
            self._send(200, b"hello", {"Content-Type": "text/plain", "X-Test": "yes"})
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            data = {"method": self.command, "path": self.path,
                    "body": self.rfile.read(length).decode() if length else None,
                    "headers": {k.lower(): v for k, v in self.headers.items()}}
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})
        elif path == "/redirect":
            self._send(int(query.get("status", "302")), headers={"Location": query["to"]})
        elif path.startswith("/hops/"):
            left = int(path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/hops/{left - 1}" if left > 1 else "/ok"})
        elif path == "/slow":
            time.sleep(float(query.get("s", "2")))
            self._send(200, b"late")
        elif path == "/trickle":  # headers one byte at a time, each well within the read timeout
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            for _ in range(60):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/big":  # announced by Content-Length
            self._send(200, b"x" * int(query["n"]))
        elif path == "/stream":  # no Content-Length: read until the server closes
            self._send(200, length=False)
            for _ in range(int(query["n"]) // 1000):
                self.wfile.write(b"y" * 1000)
        elif path == "/binary":
            self._send(200, b"\xff\xfeab\x00", {"Content-Type": "application/octet-stream"})
        else:
            self._send(404, b"no such page")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def other_server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def fetcher(plugin, server: _Server) -> LoadedPlugin:  # type: ignore[no-untyped-def]
    return plugin(caps=("http.fetch",), hosts=(f"127.0.0.1:{server.port}",))


def test_fetch_get(fetcher: LoadedPlugin, server: _Server) -> None:
    result = call(fetcher, "http.fetch", {"url": server.url("/ok?x=1")})
    assert result["status"] == 200 and result["body"] == "hello" and "bodyBase64" not in result
    assert result["headers"]["x-test"] == "yes" and result["headers"]["content-type"] == "text/plain"
    assert result["url"] == server.url("/ok?x=1")
    assert server.hits == ["/ok?x=1"]
    assert call(fetcher, "http.fetch", {"url": server.url("/missing")})["status"] == 404


def test_fetch_post_head_and_headers(fetcher: LoadedPlugin, server: _Server) -> None:
    echoed = call(fetcher, "http.fetch", {"url": server.url("/echo"), "method": "POST", "body": "a=1",
                                          "headers": {"Content-Type": "text/plain", "X-Key": "s3cret"}})
    sent = json.loads(echoed["body"])
    assert sent["method"] == "POST" and sent["body"] == "a=1"
    assert sent["headers"]["x-key"] == "s3cret" and sent["headers"]["content-type"] == "text/plain"
    assert sent["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert sent["headers"]["user-agent"] == "gonext-plugins (plugin demo)"
    head = call(fetcher, "http.fetch", {"url": server.url("/ok"), "method": "HEAD"})
    assert head["status"] == 200 and head["body"] == "" and head["headers"]["content-length"] == "5"


@pytest.mark.parametrize("payload", [
    {"url": "http://127.0.0.1/ok", "method": "DELETE"},
    {"url": "http://127.0.0.1/ok", "body": "only POST has a body"},
    {"url": "http://127.0.0.1/ok", "headers": {"Host": "admin.internal"}},
    {"url": "http://127.0.0.1/ok", "headers": {"X-A": "line\r\nInjected: 1"}},
    {"url": 42},
])
def test_fetch_bad_input_is_refused(fetcher: LoadedPlugin, server: _Server,
                                    payload: dict[str, Any]) -> None:
    """Values the function does not accept are refused (-1); only a malformed call is -3."""
    if isinstance(payload.get("url"), str):
        payload = {**payload, "url": server.url("/ok")}
    assert call(fetcher, "http.fetch", payload) == {"hc": -1}
    assert server.hits == []


@pytest.mark.parametrize("payload", [{"href": "http://127.0.0.1/ok"}, {"url": "x", "timeout": 1}, []])
def test_fetch_malformed_payload_is_bad_payload(fetcher: LoadedPlugin, server: _Server, payload: Any) -> None:
    assert call(fetcher, "http.fetch", payload) == BAD_PAYLOAD
    assert server.hits == []


def test_fetch_binary_body_comes_with_base64(fetcher: LoadedPlugin, server: _Server) -> None:
    result = call(fetcher, "http.fetch", {"url": server.url("/binary")})
    assert result["bodyBase64"] == "//5hYgA="
    assert result["body"] == "\ufffd\ufffdab\x00"


def test_fetch_without_the_capability_is_denied(plugin, server: _Server) -> None:  # type: ignore[no-untyped-def]
    demo = plugin(caps=(), optional=("http.fetch",), grant=(), hosts=(f"127.0.0.1:{server.port}",))
    assert call(demo, "http.fetch", {"url": server.url("/ok")}) == DENIED
    assert server.hits == []


def test_fetch_to_a_listed_host_the_admin_did_not_grant_is_refused(  # type: ignore[no-untyped-def]
        plugin, server: _Server, other_server: _Server, caplog) -> None:
    granted, listed_only = f"127.0.0.1:{server.port}", f"127.0.0.1:{other_server.port}"
    demo = plugin(caps=("http.fetch",), hosts=(granted, listed_only), grant_hosts=(granted,))
    assert demo.hosts == (granted,)
    assert call(demo, "http.fetch", {"url": other_server.url("/ok")}) == ERROR
    assert other_server.hits == []
    assert logged(caplog, "demo", "not an allowed host")
    assert call(demo, "http.fetch", {"url": server.url("/ok")})["status"] == 200


@pytest.mark.parametrize("url", [
    "http://localhost:{port}/ok",  # same machine, other name: not listed
    "http://127.0.0.1/ok",  # listed with a port; a bare host means the default port only
    "http://127.0.0.1:{port}@evil.example/ok",
])
def test_fetch_to_a_host_not_listed_is_refused(fetcher: LoadedPlugin, server: _Server, url: str) -> None:
    assert call(fetcher, "http.fetch", {"url": url.format(port=server.port)}) == ERROR
    assert server.hits == []


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1:{port}/ok", "file:///etc/passwd", "gopher://127.0.0.1:{port}/", "//127.0.0.1:{port}/ok",
    "javascript:alert(1)", "not a url",
])
def test_fetch_only_http_and_https(fetcher: LoadedPlugin, server: _Server, url: str) -> None:
    assert call(fetcher, "http.fetch", {"url": url.format(port=server.port)}) == ERROR
    assert server.hits == []


def test_fetch_never_reaches_link_local_metadata_even_when_listed(plugin) -> None:  # type: ignore[no-untyped-def]
    """Even on a site that allows private addresses, the metadata address cannot be listed."""
    with pytest.raises(ManifestError, match="link-local"):
        plugin(caps=("http.fetch",), hosts=("169.254.169.254",))


def test_fetch_follows_redirects_on_the_same_host(fetcher: LoadedPlugin, server: _Server) -> None:
    relative = call(fetcher, "http.fetch", {"url": server.url("/redirect?to=/ok")})
    assert relative["status"] == 200 and relative["body"] == "hello" and relative["url"] == server.url("/ok")
    to_ok = server.url("/redirect?status=307&to=") + server.url("/ok")
    absolute = call(fetcher, "http.fetch", {"url": to_ok})
    assert absolute["body"] == "hello"
    five = call(fetcher, "http.fetch", {"url": server.url("/hops/5")})
    assert five["body"] == "hello" and server.hits[-6:] == [f"/hops/{n}" for n in (5, 4, 3, 2, 1)] + ["/ok"]
    # 303 turns a POST into a GET without its body
    seen = call(fetcher, "http.fetch", {"url": server.url("/redirect?status=303&to=/echo"),
                                        "method": "POST", "body": "x"})
    assert json.loads(seen["body"])["method"] == "GET" and json.loads(seen["body"])["body"] is None


def test_fetch_stops_after_five_redirects(fetcher: LoadedPlugin, server: _Server, caplog) -> None:  # type: ignore[no-untyped-def]
    assert call(fetcher, "http.fetch", {"url": server.url("/hops/6")}) == ERROR
    assert len(server.hits) == 6 and "/ok" not in server.hits
    assert logged(caplog, "demo", "more than 5 redirects")


def test_fetch_refuses_a_redirect_to_another_host(  # type: ignore[no-untyped-def]
        plugin, server: _Server, other_server: _Server, caplog) -> None:
    # Both hosts are listed and granted: the redirect is refused for leaving the host, nothing else.
    demo = plugin(caps=("http.fetch",), hosts=(f"127.0.0.1:{server.port}", f"localhost:{other_server.port}"))
    elsewhere = f"http://localhost:{other_server.port}/ok"
    assert call(demo, "http.fetch", {"url": server.url(f"/redirect?to={elsewhere}")}) == ERROR
    assert other_server.hits == []
    assert logged(caplog, "demo", "redirects to another host")
    assert call(demo, "http.fetch", {"url": elsewhere})["body"] == "hello"  # allowed directly


def test_fetch_slow_response_times_out(fetcher: LoadedPlugin, server: _Server, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "HTTP_TIMEOUT": 0.3}
    # The server answers after 2 s: an error logged as "timed out" is the 0.3 s timeout at work.
    assert call(fetcher, "http.fetch", {"url": server.url("/slow?s=2")}) == ERROR
    assert logged(caplog, "demo", "timed out")
    assert call(fetcher, "http.fetch", {"url": server.url("/ok")})["body"] == "hello"


def test_fetch_timeout_is_total_not_per_read(fetcher: LoadedPlugin, server: _Server, settings) -> None:  # type: ignore[no-untyped-def]
    """A server trickling a byte every 50 ms never trips a per-read timeout; the total one holds."""
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "HTTP_TIMEOUT": 0.5}
    # A per-read timeout would let the trickle finish and return its body: an error is the total one.
    assert call(fetcher, "http.fetch", {"url": server.url("/trickle")}) == ERROR


@pytest.mark.parametrize("path", ["/big?n=5000", "/stream?n=5000"])
def test_fetch_huge_response_is_an_error_not_a_truncation(  # type: ignore[no-untyped-def]
        fetcher: LoadedPlugin, server: _Server, settings, caplog, path: str) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "HTTP_MAX_RESPONSE_BYTES": 4096}
    assert call(fetcher, "http.fetch", {"url": server.url(path)}) == ERROR
    assert logged(caplog, "demo", "HTTP_MAX_RESPONSE_BYTES=4096")
    exact = path.replace("5000", "4000")
    assert len(call(fetcher, "http.fetch", {"url": server.url(exact)})["body"]) == 4000


def test_fetch_uses_no_proxy_from_the_environment(  # type: ignore[no-untyped-def]
        fetcher: LoadedPlugin, server: _Server, other_server: _Server, monkeypatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, other_server.url(""))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert call(fetcher, "http.fetch", {"url": server.url("/ok")})["body"] == "hello"
    assert other_server.hits == []


def test_fetch_to_a_closed_port_is_an_error(plugin) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = plugin(caps=("http.fetch",), hosts=(f"127.0.0.1:{port}",))
    assert call(demo, "http.fetch", {"url": f"http://127.0.0.1:{port}/"}) == ERROR


def test_fetch_calls_count_against_max_host_calls(fetcher: LoadedPlugin, server: _Server) -> None:
    """Ten fetches in one guest call are fine under the default limit; the count is per host call."""
    assert call(fetcher, "loop:http.fetch", {"url": server.url("/ok")})["body"] == "hello"
    assert server.hits == ["/ok"] * 10


# --- kv quota against real concurrent processes on PostgreSQL --------------------------------

_RACER = r"""
import json, os, sys, time, types
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.conf import settings
settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "KV_MAX_KEYS": 10}
from gonext_plugins.conf import settings as conf
conf.reload()
from gonext_plugins.builtin_host import kv_set
handle = types.SimpleNamespace(name="race", context=None)
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
results = {}
for n in range(10):
    key = f"p{sys.argv[1]}-{n}"
    try:
        results[key] = kv_set(handle, {"key": key, "value": n})["ok"]
    except Exception as exc:
        results[key] = type(exc).__name__
print(json.dumps(results))
"""


@pytest.mark.slow
def test_kv_quota_holds_across_processes_on_postgresql(  # type: ignore[no-untyped-def]
        postgres_url: str, tmp_path) -> None:  # noqa: F811  (the fixture imported above)
    """Four OS processes race to add 40 keys against KV_MAX_KEYS=10 on PostgreSQL (READ
    COMMITTED, where a count-then-insert without the plugin row lock lets them all through)."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_cross_process import base_env, manage

    env = base_env(postgres_url, tmp_path / "media")
    manage(env, "migrate", "--no-input")
    manage(env, "shell", "-c", "from gonext_plugins.models import Plugin; "
                               "Plugin.objects.create(slug='race', name='race')")
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(n), str(start)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    results: dict[str, Any] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.update(json.loads(out.strip().splitlines()[-1]))
    done = manage(env, "shell", "-c", "from gonext_plugins.models import PluginKV; "
                                      "print(PluginKV.objects.filter(plugin_slug='race').count())")
    assert int(done.stdout.strip().splitlines()[-1]) == 10
    assert set(results.values()) == {True, "KVQuotaExceeded"}
    assert sum(v is True for v in results.values()) == 10
