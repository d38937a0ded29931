"""A whole cluster on one machine, for the cluster test: PostgreSQL, Redis, three web processes
(uvicorn, the command ``make serve`` runs) and two job workers (``manage.py plugin_worker``), each
on a free loopback port with its files under one temp dir, plus a helper process (``jobs_actor``)
that queues jobs and reads results the way site code does. Nothing is mocked.

Every process logs to ``<tmp>/logs/<name>.log``; :meth:`Cluster.tails` prints their ends when a
check fails. :meth:`Cluster.close` kills every process group, even after an error.

The deployment the issue describes, configured the way docs/deploy.md says, through the demo
site's environment variables:
- S3 blobs: a SeaweedFS S3 gateway (``tests.servers.s3_server``, started while PostgreSQL and Redis
  start) holds every plugin blob (``GONEXT_S3_*``), and each process has its own ``MEDIA_ROOT``, so
  no blob can come from a shared local disk: only the compiled cache lives there, per process.
- The shared cache: ``GONEXT_SHARED_CACHE_URL`` puts the log rate limit and the throttles in Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .. import servers
from ..api.server import manage, serve_command
from ..conftest import REPO, guest_wasm, make_manifest
from ..test_cross_process import JsonProcess

PROCS = REPO / "tests" / "procs"

SYNC_INTERVAL = 0.5
LOG_RATE, LOG_BURST = 2.0, 20  # one plugin's log budget: 20 lines at once, then 2 a second
HARD_TIMEOUT_MS = 3000  # the 'stall' job spins until this deadline unless its worker is killed first
JOB_STALL_SECONDS = 4.0  # over the hard deadline: no attempt still alive is ever taken back

SETUP = """
import json
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.authtoken.models import Token
from gonext_plugins import lifecycle
from project.blog.models import Post
lifecycle.trust_key("Cluster publisher", PUBLIC_KEY, "cluster setup")
admin = User.objects.create_superuser("admin", "admin@example.com", "admin-pw")
Post.objects.create(title="Hello cluster", slug="hello-cluster", body="A post served by three processes.")
client = Client()
client.force_login(admin)
token = Token.objects.create(user=admin).key
print(json.dumps({"token": token, "sessionid": client.cookies["sessionid"].value}))
"""

MARKER = "Marked by the gonext marker plugin"  # what tests/guests/marker_guest.wat appends
POST_PATH = "/posts/hello-cluster/"
JOB_SLUG = "clusterjobs"
JOBS = ("echo", "flaky", "stall")


class Proc:
    """One of our processes, in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process group and return (SIGSTOP/SIGCONT pause and resume it)."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.killpg(self.proc.pid, sig)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (uvicorn or the worker and anything they started)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"
        return f"--- {self.name} ({'running' if self.alive else 'stopped'})\n{text[-chars:]}"


