"""Issue #19's cluster, checked end to end: PostgreSQL, Redis, three web processes and two job
workers (tests/cluster/harness.py), one cluster for all the checks below, which run in this order
and build on each other's state (a plugin installed in the first is deactivated in the second).

Wall-clock bounds are the issue's guarantees, measured from the moment the change's API call
answered to the start of the first request that saw it (so the request's own time never counts
against the bound): a new plugin serves everywhere within SYNC_INTERVAL (+ slack, said below), a
deactivation is gone everywhere within 1 s, a worker's log line reaches a WebSocket on another
process within 500 ms. The figures are printed (``pytest -s``).

The log flood is held to one budget by the shared cache (Redis), and every blob lives in S3
(SeaweedFS): each process has its own MEDIA_ROOT.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pytest
from django.core.cache import caches
from websockets.exceptions import ConnectionClosed, WebSocketException

from gonext_plugins.cluster import SharedLogBudget

from ..conftest import guest_wasm
from .harness import JOB_SLUG, LOG_BURST, LOG_RATE, MARKER, SYNC_INTERVAL, Cluster

pytestmark = pytest.mark.slow

CONTENT_HOOKS = [{"name": "the_content", "kind": "filter"}]
# Loading the plugin (artifact cache, instance pool) and a page request on a loaded 2-core box:
# generous on purpose; the figure printed is the real one.
LOAD_SLACK = 1.5
DEACTIVATION_BOUND = 1.0  # the bound, asserted as it is
LOG_LINE_BOUND = 0.5  # the bound, asserted as it is


def until_pages(cluster: Cluster, webs: Iterable[int], *, marked: bool, since: float,
                bound: float) -> dict[int, float]:
    """Poll each web's blog page (one thread per web, so a slow answer from one never delays the
    others' polls) until its marker is there (or gone); returns, per web, seconds from ``since`` to
    the start of the first request that saw it. Polls up to 10 s past ``bound`` so a miss reports
    the real figure."""
    seen: dict[int, float] = {}
    errors: list[str] = []

    def poll(web: int) -> None:
        deadline = since + bound + 10
        while time.monotonic() < deadline:
            started = time.monotonic()
            status, body, _ = cluster.page(web)
            if status != 200:
                errors.append(f"web {web}: {status} {body[:500]}")
                return
            if (MARKER in body) == marked:
                seen[web] = round(started - since, 3)
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=poll, args=(web,)) for web in webs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(seen) == len(threads), (f"not seen on every web within {bound + 10:g} s: {seen}\n"
                                       f"{cluster.tails()}")
    assert all(latency <= bound for latency in seen.values()), f"over {bound} s: {seen}"
    return seen


def guest_lines(cluster: Cluster, slug: str) -> list[str]:
    return [line["message"] for line in cluster.do("logs", slug=slug)["lines"] if line["source"] == "guest"]


def host_lines(cluster: Cluster, slug: str, *needles: str, timeout: float = 10) -> list[str]:
    """The plugin's host lines once each needle is in one (each process's log writer stores its
    lines a moment after the fact)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line["message"] for line in cluster.do("logs", slug=slug)["lines"]
                 if line["source"] == "host"]
        if all(any(needle in line for line in lines) for needle in needles) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def wait_runs(cluster: Cluster, ids: list[str], until: list[str],
              timeout: float = 30) -> list[dict[str, Any]]:
    done = cluster.do("wait", ids=ids, until=until, timeout=timeout, wait_for=timeout + 30)
    assert not done["timed_out"], (done["runs"], cluster.tails())
    return list(done["runs"])


