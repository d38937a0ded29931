"""A real ASGI server for the API tests: uvicorn in its own process on a free loopback port, on a
fresh SQLite file and media root, migrated first, with a superuser, an API token and a blog post
made by ``manage.py shell``. Nothing in the test process is shared with it but the file system.

:func:`serve_command` is the one command line every live-server test uses: the one ``make serve``
runs, so the tests exercise the server the site is served with (README "Serving")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import REPO

UVICORN = Path(sys.executable).with_name("uvicorn")
# Largest WebSocket message a client may send (the log page sends small JSON commands); uvicorn's
# default is 16 MiB, times a queue of 32 messages per connection.
WS_MAX_MESSAGE_BYTES = 64 * 1024
SETUP = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from project.blog.models import Post
user = User.objects.create_superuser("admin", "admin@example.com", "pw")
Post.objects.create(title="Hello", slug="hello", body="Hello from the blog.")
print(Token.objects.create(user=user).key)
"""


def serve_command(port: int) -> list[str]:
    """The demo site under uvicorn on loopback ``port`` (the same flags as ``make serve``)."""
    return [str(UVICORN), "project.asgi:application", "--host", "127.0.0.1", "--port", str(port),
            "--lifespan", "off", "--ws-max-size", str(WS_MAX_MESSAGE_BYTES)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_env(root: Path, database: str, **extra: str) -> dict[str, str]:
    """The environment of a demo-site process on its own SQLite file (``root / database``) and
    media root under ``root``, with the suite's settings; the test database's name stays behind."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{root / database}",
        "MEDIA_ROOT": str(root / "media"),
        "DEBUG": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py *args`` in a site's environment: its output, or an error with both streams."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class LiveServer:
    """``start()`` → ``url`` and ``token``; ``stop()`` ends the process (and only it)."""

    setup_code = SETUP  # run by ``manage.py shell`` after migrating; prints the API token last

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log_path = root / "server.log"
        self.env = site_env(root, "db.sqlite3", STATIC_ROOT=str(root / "static"), GONEXT_DEV_MODE="0")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    @classmethod
    def module_fixture(cls, name: str) -> Any:
        """A module-scoped pytest fixture: one started server of this class for a test module,
        stopped after its last test (``server = LiveServer.module_fixture("live-api")``)."""

        @pytest.fixture(scope="module")
        def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
            live = cls(tmp_path_factory.mktemp(name)).start()
            try:
                yield live
            finally:
                live.stop()

        return server

    def start(self) -> LiveServer:
        self.manage("migrate", "--noinput", "-v0")
        self.token = self.manage("shell", "-c", self.setup_code).strip().splitlines()[-1]
        for _attempt in range(3):  # the free port may be taken between finding and binding it
            port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    serve_command(port), cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                )
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready(30.0):
                return self
            self.stop()
        raise RuntimeError(f"the server did not start:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/api/schema/?format=json", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
