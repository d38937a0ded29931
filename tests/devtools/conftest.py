"""Fixtures for the devtools tests: a recording HTTP server on 127.0.0.1 and plugin projects.

The devtools modules do not import Django; these tests only need it for ``call_command``."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """Records every request; answers with ``status`` and ``reply`` (JSON unless bytes)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    status: int = 200
    reply: Any = field(default_factory=lambda: {"status": "installed"})
    content_type: str = "application/json"


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    state = RecordingServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(Recorded("POST", self.path, {k: v for k, v in self.headers.items()}, body))
            data = state.reply if isinstance(state.reply, bytes) else json.dumps(state.reply).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def wat_project(tmp_path: Path) -> Path:
    """A scaffolded WAT plugin (builds in milliseconds)."""
    from gonext_plugins.devtools import scaffold

    project = tmp_path / "hello-wat"
    scaffold.create(project, "wat")
    return project


ZIG_TRAP_SOURCE = '''
fn crash(n: usize) usize {
    if (n > 3) @trap(); // TRAP LINE
    return n + 1;
}

fn wpHead(ctx: *gn.Ctx) gn.RawJson {
    _ = crash(ctx.name.len);'''


@pytest.fixture(scope="session")
def zig_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two Zig dev builds (one compile each, shared by every test): the pristine scaffold and a
    copy whose ``wp_head`` executes ``@trap()`` on a line marked ``TRAP LINE``."""
    import importlib.util

    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("ziglang is not installed")
    from gonext_plugins.devtools import builders, scaffold

    root = tmp_path_factory.mktemp("zig")
    hello, trapper = root / "hello-zig", root / "trapper"
    scaffold.create(hello, "zig")
    scaffold.create(trapper, "zig")
    main = trapper / "main.zig"
    main.write_text(main.read_text().replace("\nfn wpHead() gn.RawJson {", ZIG_TRAP_SOURCE))
    for project in (hello, trapper):
        builders.compile_project(project)
    return {"hello": hello, "trapper": trapper}
