"""Background jobs run by real ``manage.py db_worker`` processes against a shared SQLite file.

One database for the module (migrated once in a subprocess), a helper process
(``tests/procs/jobs_actor.py``) that installs plugins, changes their state and queues jobs through
``gonext_plugins.jobs.enqueue``, and worker processes started with the command ``make demo`` uses.
Each test works on its own plugin slug. Guests: the SEO example (Zig) and
``tests/guests/job_guest.wat``. Nothing is mocked.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from .conftest import GUESTS, REPO, make_manifest
from .test_cross_process import (
    JsonProcess,
    base_env,
    manage,
    postgres_url,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.slow

PROCS = Path(__file__).resolve().parent / "procs"
SEO = REPO / "examples" / "plugins" / "seo"
RETRY_BASE = 0.2  # JOB_RETRY_BASE_SECONDS for the workers: retries after 0.2, 0.4, 0.8 s
FINAL = ["succeeded", "failed", "plugin_inactive", "skipped"]


class Worker:
    """``manage.py db_worker --queue-name plugin`` in its own process, its output kept for failures."""

    command = ["db_worker", "--queue-name", "plugin", "--interval", "0.05", "--no-startup-delay",
               "--no-reload", "--worker-id", "{name}", "-v", "1"]
    ready_line = "Starting worker"

    def __init__(self, env: dict[str, str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", *(arg.format(name=name) for arg in self.command)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.output: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if self.ready_line in line:
                self.started.set()

    def wait_started(self, timeout: float = 30) -> None:
        assert self.started.wait(timeout), f"worker {self.name} did not start:\n{''.join(self.output)}"

    def stop(self) -> None:
        """SIGTERM: the worker finishes its task and exits (and its log writer flushes at exit)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Site:
    """The shared database, the actor, and helpers over it."""

    worker_class: type[Worker] = Worker

    def __init__(self, workdir: Path, database_url: str | None = None, **env: str) -> None:
        from gonext_plugins import signing

        self.workdir = workdir
        media = workdir / "media"
        media.mkdir()
        self.env = base_env(database_url or f"sqlite:///{workdir / 'db.sqlite3'}", media)
        self.env["GONEXT_JOB_RETRY_BASE_SECONDS"] = str(RETRY_BASE)
        self.env.update(env)
        manage(self.env, "migrate", "--noinput", "-v0")
        self.private, public = signing.generate_key()
        self.actor = JsonProcess([sys.executable, str(PROCS / "jobs_actor.py")], self.env, "jobs actor")
        self.actor.expect(event="ready")
        self.do("trust", public_key=public)
        self.workers: list[Worker] = []

    def do(self, op: str, *, wait_for: float = 60, ok: bool = True, **fields: Any) -> dict[str, Any]:
        self.actor.send(op=op, **fields)
        done = self.actor.expect(event="done", op=op, timeout=wait_for)
        assert done["ok"] is ok, done
        return done

    def worker(self, name: str) -> Worker:
        worker = self.worker_class(self.env, name)
        self.workers.append(worker)
        return worker

    def bundle(self, filename: str, wasm: bytes, **manifest: Any) -> str:
        from gonext_plugins import bundle

        path = self.workdir / f"{filename}.gnplugin"
        path.write_bytes(bundle.sign(bundle.pack(make_manifest(**manifest), wasm), self.private))
        return str(path)

    def install_job_guest(self, slug: str, *, max_retries: int = 2, marker: str = "v1",
                          version: str = "1.0.0", activate: bool = True) -> None:
        path = self.bundle(f"{slug}-{version}", job_guest(marker), **job_manifest(slug, max_retries, version))
        self.do("install", bundle=path, grant=["kv", "jobs.enqueue"], activate=activate)

    def enqueue(self, slug: str, job: str, payload: Any = None, **fields: Any) -> list[str]:
        return list(self.do("enqueue", slug=slug, job=job, payload=payload, **fields)["ids"])

    def wait(self, ids: list[str], until: list[str] | None = None,
             timeout: float = 30) -> list[dict[str, Any]]:
        done = self.do("wait", ids=ids, until=until or FINAL, timeout=timeout, wait_for=timeout + 30)
        assert not done["timed_out"], (done["runs"], self.worker_output())
        return list(done["runs"])

    def guest_lines(self, slug: str, *needles: str, timeout: float = 5,
                    expect: int | None = None) -> list[str]:
        """The plugin's guest log lines (written by each worker's log writer thread, a little after
        the job's record is final): once there are ``expect`` of them and every one of ``needles``
        is in one of them, or when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line["message"] for line in self.do("logs", slug=slug)["lines"]
                     if line["source"] == "guest"]
            done = (expect is None or len(lines) >= expect) and all(any(n in line for line in lines)
                                                                    for n in needles)
            if done or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    def queued_by_seo(self, timeout: float = 10) -> str:
        """The id of the job the SEO plugin's save_post queued through ``jobs.enqueue`` (its log
        says "queued seo.recompute-scores (job ID)" after its other save_post lines)."""
        deadline = time.monotonic() + timeout
        while True:
            queued = [line for line in self.guest_lines("seo")
                      if line.startswith("queued seo.recompute-scores")]
            if queued:
                return queued[-1].rsplit("job ", 1)[1].rstrip(")")
            assert time.monotonic() < deadline, self.guest_lines("seo")
            time.sleep(0.1)

    def host_lines(self, slug: str, *needles: str, timeout: float = 5) -> list[str]:
        """The plugin's host log lines, once every one of ``needles`` is in one of them (each
        worker's log writer stores its lines a little after the job's record is final)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line["message"] for line in self.do("logs", slug=slug)["lines"]
                     if line["source"] == "host"]
            if all(any(n in line for line in lines) for n in needles) or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    def worker_output(self) -> str:
        return "\n".join(f"--- {w.name}:\n{''.join(w.output[-60:])}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.actor.stop()


def job_guest(marker: str = "v1") -> bytes:
    """tests/guests/job_guest.wat; ``marker`` (two characters) replaces what ``whoami`` answers."""
    text = (GUESTS / "job_guest.wat").read_text()
    assert len(marker) == 2
    return wasmtime.wat2wasm(text.replace('{\\"v\\":\\"v1\\"}', '{\\"v\\":\\"' + marker + '\\"}'))


def job_manifest(slug: str, max_retries: int = 2, version: str = "1.0.0") -> dict[str, Any]:
    return {"slug": slug, "name": slug, "version": version, "capabilities": ["kv", "jobs.enqueue"],
            "jobs": [{"name": name, "maxRetries": max_retries}
                     for name in ("echo", "flaky", "fail", "trap", "whoami")]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("jobs-worker"))
    try:
        site.worker("w1").wait_started()
        yield site
    finally:
        site.close()


# --- the SEO plugin -------------------------------------------------------------------------------


def test_seo_job_recomputes_every_score_through_host_functions(site: Site) -> None:
    """Happy path: site code queues seo.recompute-scores, a worker runs it, every post gets its
    score through posts.list + posts.meta_set; saving a post queues the job from the plugin itself."""
    if os.environ.get("SKIP_ZIG") or __import__("importlib").util.find_spec("ziglang") is None:
        pytest.skip("ziglang is not installed")
    from gonext_plugins.devtools.zigbuild import build_zig

    from .runtime.test_seo_plugin_runtime import expected_score

    site.do("posts", count=30)  # before the plugin: no save_post jobs yet
    manifest = (SEO / "manifest.json").read_text()
    path = site.workdir / "seo.gnplugin"
    from gonext_plugins import bundle

    path.write_bytes(bundle.sign(bundle.pack(manifest, build_zig(SEO).read_bytes()), site.private))
    site.do("install", bundle=str(path), activate=True,
            grant=["posts.read", "posts.write", "hooks.subscribe", "jobs.enqueue"])

    [job_id] = site.enqueue("seo", "seo.recompute-scores", {})
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded", run
    assert run["result"] == {"updated": 30, "next_offset": None}
    assert run["attempts"] == 1 and run["version"] == "1.4.0" and run["enqueued_by"] == "site"
    posts = site.do("scores")["posts"]
    assert len(posts) == 30
    assert all(post["score"] == expected_score(post) for post in posts), posts
    recomputed = f"recomputed 30 SEO scores (task {job_id})"
    assert any(recomputed in line for line in site.guest_lines("seo", recomputed))

    # Saving a post (what the admin does) scores it inline and queues the job through jobs.enqueue.
    site.do("save_post", id=posts[0]["id"], title="A much better title about growing tomatoes")
    plugin_job = site.queued_by_seo()
    [run] = site.wait([plugin_job])
    assert run["status"] == "succeeded" and run["enqueued_by"] == "plugin", run
    host = site.host_lines("seo", f"{plugin_job}: started", f"{plugin_job}: succeeded")
    assert any(f"job seo.recompute-scores {plugin_job}: started" in line for line in host), host
    assert any(f"job seo.recompute-scores {plugin_job}: succeeded" in line for line in host), host


# --- retries, errors, duplicates --------------------------------------------------------------------


def test_trap_is_retried_with_the_same_id_then_succeeds(site: Site) -> None:
    site.install_job_guest("jobs-flaky")
    [job_id] = site.enqueue("jobs-flaky", "flaky", {"n": 1})
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["attempts"] == 2, run
    assert run["result"] == {"ok": True}
    assert run["error_code"] == "" and run["error"] == ""
    # The retry was a second task that carried the first one's id as the key the guest saw.
    tasks = site.do("tasks", ids=[job_id])["tasks"]
    assert sorted(t["attempt"] for t in tasks) == [1, 2] and {t["key"] for t in tasks} == {job_id}
    assert job_id in {t["id"] for t in tasks}  # the key is the first task's own id
    assert site.guest_lines("jobs-flaky", expect=1) == [f"ran {job_id}"]
    host = site.host_lines("jobs-flaky", f"{job_id}: trap on attempt 1")
    assert any(f"{job_id}: trap on attempt 1" in line and f"retry 1 of 2 in {RETRY_BASE:g} s" in line
               for line in host), host


def test_guest_error_fails_at_once(site: Site) -> None:
    site.install_job_guest("jobs-fail")
    [job_id] = site.enqueue("jobs-fail", "fail")
    [run] = site.wait([job_id])
    assert run["status"] == "failed" and run["attempts"] == 1 and run["error_code"] == "error", run
    assert len(site.do("tasks", ids=[job_id])["tasks"]) == 1  # no retry was queued


def test_traps_past_max_retries_fail(site: Site) -> None:
    site.install_job_guest("jobs-trap", max_retries=1)
    [job_id] = site.enqueue("jobs-trap", "trap")
    [run] = site.wait([job_id])
    assert run["status"] == "failed" and run["attempts"] == 2 and run["error_code"] == "trap", run


def test_duplicate_delivery_of_a_completed_id_is_skipped(site: Site) -> None:
    site.install_job_guest("jobs-dup")
    [job_id] = site.enqueue("jobs-dup", "echo", {"hello": "world"})
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["result"]["id"] == job_id
    assert run["result"]["payload"] == {"hello": "world"}
    site.do("redeliver", id=job_id)  # the same attempt delivered again (a second task)
    deadline = time.monotonic() + 15
    while site.do("runs", ids=[job_id])["runs"][0]["duplicates"] < 1:
        assert time.monotonic() < deadline, site.worker_output()
        time.sleep(0.1)
    [again] = site.do("runs", ids=[job_id])["runs"]
    assert again["status"] == "succeeded" and again["attempts"] == 1
    assert again["finished_at"] == run["finished_at"]
    assert site.guest_lines("jobs-dup", expect=1) == [f"ran {job_id}"]  # the guest ran once
    assert any("duplicate delivery of attempt 1 skipped" in line
               for line in site.host_lines("jobs-dup", "duplicate delivery"))


# --- plugin state changes while jobs wait ------------------------------------------------------------


def test_jobs_of_a_deactivated_plugin_wait_then_fail_plugin_inactive(site: Site) -> None:
    site.install_job_guest("jobs-off", max_retries=2)
    ids = site.enqueue("jobs-off", "echo", count=3, delay=0.5)  # still queued when deactivated
    site.do("deactivate", slug="jobs-off")
    runs = site.wait(ids, timeout=30)
    for run in runs:
        assert run["status"] == "plugin_inactive" and run["attempts"] == 3, run
        assert "plugin 'jobs-off' is inactive" in run["error"], run
    assert site.guest_lines("jobs-off") == []  # never ran
    # A waiting job runs once the plugin is back.
    site.do("activate", slug="jobs-off")
    [job_id] = site.enqueue("jobs-off", "echo", delay=0.3)
    site.do("deactivate", slug="jobs-off")
    site.wait([job_id], until=["waiting"])
    site.do("activate", slug="jobs-off")
    [run] = site.wait([job_id])
    assert run["status"] == "succeeded" and run["attempts"] >= 2, run


def test_hot_reload_between_two_jobs_runs_the_second_on_the_new_version(site: Site) -> None:
    site.install_job_guest("jobs-hot", marker="v1")
    [first] = site.enqueue("jobs-hot", "whoami")
    [run1] = site.wait([first])
    assert run1["result"] == {"v": "v1"} and run1["version"] == "1.0.0"
    path = site.bundle("jobs-hot-2.0.0", job_guest("v2"), **job_manifest("jobs-hot", version="2.0.0"))
    site.do("upgrade", slug="jobs-hot", bundle=path, grant=["kv", "jobs.enqueue"])
    [second] = site.enqueue("jobs-hot", "whoami")
    [run2] = site.wait([second])
    assert run2["result"] == {"v": "v2"} and run2["version"] == "2.0.0", run2


# --- two workers ---------------------------------------------------------------------------------


def test_hundred_jobs_two_workers_each_run_exactly_once(site: Site) -> None:
    site.install_job_guest("jobs-many")
    site.worker("w2").wait_started()
    hundred_jobs_two_workers(site)


def test_hundred_jobs_two_workers_on_postgresql(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The same on a throwaway PostgreSQL cluster (row locks, not SQLite's one writer)."""
    site = Site(tmp_path, postgres_url)
    try:
        site.install_job_guest("jobs-many")
        site.worker("w1").wait_started()
        site.worker("w2").wait_started()
        hundred_jobs_two_workers(site)
    finally:
        site.close()


def hundred_jobs_two_workers(site: Site) -> None:
    ids = site.enqueue("jobs-many", "echo", count=100)
    runs = site.wait(ids, timeout=60)
    assert {run["status"] for run in runs} == {"succeeded"}
    assert all(run["attempts"] == 1 and run["duplicates"] == 0 and run["result"]["id"] == run["id"]
               for run in runs)
    # Each id ran exactly once: one "ran <id>" line from the guest and one start line from the host.
    ran = collections.Counter(line.removeprefix("ran ") for line in site.guest_lines("jobs-many", expect=100))
    assert set(ran) == set(ids) and set(ran.values()) == {1}, ran.most_common(3)
    host = site.host_lines("jobs-many", *(f"{i}: started" for i in ids))
    starts = collections.Counter(line.split(" ")[2].rstrip(":") for line in host if ": started" in line)
    assert set(starts) == set(ids) and set(starts.values()) == {1}
    # Both workers took part.
    tasks = site.do("tasks", ids=ids)["tasks"]
    assert len(tasks) == 100
    by_worker = collections.Counter(worker for task in tasks for worker in task["worker_ids"])
    assert set(by_worker) == {"w1", "w2"}, by_worker
