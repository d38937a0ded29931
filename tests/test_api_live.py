"""The API against a real ASGI server (uvicorn in its own process, its own SQLite file): a whole
lifecycle driven over HTTP with the blog page checked at each step, and every curl example in
docs/api.md run as written with its documented status checked."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gonext_plugins import signing

from .api.helpers import CONTENT_HOOKS, MARKER, MARKER_V2, marker_wasm, signed_bundle
from .api.server import LiveServer
from .conftest import REPO

pytestmark = pytest.mark.slow

DOCS = REPO / "docs" / "api.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("live-api")).start()
    try:
        yield live
    finally:
        live.stop()


class Api:
    """A tiny client: token auth, JSON answers, and the error shape checked on every non-2xx."""

    def __init__(self, server: LiveServer) -> None:
        self.base = server.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {server.token}"

    def __call__(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text[:1000])
        data = response.json()
        if expect >= 400:
            assert {"error", "detail", "problems"} <= set(data), data
        return data


def page_text(server: LiveServer) -> str:
    response = requests.get(f"{server.url}/posts/hello/", timeout=30)
    assert response.status_code == 200
    return response.text


def wait_for_page(server: LiveServer, present: str | None, absent: tuple[str, ...] = (),
                  timeout: float = 5.0) -> str:
    """The blog page once it shows ``present`` and none of ``absent`` (the registry reloads at
    once in the process that made the change; the poll only absorbs scheduling)."""
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(server)
        if (present is None or present in text) and not any(a in text for a in absent):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"page never showed {present!r} without {absent!r}:\n{text[-2000:]}")
        time.sleep(0.1)


def test_lifecycle_end_to_end_over_a_real_server(server: LiveServer) -> None:
    api = Api(server)
    private, public = signing.generate_key()
    caps = {"slug": "marker", "name": "Marker", "capabilities": ["hooks.subscribe"], "hooks": CONTENT_HOOKS}
    v1 = signed_bundle(private, marker_wasm(), **caps)
    v2 = signed_bundle(private, marker_wasm(MARKER_V2), version="2.0.0",
                       **{**caps, "capabilities": ["hooks.subscribe", "kv"]})

    assert MARKER not in page_text(server)
    assert api("POST", "/api/keys/", 201, json={"name": "E2E", "public_key": public})["usable"]

    # install with grants, activated at once
    done = api("POST", "/api/plugins/", 201, files={"bundle": ("marker.gnplugin", v1)},
               data={"grant": ["hooks.subscribe"], "activate": "true"})
    assert done["state"] == "active" and done["version"] == "1.0.0"
    wait_for_page(server, MARKER)

    # an upgrade asking for a new capability waits for consent; the old version keeps running
    refused = api("POST", "/api/plugins/marker/upgrade/", 409, files={"bundle": ("m2.gnplugin", v2)})
    assert refused["error"] == "consent_required" and refused["missing"] == ["kv"]
    assert MARKER in page_text(server)
    upgraded = api("POST", "/api/plugins/marker/upgrade/", 200, files={"bundle": ("m2.gnplugin", v2)},
                   data={"grant": "kv"})
    assert upgraded["version"] == "2.0.0" and upgraded["state"] == "active"
    wait_for_page(server, MARKER_V2, absent=(MARKER,))

    # roll back to 1.0.0
    rolled = api("POST", "/api/plugins/marker/rollback/", 200)
    assert rolled["version"] == "1.0.0" and rolled["changed"] is True
    wait_for_page(server, MARKER, absent=(MARKER_V2,))
    versions = api("GET", "/api/plugins/marker/versions/", 200)
    assert [(v["version"], v["active"]) for v in versions] == [("1.0.0", True), ("2.0.0", False)]

    audit = api("GET", "/api/plugins/marker/audit/", 200)["results"]
    assert [e["action"] for e in audit][:4] == ["rollback", "upgrade", "activate", "install"]
    assert {e["actor"] for e in audit[:4]} == {"admin"}

    # uninstall: the output is gone and the plugin with it
    gone = api("DELETE", "/api/plugins/marker/", 200)
    assert gone == {"slug": "marker", "changed": True, "keep_data": False}
    wait_for_page(server, None, absent=(MARKER, MARKER_V2))
    api("GET", "/api/plugins/marker/", 404)
    assert "Traceback" not in server.log()


# --- docs/api.md, executed ------------------------------------------------------------------------


def doc_examples() -> list[tuple[str, int]]:
    """(shell command, expected status) for each ```sh block followed by its ```http block."""
    text = DOCS.read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    examples = []
    for (kind, body), (next_kind, next_body) in itertools.pairwise(blocks):
        if kind == "sh" and "curl" in body:
            assert next_kind == "http", f"no ```http block after:\n{body}"
            status = re.match(r"HTTP/1\.1 (\d{3}) ", next_body)
            assert status, next_body
            examples.append((body.strip(), int(status.group(1))))
    return examples


def test_docs_has_examples_for_every_endpoint() -> None:
    commands = "\n".join(command for command, _ in doc_examples())
    for fragment in ("/api/keys/", "/api/capabilities/", "/api/plugins/\"", "/api/plugins/hello/\"",
                     "/activate/", "/deactivate/", "/upgrade/", "/rollback/", "/versions/", "/grants/",
                     "-X DELETE \"$HOST/api/plugins/hello/grants/", "/audit/", "/logs/", "/jobs/", "/faults/",
                     "-X DELETE \"$HOST/api/plugins/hello/", "-X DELETE \"$HOST/api/keys/"):
        assert fragment in commands, fragment


def test_docs_curl_examples_run_as_documented(server: LiveServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    private, public = signing.generate_key()
    fields = {"slug": "hello", "name": "Hello", "capabilities": ["hooks.subscribe"],
              "optionalCapabilities": ["posts.read"], "hooks": CONTENT_HOOKS}
    (tmp_path / "hello-1.0.0.gnplugin").write_bytes(signed_bundle(private, marker_wasm(), **fields))
    (tmp_path / "hello-2.0.0.gnplugin").write_bytes(signed_bundle(
        private, marker_wasm(MARKER_V2), version="2.0.0",
        **{**fields, "capabilities": ["hooks.subscribe", "kv"]}))
    (tmp_path / "README.md").write_text("# not a plugin\n")
    body = tmp_path / "body.json"
    env = {"HOST": server.url, "TOKEN": server.token, "PUBLIC_KEY": public,
           "FINGERPRINT": hashlib.sha256(signing.b64decode_exact(public, 32, "key")).hexdigest(),
           "PATH": "/usr/bin:/bin", "BODY": str(body)}
    # The documented commands run unchanged; curl is wrapped only to capture the status and body.
    prelude = 'curl() { command curl --output "$BODY" --write-out "%{http_code}" "$@"; }\n'
    examples = doc_examples()
    assert len(examples) >= 25
    for command, expected in examples:
        done = subprocess.run(["bash", "-c", prelude + command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.strip() == str(expected), (command, done.stdout, body.read_text()[:1000])
        data = json.loads(body.read_text())
        if expected >= 400:
            assert {"error", "detail", "problems"} <= set(data), (command, data)
