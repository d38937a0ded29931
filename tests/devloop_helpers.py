"""Shared by the live dev-loop test and the plugin-authors doc test: a dev-mode site in its own
uvicorn process, and a subprocess whose output is read line by line so a test can wait for a line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .api.server import LiveServer

DEV_SETUP = """
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from project.blog.models import Post
user = User.objects.create_user("author", "author@example.com", "pw", is_staff=True)
user.user_permissions.add(*Permission.objects.filter(
    codename__in=["install_plugin", "activate_plugin", "grant_capability", "view_plugin",
                  "view_plugin_logs"]))
Post.objects.create(title="Hello", slug="hello", body="Hello from the blog.")
print(Token.objects.create(user=user).key)
"""


def zig_cache_env() -> dict[str, str]:
    """Keep Zig's global cache (compiler-rt for wasm32) where it is even when HOME is a temp dir."""
    real = os.environ.get("ZIG_GLOBAL_CACHE_DIR") or str(Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "zig")
    return {"ZIG_GLOBAL_CACHE_DIR": real}


class DevServer(LiveServer):
    """A site in dev mode (``DEBUG=1``, ``GONEXT_DEV_MODE=1``) with a fast generation poll, a staff
    author holding an API token (install, view, logs) and a blog post at ``/posts/hello/``."""

    setup_code = DEV_SETUP

    def __init__(self, root: Path, sync_interval: float = 0.2) -> None:
        super().__init__(root)
        self.env.update({"GONEXT_DEV_MODE": "1", "GONEXT_SYNC_INTERVAL": str(sync_interval)})


class Proc:
    """A subprocess in its own session, its output (stdout and stderr merged) collected by a thread."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def mark(self) -> int:
        """The number of lines so far: pass it as ``since`` to wait only for later lines."""
        with self._cond:
            return len(self.lines)

    def output(self, since: int = 0) -> str:
        with self._cond:
            return "\n".join(text for _, text in self.lines[since:])

    def wait_for(self, pattern: str, *, since: int = 0, timeout: float = 120.0) -> tuple[float, str]:
        """(arrival time, line) of the first line from ``since`` on matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            index = since
            while True:
                while index < len(self.lines):
                    when, text = self.lines[index]
                    index += 1
                    if regex.search(text):
                        return when, text
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and index >= len(self.lines)):
                    break
                self._cond.wait(min(left, 0.2))
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s (exit: {self.proc.poll()}):\n"
                             f"{self.output(since)[-4000:]}")

    def interrupt(self, timeout: float = 15.0) -> int:
        """Ctrl-C (SIGINT to the process) and its exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """End the process group this object started (the process and its children), if still running."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        self._reader.join(2)


def poll_page(url: str, present: str, *, absent: str | None = None, timeout: float = 60.0,
              interval: float = 0.05) -> tuple[float, str]:
    """(monotonic time, page) once ``url`` shows ``present`` (and not ``absent``)."""
    import requests

    deadline = time.monotonic() + timeout
    text: Any = ""
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5)
            text = response.text
            if response.status_code == 200 and present in text and (absent is None or absent not in text):
                return time.monotonic(), text
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise AssertionError(f"{url} never showed {present!r} (without {absent!r}) within {timeout} s:\n"
                         f"{str(text)[-1500:]}")