def receive_line(ws: Any, wanted: str, timeout: float) -> tuple[dict[str, Any], float]:
    """The first streamed line whose message is ``wanted``, and when it arrived (time.time())."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no line {wanted!r} within {timeout} s"
        message = json.loads(ws.recv(timeout=left))
        arrived = time.time()
        for line in message.get("lines", []) if message.get("type") == "lines" else []:
            if line["message"] == wanted:
                return line, arrived


# --- (a) and (b): plugin state crosses processes ------------------------------------------------


def test_a_plugin_installed_through_the_api_on_web1_serves_on_web2_and_web3(cluster: Cluster) -> None:
    for web in (1, 2, 3):
        assert MARKER not in cluster.page(web)[1]
    raw = cluster.signed_bundle("marker", guest_wasm("marker_guest"), capabilities=["hooks.subscribe"],
                                hooks=CONTENT_HOOKS)
    response = cluster.api(1, "POST", "/api/plugins/", files={"bundle": ("marker.gnplugin", raw)},
                           data={"grant": ["hooks.subscribe"], "activate": "true"})
    answered = time.monotonic()
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "active"
    latencies = until_pages(cluster, (2, 3), marked=True, since=answered, bound=SYNC_INTERVAL + LOAD_SLACK)
    print(f"\ninstall on web 1 -> serving on web 2 / web 3 after {latencies} s "
          f"(SYNC_INTERVAL {SYNC_INTERVAL} s)")


def test_a_deactivation_on_web3_is_gone_everywhere_within_a_second(cluster: Cluster) -> None:
    for web in (1, 2, 3):
        assert MARKER in cluster.page(web)[1]
    response = cluster.api(3, "POST", "/api/plugins/marker/deactivate/")
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    latencies = until_pages(cluster, (1, 2, 3), marked=False, since=answered, bound=DEACTIVATION_BOUND)
    print(f"\ndeactivate on web 3 -> gone on webs 1/2/3 after {latencies} s")


# --- (c) and (d): jobs ------------------------------------------------------------------------------


def test_a_job_log_line_from_worker2_reaches_a_websocket_on_web1_within_500_ms(cluster: Cluster) -> None:
    """The first line a worker ever sends pays for its writer's event loop and Redis connection
    (bounded generously, printed); the issue's 500 ms bound is about the steady state after it,
    asserted on the median of three more lines (one slow answer on a loaded box is not a miss)."""
    response = cluster.api(1, "POST", "/api/plugins/", data={"grant": ["kv", "jobs.enqueue"],
                                                             "activate": "true"},
                           files={"bundle": ("jobs.gnplugin", cluster.job_bundle())})
    assert response.status_code == 201, response.text
    worker1, worker2 = cluster.workers[0], cluster.workers[1]
    latencies: list[float] = []
    with cluster.websocket(1, JOB_SLUG) as ws:
        assert json.loads(ws.recv(timeout=15))["type"] == "backlog"
        worker1.send_signal(signal.SIGSTOP)  # paused, so worker 2 takes the jobs
        try:
            for n in range(4):
                [key] = cluster.do("enqueue", slug=JOB_SLUG, job="echo", payload={"n": n})["ids"]
                line, arrived = receive_line(ws, f"ran {key}", timeout=30)
                latencies.append(arrived - datetime.fromisoformat(line["time"]).timestamp())
                [task] = cluster.do("tasks", ids=[key])["tasks"]
                assert task["worker_ids"] == [worker2.name], task
        finally:
            worker1.send_signal(signal.SIGCONT)
    cold, warm = latencies[0], sorted(latencies[1:])[1]
    print(f"\njob log line: worker 2 -> WebSocket on web 1 in {cold * 1000:.0f} ms (first line of the "
          f"worker), then {', '.join(f'{x * 1000:.0f}' for x in latencies[1:])} ms")
    assert cold < 5.0, f"{cold:.3f} s"
    assert warm < LOG_LINE_BOUND, f"median {warm:.3f} s of {latencies[1:]}"


def test_a_worker_killed_mid_job_has_its_job_retried_and_finished_exactly_once(cluster: Cluster) -> None:
    """``stall`` marks its id in kv, then spins (fuel metering is off in the cluster) until its
    hard deadline: long enough to SIGKILL the worker running it. The survivor takes the run
    back after JOB_STALL_SECONDS (on its recovery timer: no other job is queued) and the retry,
    seeing the mark, finishes."""
    [key] = cluster.do("enqueue", slug=JOB_SLUG, job="stall")["ids"]
    [run] = wait_runs(cluster, [key], until=["running"], timeout=30)
    assert run["attempts"] == 1
    deadline = time.monotonic() + 30
    while key not in cluster.do("kv", slug=JOB_SLUG)["kv"]:  # the guest is in: it marked, now spins
        assert time.monotonic() < deadline, "the stall job never marked its id"
        time.sleep(0.05)
    [task] = cluster.do("tasks", ids=[key])["tasks"]
    [victim] = [worker for worker in cluster.workers if [worker.name] == task["worker_ids"]]
    victim.kill(signal.SIGKILL)
    killed = time.monotonic()
    assert wait_runs(cluster, [key], until=["running"])[0]["attempts"] == 1  # the kill left it so

    [run] = wait_runs(cluster, [key], until=["succeeded", "failed"], timeout=60)
    print(f"\nkilled worker's job finished by the other {time.monotonic() - killed:.1f} s after the kill")
    outcome = (run["status"], run["attempts"], run["duplicates"], run["error_code"])
    assert outcome == ("succeeded", 2, 0, ""), run
    assert run["result"] == {"ok": True}
    lines = [line for line in host_lines(cluster, JOB_SLUG, f"{key}: succeeded") if key in line]
    assert guest_lines(cluster, JOB_SLUG).count(f"ran {key}") == 1
    assert sum("stopped answering" in line for line in lines) == 1, lines
    assert sum(": succeeded" in line for line in lines) == 1, lines
    cluster.start_worker("worker3")  # two workers again for the checks after this one


# --- (e) and (g): one log budget, blobs in S3 -----------------------------------------------------


def test_a_log_flood_spread_over_the_three_web_processes_stays_within_one_budget(cluster: Cluster) -> None:
    """tests/guests/log_flood.wat logs one line per page view ("called the_content"). 40 views
    on each web at once (120 lines). The shared budget (gonext_plugins/cluster.py) allows
    ``budget`` lines per fixed window of the cache, cluster-wide; the flood starts just after a
    window begins, so it normally lies in one window and stores at most one budget (on a box so
    loaded that it spans more, the bound is a budget per window it touched). Three per-process
    buckets would store about 3 x LOG_BURST."""
    shared = SharedLogBudget(caches["default"], LOG_RATE, LOG_BURST)  # only its window arithmetic
    raw = cluster.signed_bundle("flood", guest_wasm("log_flood"), capabilities=["hooks.subscribe"],
                                hooks=CONTENT_HOOKS)
    response = cluster.api(1, "POST", "/api/plugins/", files={"bundle": ("flood.gnplugin", raw)},
                           data={"grant": ["hooks.subscribe"], "activate": "true"})
    assert response.status_code == 201, response.text
    for web in (1, 2, 3):  # each web has loaded it: its page view is logged
        before = len(guest_lines(cluster, "flood"))
        deadline = time.monotonic() + SYNC_INTERVAL + 10
        while len(guest_lines(cluster, "flood")) == before:
            assert time.monotonic() < deadline, f"web {web} never ran the flood plugin"
            assert cluster.page(web)[0] == 200
            time.sleep(0.1)
    time.sleep(1.0)  # the last writer batches are stored
    before = len(guest_lines(cluster, "flood"))
    views_per_web = 40

    def flood(web: int) -> None:
        for _ in range(views_per_web):
            assert cluster.page(web)[0] == 200

    # Into a fresh window (the warm-up's lines spent part of the current one).
    time.sleep(shared.window_seconds - time.time() % shared.window_seconds + 0.05)
    started, started_at = time.monotonic(), time.time()
    threads = [threading.Thread(target=flood, args=(web,)) for web in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took, ended_at = time.monotonic() - started, time.time()
    time.sleep(1.0)  # the writers store their last batches
    stored = len(guest_lines(cluster, "flood")) - before
    windows = int(ended_at // shared.window_seconds) - int(started_at // shared.window_seconds) + 1
    bound = shared.budget * windows
    per_process = 3 * (LOG_BURST + LOG_RATE * took)
    print(f"\nlog flood: {3 * views_per_web} lines over 3 processes in {took:.1f} s, {stored} stored "
          f"(one budget: {shared.budget} per {shared.window_seconds:g} s window, {windows} window(s): "
          f"bound {bound}; three per-process budgets would allow {per_process:.0f})")
    assert 0 < stored <= bound, (stored, bound)


def test_blobs_live_in_s3_and_the_other_webs_load_them_from_there(cluster: Cluster) -> None:
    """The marker plugin's blob is an object in the bucket, and web 2 and web 3, which served it
    in the first check, have a compiled module of it but no blob on their own disks (each process
    has its own MEDIA_ROOT): they fetched the bytes from S3."""
    assert cluster.s3 is not None
    listed = cluster.s3.client().list_objects_v2(Bucket=cluster.s3.bucket)
    names = [item["Key"] for item in listed.get("Contents", [])]
    response = cluster.api(2, "GET", "/api/plugins/marker/versions/")
    assert response.status_code == 200, response.text
    versions = response.json()
    versions = versions.get("results", versions) if isinstance(versions, dict) else versions
    sha = versions[0]["wasm_sha256"]
    assert any(sha in name for name in names), (sha, names)
    for web in (2, 3):  # nothing but the compiled cache on their own disks
        files = [path for path in (cluster.tmp / f"media-web{web}").rglob("*") if path.is_file()]
        assert [path for path in files if path.suffix == ".gnmod"], (web, files)  # it did load one
        assert not [path for path in files if path.suffix == ".wasm" or sha in path.name], (web, files)


# --- (f) restarts -----------------------------------------------------------------------------------


def snapshot(cluster: Cluster) -> dict[str, Any]:
    """Committed state, read through the API and the actor: plugins with their grants, the job
    plugin's kv pairs and job records."""
    plugins = cluster.api(1, "GET", "/api/plugins/")
    jobs = cluster.api(1, "GET", f"/api/plugins/{JOB_SLUG}/jobs/?page_size=100")
    assert plugins.status_code == 200 and jobs.status_code == 200, (plugins.text, jobs.text)
    return {"plugins": plugins.json(), "jobs": jobs.json(), "kv": cluster.do("kv", slug=JOB_SLUG)["kv"]}


