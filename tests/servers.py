"""Throwaway servers the tests start from Debian's packages: PostgreSQL and Redis, each on a free
loopback port with its files in a temp dir, stoppable and restartable (the cluster test restarts
both under running processes). A server that cannot start fails the test with its log; nothing
here ever skips."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[Any] | None, what: str, timeout: float = 30.0) -> None:
    """Until something listens on ``port``; an error if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on port {port} within {timeout} s")


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed under /usr/lib/postgresql/*/bin; "
                    "`make test` installs Debian's postgresql package")
    return found[-1]


def as_postgres(args: list[str]) -> list[str]:
    """Run server commands as the ``postgres`` user when we are root (initdb and postgres refuse
    root, and must never run as root anyway); as ourselves otherwise."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


class PostgresServer:
    """A PostgreSQL cluster (trust auth, socket in the temp dir, durability off for speed) with one
    database, ``gonext``. ``stop()``/``start()`` restart it on the same port and data."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="gonext-pg-"))
        self.data, self.sockets = self.base / "data", self.base / "sockets"
        self.log = self.base / "server.log"
        self.sockets.mkdir()
        self.port = 0
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.base, ignore_errors=True)
                pytest.fail("running as root and there is no `postgres` user to run the server as")
            for path in (self.base, self.sockets):
                os.chown(path, pg.pw_uid, pg.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/gonext"

    def _run(self, args: list[str], what: str, *, retry_busy_port: bool = False) -> bool:
        done = subprocess.run(as_postgres(args), capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return True
        server_log = self.log.read_text(errors="replace") if self.log.exists() else "(no server log)"
        if retry_busy_port and "Address already in use" in server_log:
            return False  # another process took the free port in between: pick another
        pytest.fail(f"PostgreSQL {what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                    f"server log:\n{server_log[-4000:]}")

    def _pg_ctl_start(self, *, retry_busy_port: bool) -> bool:
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        return self._run([pg_bin("pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", "60", "-o", options], "start", retry_busy_port=retry_busy_port)

    def create(self) -> PostgresServer:
        self._run([pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync"], "initdb")
        for attempt in range(3):
            self.port = free_port()
            if self._pg_ctl_start(retry_busy_port=attempt < 2):
                break
        self._run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "gonext"],
                  "createdb")
        return self

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, committed data stays (the restart check)."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(as_postgres([pg_bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w",
                                        "-t", "30"]), capture_output=True, timeout=60)

    def start(self) -> None:
        """Start again on the same port (fails the test if the port was taken meanwhile)."""
        self._pg_ctl_start(retry_busy_port=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway :class:`PostgresServer`, stopped and removed afterwards."""
    server = PostgresServer()
    try:
        yield server.create()
    finally:
        server.remove()


# --- Redis ----------------------------------------------------------------------------------------


class RedisServer:
    """A redis-server without persistence; ``restart()`` starts a fresh one on the same port (what
    a site sees when its Redis restarts: every connection cut, every key gone)."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        assert Path(binary).exists(), "redis-server is not installed (make test installs it)"
        self.binary = binary
        self.dir = tmp / "redis"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "redis-server", timeout=15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A throwaway redis-server (no persistence) on a free port; fails when it cannot start."""
    server = RedisServer(tmp)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