class Cluster:
    """Start with :meth:`start`; always :meth:`close` (the fixture does)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.log_dir = tmp / "logs"
        self.log_dir.mkdir()
        self.postgres = servers.PostgresServer()
        self.redis = servers.RedisServer(tmp)
        self.s3: servers.S3Server | None = None
        self._s3_starting: Future[servers.S3Server] | None = None
        self._stack = contextlib.ExitStack()
        self.webs: list[Proc] = []
        self.ports: list[int] = []
        self.workers: list[Proc] = []
        self.actor: JsonProcess | None = None
        self.token = self.sessionid = ""
        self.private_key = ""

    # --- start and stop ---------------------------------------------------------------------------

    def env(self, name: str) -> dict[str, str]:
        """The environment of one of our processes: the demo site's settings (``tests.settings``,
        for the test knobs) pointed at this cluster's servers."""
        env = {key: value for key, value in os.environ.items()
               if key not in ("TEST_DATABASE_NAME", "GONEXT_DEV_MODE", "PYTEST_CURRENT_TEST")}
        assert self.s3 is not None, "the S3 server starts before any of our processes"
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=self.postgres.url, REDIS_URL=self.redis.url,
            MEDIA_ROOT=str(self.tmp / f"media-{name}"), STATIC_ROOT=str(self.tmp / "static"), DEBUG="0",
            SECRET_KEY="cluster-test-secret-key-not-for-production", ALLOWED_HOSTS="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1", LOG_LEVEL="INFO",
            GONEXT_SYNC_INTERVAL=str(SYNC_INTERVAL), GONEXT_JOB_RETRY_BASE_SECONDS="0.2",
            GONEXT_LOG_RATE=str(LOG_RATE), GONEXT_LOG_BURST=str(LOG_BURST), GONEXT_FUEL="none",
            GONEXT_HARD_TIMEOUT_MS=str(HARD_TIMEOUT_MS), GONEXT_JOB_STALL_SECONDS=str(JOB_STALL_SECONDS),
            GONEXT_SHARED_CACHE_URL=self.redis.url,
            GONEXT_S3_BUCKET=self.s3.bucket, GONEXT_S3_ENDPOINT_URL=self.s3.endpoint_url,
            GONEXT_S3_REGION="us-east-1", GONEXT_S3_ADDRESSING_STYLE="path",
            AWS_ACCESS_KEY_ID=self.s3.access_key, AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
        )
        return env

    def start(self) -> Cluster:
        from gonext_plugins import signing

        # SeaweedFS takes the longest to come up (master, volume, filer, gateway): start it first,
        # on a thread, while PostgreSQL and Redis start here.
        with ThreadPoolExecutor(1) as pool:
            self._s3_starting = pool.submit(self._stack.enter_context, servers.s3_server())
            self.postgres.create()
            self.redis.start()
            self.s3 = self._s3_starting.result()
        setup_env = self.env("setup")
        manage(setup_env, "migrate", "--noinput", "-v0")
        self.private_key, public = signing.generate_key()
        out = manage(setup_env, "shell", "-c", SETUP.replace("PUBLIC_KEY", repr(public)))
        fields = json.loads(out.strip().splitlines()[-1])
        self.token, self.sessionid = fields["token"], fields["sessionid"]
        for number in (1, 2, 3):
            self.start_web(number)
        for number in (1, 2):
            self.start_worker(f"worker{number}")
        self.actor = JsonProcess([sys.executable, str(PROCS / "jobs_actor.py")], self.env("actor"),
                                 "jobs actor")
        self.actor.expect(event="ready")
        for port in self.ports:
            self.wait_ready(port)
        return self

    def start_web(self, number: int) -> None:
        for _attempt in range(3):  # a free port may be taken between finding and binding it
            port = servers.free_port()
            web = Proc(f"web{number}", serve_command(port), self.env(f"web{number}"), self.log_dir).start()
            try:
                servers.wait_for_port(port, web.proc, web.name, timeout=60)
            except AssertionError:
                web.kill()
                continue
            self.webs.append(web)
            self.ports.append(port)
            return
        raise AssertionError(f"web{number} did not start:\n{self.tails()}")

    def start_worker(self, name: str) -> Proc:
        worker = Proc(name, [sys.executable, "manage.py", "plugin_worker", "--interval", "0.05",
                             "--no-startup-delay", "--no-reload", "--worker-id", name, "-v", "1"],
                      self.env(name), self.log_dir).start()
        self.workers.append(worker)
        return worker

    def wait_ready(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, urllib.error.URLError):
                if self.get(port, POST_PATH)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the server on {port} did not answer {POST_PATH} within {timeout} s\n"
                             f"{self.tails()}")

    def close(self) -> None:
        for proc in [*self.webs, *self.workers]:
            proc.kill(signal.SIGTERM)
        if self.actor is not None:
            self.actor.stop()
        if self._s3_starting is not None:  # PostgreSQL failed while weed was starting: let it finish
            with contextlib.suppress(BaseException):
                self._s3_starting.result()
        with contextlib.suppress(Exception):
            self._stack.close()
        self.redis.stop()
        self.postgres.remove()

    def tails(self) -> str:
        """The end of every process's log, for a failing check's message."""
        parts = [proc.tail() for proc in [*self.webs, *self.workers]]
        if self.actor is not None:
            parts.append(f"--- jobs actor\n{''.join(self.actor.stderr)[-2000:]}")
        parts.append(f"--- postgres\n{self.postgres.log.read_text(errors='replace')[-1500:]}"
                     if self.postgres.log.exists() else "--- postgres: no log")
        return "\n".join(parts)

    # --- talking to it ----------------------------------------------------------------------------

    def url(self, web: int) -> str:
        """``web`` counts from 1, as the issue does."""
        return f"http://127.0.0.1:{self.ports[web - 1]}"

    def get(self, port: int, path: str) -> tuple[int, str, dict[str, str]]:
        """A plain GET: status, body, headers (an error status is an answer, not an exception)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace"), dict(error.headers)

    def page(self, web: int) -> tuple[int, str, dict[str, str]]:
        return self.get(self.ports[web - 1], POST_PATH)

    def api(self, web: int, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url(web) + path, timeout=30,
                                headers={"Authorization": f"Token {self.token}"}, **kwargs)

    def do(self, op: str, *, wait_for: float = 60, **fields: Any) -> dict[str, Any]:
        """A command to the jobs actor (tests/procs/jobs_actor.py): its answer, which must be ok."""
        assert self.actor is not None
        self.actor.send(op=op, **fields)
        done = self.actor.expect(event="done", op=op, timeout=wait_for)
        assert done["ok"] is True, (done, self.tails())
        return done

    def signed_bundle(self, slug: str, wasm: bytes, **manifest: Any) -> bytes:
        from gonext_plugins import bundle

        raw = bundle.pack(make_manifest(slug=slug, name=slug, **manifest), wasm)
        return bundle.sign(raw, self.private_key)

    def job_bundle(self) -> bytes:
        return self.signed_bundle(JOB_SLUG, guest_wasm("job_guest"), capabilities=["kv", "jobs.enqueue"],
                                  jobs=[{"name": name, "maxRetries": 2} for name in JOBS])

    def websocket(self, web: int, slug: str) -> Any:
        """A WebSocket to the live log stream of ``slug`` on ``web``, logged in as the admin."""
        from websockets.sync.client import connect

        port = self.ports[web - 1]
        return connect(f"ws://127.0.0.1:{port}/_/plugins/dev/logs/{slug}/", open_timeout=15,
                       additional_headers={"Cookie": f"sessionid={self.sessionid}",
                                           "Origin": f"http://127.0.0.1:{port}"})


@contextlib.contextmanager
def running_cluster(tmp: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp)
    try:
        yield cluster.start()
    finally:
        cluster.close()
