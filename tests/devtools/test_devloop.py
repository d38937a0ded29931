"""The dev loop end to end against a local recording server: --no-watch, --build-only, the first
error's exit status, errors during watch, Ctrl-C; the log tail over a local WebSocket server."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gonext_plugins.devtools import devloop
from gonext_plugins.devtools.devloop import Console, DevLoop, DevOptions

REPO = Path(__file__).resolve().parents[2]
STAMP = r"\d\d:\d\d:\d\d\.\d\d\d"


def multipart_parts(body: bytes, content_type: str) -> dict[str, bytes]:
    import email.parser
    import email.policy

    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
            for p in message.iter_parts()}


def run_dev(*args: str) -> str:
    out = io.StringIO()
    call_command("plugin", "dev", *args, stdout=out)
    return out.getvalue()


def test_no_watch_uploads_once(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    output = run_dev(str(wat_project), "--no-watch", "--host", recording_server.url, "--token", "tok")
    (req,) = recording_server.requests
    assert req.path == "/_/plugins/dev/install" and req.headers["Authorization"] == "Token tok"
    parts = multipart_parts(req.body, req.headers["Content-Type"])
    assert parts["manifest"] == (wat_project / "manifest.json").read_bytes()
    assert parts["wasm"] == (wat_project / "build" / "dev" / "plugin.wasm").read_bytes()
    for phase in ("detect", "build", "validate", "upload", "diff"):
        assert re.search(rf"^{STAMP} {phase}\s", output, re.M), (phase, output)
    assert "wat (plugin.wat)" in output and "(status installed)" in output
    assert "first build: nothing to compare with" in output and "= hooks.subscribe" in output
    assert "\033[" not in output  # not a terminal: no colours


def test_build_only_uploads_nothing(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    output = run_dev(str(wat_project), "--build-only", "--host", recording_server.url)
    assert recording_server.requests == []
    assert "validate" in output and "upload" not in output
    assert (wat_project / "build" / "dev" / "plugin.wasm").is_file()


def test_first_build_error_exits_non_zero(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    (wat_project / "plugin.wat").write_text("(module (oops))")
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("plugin", "dev", str(wat_project), "--host", recording_server.url, stdout=out)
    assert info.value.returncode == 1
    assert "build_error: plugin.wat does not compile" in out.getvalue()
    assert recording_server.requests == []


def test_first_upload_refusal_exits_non_zero(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    recording_server.status = 403
    recording_server.reply = {"error": "permission_denied", "detail": "needs install permission",
                              "problems": []}
    out = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("plugin", "dev", str(wat_project), "--no-watch", "--host", recording_server.url,
                     stdout=out)
    assert info.value.returncode == 1
    said = rf"{STAMP} upload\s+permission_denied: needs install permission \(the token's user needs"
    assert re.search(said, out.getvalue())  # the code once, then what to do


def test_first_manifest_error_lists_every_problem(wat_project: Path) -> None:
    data = json.loads((wat_project / "manifest.json").read_text())
    data["slug"], data["version"] = "Bad Slug", "one"
    (wat_project / "manifest.json").write_text(json.dumps(data))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("plugin", "dev", str(wat_project), "--build-only", stdout=out)
    assert "manifest.json has 2 problem(s):" in out.getvalue()
    assert "$.slug:" in out.getvalue() and "$.version:" in out.getvalue()


def test_watch_keeps_going_after_errors(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    wat = wat_project / "plugin.wat"
    manifest = wat_project / "manifest.json"
    good = wat.read_text()

    def edits(root: Path, stop_event: threading.Event) -> Iterator[set[str]]:
        data = json.loads(manifest.read_text())
        data["capabilities"] = ["hooks.subscribe", "kv"]
        data["optionalCapabilities"] = ["http.fetch"]
        manifest.write_text(json.dumps(data))
        yield {str(manifest)}
        wat.write_text("(module (broken")  # a build error: printed, the loop goes on
        yield {str(wat)}
        wat.write_text(good)
        recording_server.status = 500  # an upload error: printed, the loop goes on
        recording_server.reply = {"error": "internal", "detail": "boom"}
        yield {str(wat)}
        recording_server.status = 200
        recording_server.reply = {"status": "replaced"}
        data["capabilities"] = ["hooks.subscribe"]
        manifest.write_text(json.dumps(data))
        yield {str(manifest), str(wat)}

    out = io.StringIO()
    loop = DevLoop(DevOptions(wat_project, host=recording_server.url), out, watcher=edits)
    assert loop.run() == 0
    text = out.getvalue()
    assert len(recording_server.requests) == 4  # first, +kv, (build error: none), 500, -kv
    assert loop.failures == 2 and loop.cycles == 5
    assert "does not compile" in text and "internal: boom" in text
    assert re.search(r"capabilities changed since the previous build\n\s+required:\n\s+= hooks.subscribe\n"
                     r"\s+\+ kv\n\s+optional:\n\s+\+ http.fetch", text), text
    assert re.search(r"\s+- kv\n", text)
    assert re.search(rf"{STAMP} change\s+manifest.json, plugin.wat", text)
    assert "(status replaced)" in text


def test_ctrl_c_exits_zero(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    def interrupted(root: Path, stop_event: threading.Event) -> Iterator[set[str]]:
        raise KeyboardInterrupt
        yield set()

    out = io.StringIO()
    assert DevLoop(DevOptions(wat_project, host=recording_server.url), out, watcher=interrupted).run() == 0
    assert "interrupted" in out.getvalue()


def test_real_process_watches_rebuilds_and_stops_on_sigint(wat_project: Path,
                                                           recording_server) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "project.settings"}
    proc = subprocess.Popen([sys.executable, "manage.py", "plugin", "dev", str(wat_project), "--host",
                             recording_server.url], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any(" watch " in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(recording_server.requests) == 1, lines
        time.sleep(0.3)  # the watcher is running
        wat = wat_project / "plugin.wat"
        text = wat.read_text().replace("adding the generator tag", "adding the generator TAG")
        for _ in range(3):  # a burst of saves: one rebuild
            wat.write_text(text)
            time.sleep(0.03)
        while len(recording_server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert len(recording_server.requests) == 2, lines
        wasm = multipart_parts(recording_server.requests[1].body,
                               recording_server.requests[1].headers["Content-Type"])["wasm"]
        assert b"generator TAG" in wasm
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)
    reader.join(2)
    assert code == 0, lines
    assert any("interrupted" in line for line in lines)


# --- output: colours and log lines ---------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert devloop.use_color(Tty()) and not devloop.use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not devloop.use_color(Tty())
    assert devloop.use_color(io.StringIO(), forced=True)


def test_log_line_levels_and_colours() -> None:
    console = Console(io.StringIO(), color=True)
    record = {"time": "2025-01-02T03:04:05.678+00:00", "plugin": "hello", "version": "0.1.0", "level": 3,
              "message": "it broke", "source": "guest"}
    line = devloop.format_log_line(record, console.paint)
    assert "\033[1;31mERROR\033[0m it broke" in line and "v0.1.0 [guest]" in line
    plain = devloop.format_log_line({**record, "level": 2}, Console(io.StringIO(), color=False).paint)
    assert re.fullmatch(rf"{STAMP} WARN  it broke  v0.1.0 \[guest\]", plain)
    assert "INFO" in devloop.format_log_line({"level": "info", "message": "x"}, console.paint)
    trap = {**record, "trap": {"frames": [{"function": "main.f", "location": "main.zig:3:5"}]}}
    assert "\n    at main.f  main.zig:3:5" in devloop.format_log_line(trap, console.paint)


def test_logs_url() -> None:
    assert devloop.logs_url("http://127.0.0.1:8000", "seo") == "ws://127.0.0.1:8000/_/plugins/dev/logs/seo/"
    assert devloop.logs_url("https://site.example/", "seo", "a b") == \
        "wss://site.example/_/plugins/dev/logs/seo/?token=a+b"
    assert devloop.logs_url("localhost:8000", "x") == "ws://localhost:8000/_/plugins/dev/logs/x/"


def test_log_tail_over_a_websocket(wat_project: Path, recording_server) -> None:  # type: ignore[no-untyped-def]
    from websockets.sync.server import serve

    seen: dict[str, Any] = {}
    done = threading.Event()

    def handler(ws: Any) -> None:
        seen["path"] = ws.request.path
        seen["auth"] = ws.request.headers.get("Authorization")
        ws.send(json.dumps({"type": "backlog", "plugin": "hello-wat", "lines": [
            {"id": 1, "time": "2025-01-02T03:04:05+00:00", "plugin": "hello-wat", "version": "0.1.0",
             "level": 1, "message": "from the backlog", "source": "guest"}]}))
        ws.send(json.dumps({"type": "lines", "lines": [
            {"id": 2, "time": "2025-01-02T03:04:06+00:00", "plugin": "hello-wat", "version": "0.1.0",
             "level": 3, "message": "live error", "source": "host"}]}))
        done.wait(5)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        out = io.StringIO()
        stop = threading.Event()
        tail = devloop.LogTail(f"http://127.0.0.1:{port}", "hello-wat", "tok", Console(out, False), stop)
        tail.start()
        deadline = time.monotonic() + 5
        while "live error" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        done.set()
        tail.join(3)
        server.shutdown()
    assert seen == {"path": "/_/plugins/dev/logs/hello-wat/?token=tok", "auth": "Token tok"}
    text = out.getvalue()
    assert "connected to ws://127.0.0.1" in text
    assert re.search(rf"log\s+{STAMP} INFO  from the backlog  v0.1.0 \[guest\]", text)
    assert "ERROR live error" in text