def assert_clean_503_or_200(status: int, body: str, headers: dict[str, str], what: str) -> None:
    assert "Traceback" not in body, (what, body[:2000])
    assert status in (200, 503), (what, status, body[:2000])
    if status == 503:
        assert headers.get("Content-Type", "").startswith("application/json"), (what, headers)
        assert json.loads(body)["error"] == "database_unavailable", (what, body)
        assert headers.get("Retry-After"), (what, headers)


def streams_again(cluster: Cluster, web: int, tries: int = 10) -> float:
    """A new WebSocket on ``web`` receives a fresh job's line (a job per try, until one arrives:
    the first send after a restart may be lost). Returns the seconds it took."""
    started = time.monotonic()
    for _ in range(tries):
        try:
            with cluster.websocket(web, JOB_SLUG) as ws:
                assert json.loads(ws.recv(timeout=15))["type"] == "backlog"
                [key] = cluster.do("enqueue", slug=JOB_SLUG, job="echo", payload={"again": True})["ids"]
                receive_line(ws, f"ran {key}", timeout=5)
                return time.monotonic() - started
        except (AssertionError, TimeoutError, OSError, WebSocketException):
            time.sleep(0.5)
    raise AssertionError(f"no log line streamed to web {web} after {tries} tries\n{cluster.tails()}")


