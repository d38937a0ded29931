"""Live logs across processes: two uvicorn servers on one SQLite file and one ``redis-server``
(channels-redis), both started here. A WebSocket client on server B sees a line that a blog page
request served by server A made the plugin log. Nothing is mocked: real servers, real Redis, real
wasmtime, a real page request. Also the helpers the browser test uses to run a site."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .api.server import free_port, manage, serve_command, site_env
from .conftest import REPO
from .servers import redis_server, wait_for_port

POST_SLUG = "hello-logs"

SETUP_SCRIPT = r"""
import json
from django.contrib.auth.models import Permission, User
from django.test import Client
from gonext_plugins import bundle, lifecycle, signing
from project.blog.models import Post
from tests.conftest import guest_wasm, make_manifest

private, public = signing.generate_key()
lifecycle.trust_key("Log test publisher", public, "setup")
hooks = [{"name": "the_content", "kind": "filter"}, {"name": "flood", "kind": "action"},
         {"name": "levels", "kind": "action"}]
manifest = make_manifest(slug="demo", name="Log demo", capabilities=["hooks.subscribe", "kv"], hooks=hooks)
raw = bundle.sign(bundle.pack(manifest, guest_wasm("log_flood")), private)
lifecycle.install(bundle.read(raw), ["hooks.subscribe", "kv"], "setup", activate=True)
user = User.objects.create_user("watcher", password="watcher-pw", is_staff=True)
user.user_permissions.add(Permission.objects.get(codename="view_plugin_logs"))
Post.objects.create(title="Hello logs", slug="POST_SLUG", body="A post whose content filter logs.")
client = Client()
client.force_login(user)
print(json.dumps({"sessionid": client.cookies["sessionid"].value}))
""".replace("POST_SLUG", POST_SLUG)


class Site:
    """A demo site in a temp dir: its SQLite file, media root, the setup above, uvicorn servers."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.env = site_env(tmp, "site.sqlite3", **{"GONEXT_SYNC_INTERVAL": "0.2", **env})
        self.servers: list[tuple[subprocess.Popen[Any], Any]] = []
        self.sessionid = ""

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def setup(self) -> None:
        self.manage("migrate", "--noinput", "-v0")
        out = self.manage("shell", "-c", SETUP_SCRIPT)
        self.sessionid = json.loads(out.strip().splitlines()[-1])["sessionid"]

    def serve(self, port: int | None = None, **env: str) -> int:
        port = port or free_port()
        log = open(self.tmp / f"server-{port}-{len(self.servers)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(serve_command(port), cwd=REPO, env={**self.env, **env},
                                stdout=log, stderr=subprocess.STDOUT)
        self.servers.append((proc, log))
        wait_for_port(port, proc, f"the server on {port}")
        return port

    def stop_server(self, port: int) -> None:
        for proc, log in self.servers:
            if proc.poll() is None and f"--port {port} " in " ".join(map(str, proc.args)) + " ":
                proc.terminate()
                proc.wait(10)
                log.close()

    def close(self) -> None:
        for proc, log in self.servers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()

    def server_logs(self) -> str:
        logs = sorted(self.tmp.glob("server-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.read().decode()


@pytest.mark.slow
def test_a_line_logged_on_one_server_reaches_a_client_of_another(tmp_path: Path) -> None:
    """Also after the client has waited with nothing to show for longer than the layer's pops."""
    from channels_redis.core import RedisChannelLayer
    from websockets.sync.client import connect

    with redis_server(tmp_path) as redis_url:
        site = Site(tmp_path, REDIS_URL=redis_url)
        try:
            site.setup()
            port_a, port_b = site.serve(), site.serve()
            headers = {"Cookie": f"sessionid={site.sessionid}", "Origin": f"http://127.0.0.1:{port_b}"}
            with connect(f"ws://127.0.0.1:{port_b}/_/plugins/dev/logs/demo/", additional_headers=headers,
                         open_timeout=10) as ws:
                backlog = json.loads(ws.recv(timeout=10))
                assert backlog["type"] == "backlog"
                assert [line["message"] for line in backlog["lines"]] == ["activated version 1.0.0 by setup"]
                # Quiet for longer than channels-redis's blocking pop: the page must stay open (with
                # redis-py 8's 5 s read timeout and no socket_timeout of the layer's own, it closed).
                time.sleep(RedisChannelLayer.brpop_timeout + 2)
                started = time.monotonic()
                assert "Hello logs" in site.get(port_a, f"/posts/{POST_SLUG}/")
                seen: list[dict[str, Any]] = []
                while not any(line["message"] == "called the_content" for line in seen):
                    remaining = 60 - (time.monotonic() - started)  # generous: a loaded machine is slow
                    assert remaining > 0, f"no line within 60 s; got {seen}\n{site.server_logs()}"
                    message = json.loads(ws.recv(timeout=remaining))
                    assert message["type"] == "lines"
                    seen += message["lines"]
                crossed = time.monotonic() - started
            [line] = [line for line in seen if line["message"] == "called the_content"]
            assert line["plugin"] == "demo" and line["version"] == "1.0.0" and line["source"] == "guest"
            print(f"line crossed from server A to a client of server B in {crossed * 1000:.0f} ms")
        finally:
            site.close()
