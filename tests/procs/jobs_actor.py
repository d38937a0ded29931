"""The site side of the background-job tests: changes plugin state, queues jobs and reads results.

Reads one JSON command per line on stdin and answers with one JSON line per command
(``{"event": "done", "op", "ok", ...}``). The workers are separate ``manage.py db_worker``
processes; this process never runs a job itself.

    {"op": "trust", "public_key": B64}
    {"op": "install", "bundle": PATH, "grant": [...], "activate": true}
    {"op": "upgrade", "slug", "bundle": PATH, "grant": [...]}
    {"op": "activate" | "deactivate", "slug"}
    {"op": "enqueue", "slug", "job", "payload"?, "delay"?, "count"?, "atomic"?}  -> {"ids": [...]}
                                ("atomic": queued inside the caller's transaction, as in an admin save)
    {"op": "redeliver", "id"}   queue the same attempt of a job again       -> {"task": id}
    {"op": "wait", "ids", "until": [statuses], "timeout"}                   -> {"runs": [...]}
    {"op": "runs", "ids"}                                                   -> {"runs": [...]}
    {"op": "logs", "slug"}      every stored line of the plugin             -> {"lines": [...]}
    {"op": "kv", "slug"}        the plugin's key-value pairs                -> {"kv": {key: value}}
    {"op": "posts", "count"}    create published posts                      -> {"ids": [...]}
    {"op": "save_post", "id"}   save a post again (fires save_post)
    {"op": "scores"}            -> {"posts": [{post, score}, ...]}
    {"op": "tasks", "ids"}      the task backend's tasks carrying these jobs -> {"tasks": [...]}
                                (database rows, or RQ jobs in Redis with TASKS_BACKEND=rq)
    {"op": "api_jobs", "slug"}  GET /api/plugins/{slug}/jobs/ as a superuser -> {"status", "body"}
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _django import serve_commands

ACTOR = "tests: jobs actor"


def _run_row(run: Any) -> dict[str, Any]:
    return {
        "id": run.id, "plugin": run.plugin_slug, "version": run.version, "job": run.job, "status": run.status,
        "attempts": run.attempts, "duplicates": run.duplicates, "enqueued_by": run.enqueued_by,
        "error_code": run.error_code, "error": run.error, "result": run.result, "payload": run.payload,
        "started_at": run.started_at.timestamp() if run.started_at else None,
        "finished_at": run.finished_at.timestamp() if run.finished_at else None,
    }


def _rq_tasks(ids: list[str]) -> list[dict[str, Any]]:
    """The RQ jobs (in Redis) carrying these plugin jobs: queued, scheduled, running or finished."""
    import django_rq
    from rq.job import Job
    from rq.registry import FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    queue = django_rq.get_queue("plugin")
    job_ids = set(queue.get_job_ids())
    for registry in (ScheduledJobRegistry, StartedJobRegistry, FinishedJobRegistry):
        job_ids.update(registry(queue=queue).get_job_ids())
    tasks = []
    for job in Job.fetch_many(sorted(job_ids), connection=queue.connection):
        if job is None:
            continue
        key = job.kwargs.get("job_id") or job.id
        if key in ids:
            tasks.append({"id": job.id, "key": key, "status": getattr(job.get_status(), "value", None),
                          "worker_ids": [job.worker_name] if job.worker_name else [],
                          "attempt": job.kwargs.get("attempt", 1)})
    return tasks


def run(command: dict[str, Any]) -> dict[str, Any]:
    from django.conf import settings
    from django.db import close_old_connections

    from gonext_plugins import bundle, jobs, lifecycle
    from gonext_plugins.models import PluginJobRun, PluginLogEntry

    close_old_connections()
    op = command["op"]
    if op == "trust":
        lifecycle.trust_key("Jobs tests publisher", command["public_key"], ACTOR)
        return {}
    if op == "install":
        data = bundle.read(Path(command["bundle"]).read_bytes())
        result = lifecycle.install(data, command.get("grant", []), ACTOR,
                                   activate=command.get("activate", False))
        return {"changed": result.changed}
    if op == "upgrade":
        data = bundle.read(Path(command["bundle"]).read_bytes())
        return {"changed": lifecycle.upgrade(command["slug"], data, command.get("grant", []), ACTOR).changed}
    if op in ("activate", "deactivate"):
        return {"changed": getattr(lifecycle, op)(command["slug"], ACTOR).changed}
    if op == "enqueue":
        from django.db import transaction

        delay = command.get("delay")
        with transaction.atomic() if command.get("atomic") else contextlib.nullcontext():
            ids = [jobs.enqueue(command["slug"], command["job"], command.get("payload"),
                                timedelta(seconds=delay) if delay else None).id
                   for _ in range(command.get("count", 1))]
        return {"ids": ids}
    if op == "redeliver":
        from gonext_plugins.tasks import run_plugin_job

        row = PluginJobRun.objects.get(pk=command["id"])
        task = run_plugin_job.enqueue(row.plugin_slug, row.job, row.payload, job_id=row.id,
                                      attempt=command.get("attempt", 1))
        return {"task": str(task.id)}
    if op in ("wait", "runs"):
        ids = command["ids"]
        deadline = time.monotonic() + command.get("timeout", 30)
        until = set(command.get("until", ()))
        while True:
            rows = {run.id: run for run in PluginJobRun.objects.filter(pk__in=ids)}
            done = op == "runs" or all(i in rows and rows[i].status in until for i in ids)
            if done or time.monotonic() > deadline:
                return {"runs": [_run_row(rows[i]) for i in ids if i in rows], "timed_out": not done}
            time.sleep(0.05)
            close_old_connections()
    if op == "logs":
        lines = PluginLogEntry.objects.filter(plugin=command["slug"]).order_by("id")
        return {"lines": [{"message": line.message, "source": line.source, "level": line.level,
                           "version": line.version} for line in lines]}
    if op == "kv":
        from gonext_plugins.models import PluginKV

        rows = PluginKV.objects.filter(plugin_slug=command["slug"]).order_by("key")
        return {"kv": {row.key: row.value for row in rows}}
    if op == "posts":
        from project.blog.models import Post

        start = Post.objects.count()
        ids = [Post.objects.create(title=f"Post {n} about growing tomatoes", slug=f"post-{n}",
                                   body="tomatoes growing " * (n % 200)).pk
               for n in range(start + 1, start + command["count"] + 1)]
        return {"ids": ids}
    if op == "save_post":
        from project.blog.models import Post

        post = Post.objects.get(pk=command["id"])
        post.title = command.get("title", post.title)
        post.save()
        return {}
    if op == "scores":
        from project.blog.models import Post

        return {"posts": [{**post.to_plugin_json(), "score": post.meta_value("seo_score")}
                          for post in Post.objects.order_by("id")]}
    if op == "tasks" and settings.TASKS_BACKEND == "rq":
        return {"tasks": _rq_tasks(command["ids"])}
    if op == "api_jobs":
        import json

        from django.contrib.auth.models import User
        from django.test import Client

        admin = User.objects.filter(username="jobs-admin").first() or User.objects.create_superuser(
            "jobs-admin", "admin@example.com", "x")
        client = Client()
        client.force_login(admin)
        response = client.get(f"/api/plugins/{command['slug']}/jobs/")
        return {"status": response.status_code, "body": json.loads(response.content)}
    if op == "tasks":
        from django_tasks_db.models import DBTaskResult

        tasks = []
        for task in DBTaskResult.objects.filter(queue_name="plugin"):
            kwargs = task.args_kwargs.get("kwargs", {})
            key = kwargs.get("job_id") or str(task.id)
            if key in command["ids"]:
                tasks.append({"id": str(task.id), "key": key, "status": task.status,
                              "worker_ids": task.worker_ids, "attempt": kwargs.get("attempt", 1)})
        return {"tasks": tasks}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    serve_commands(run)


if __name__ == "__main__":
    main()