def close_code_of_a_new_websocket(cluster: Cluster, web: int) -> int | None:
    """Open a log WebSocket on ``web`` and return the code it is closed with (None: not closed
    within 10 s). A refused handshake (an HTTP error status) raises instead."""
    with cluster.websocket(web, JOB_SLUG) as ws:
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        except TimeoutError:
            return None
    return None


def test_restarting_redis_then_postgresql_loses_nothing_and_everything_recovers(cluster: Cluster) -> None:
    """Our processes are never restarted: after each server comes back, pages answer, the log
    stream works and new jobs run. During the PostgreSQL outage pages and the API answer 200 or
    a clean 503 in the one error shape (never a 500 or a traceback), and a new log WebSocket is
    closed with 1013 "try again later" (never a failed handshake)."""
    ours = [*cluster.webs, *[worker for worker in cluster.workers if worker.alive]]
    before = snapshot(cluster)
    assert before["kv"], "the stall job's kv mark should be there"

    cluster.redis.stop()
    for web in (1, 2, 3):  # Redis carries only the log stream: pages do not need it
        status, body, _ = cluster.page(web)
        assert status == 200, (web, status, body[:2000])
    cluster.redis.start()
    print(f"\nafter the Redis restart, a new WebSocket streamed a job's line in "
          f"{streams_again(cluster, 1):.1f} s")

    cluster.postgres.stop()
    answers = []
    for web in (1, 2, 3):
        status, body, headers = cluster.page(web)
        assert_clean_503_or_200(status, body, headers, f"page on web {web}")
        response = cluster.api(web, "GET", "/api/plugins/")
        assert_clean_503_or_200(response.status_code, response.text, dict(response.headers),
                                f"API on web {web}")
        answers.append((status, response.status_code))
        assert close_code_of_a_new_websocket(cluster, web) == 1013, f"WebSocket on web {web}"
    cluster.postgres.start()
    recovered = time.monotonic()
    for web in (1, 2, 3):
        deadline = time.monotonic() + 30
        while cluster.page(web)[0] != 200:
            assert time.monotonic() < deadline, f"web {web} did not recover\n{cluster.tails()}"
            time.sleep(0.2)
    print(f"during the PostgreSQL outage (page, API) answered {answers}; pages 200 again after "
          f"{time.monotonic() - recovered:.1f} s")
    after = snapshot(cluster)
    assert (after["plugins"], after["kv"]) == (before["plugins"], before["kv"])
    jobs_after = {run["id"]: run for run in after["jobs"]["results"]}
    assert all(jobs_after.get(run["id"]) == run for run in before["jobs"]["results"])  # (and one more)
    [key] = cluster.do("enqueue", slug=JOB_SLUG, job="echo", payload={"after": "postgres"})["ids"]
    assert wait_runs(cluster, [key], until=["succeeded", "failed"], timeout=60)[0]["status"] == "succeeded"
    print(f"after the PostgreSQL restart, a new WebSocket streamed a job's line in "
          f"{streams_again(cluster, 1):.1f} s")
    assert all(proc.alive for proc in ours), [proc.name for proc in ours if not proc.alive]
