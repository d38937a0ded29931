"""``python -m benchmarks startup``: what a fresh worker process pays before its first page.

A parent process prepares a throwaway site (SQLite, the demo's posts, ``--plugins`` small real
plugins from :mod:`benchmarks.fleet`, active). Then each sample is a fresh Python process that gets
ready, then asks for a post page twice. Two ways to get ready: ``django.setup()`` alone (the first
page then loads every active plugin and builds the template engine), or importing the demo's
``project.asgi`` as a server does before it listens (``with_plugins()`` warms up: the first page is
a visitor's first page). "cold" samples start with the compiled-artifact cache emptied (every
plugin is compiled again, in child processes under the compile limits), "warm" ones with it
filled, as after a restart. All rows alternate so a busy machine's drift hits each. Bytecode is
written (to a private ``PYTHONPYCACHEPREFIX``, filled by one unmeasured run) even where
``PYTHONDONTWRITEBYTECODE`` is set, as in a deployed site. Prints a JSON document, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import fleet, page

FIRST_PAGE_WARM_GOAL_MS = 150.0
# label -> (compiled-artifact cache emptied first, ready by importing project.asgi (warm-up))
ROWS: dict[str, tuple[bool, bool]] = {
    "cold cache, django.setup()": (True, False),
    "warm cache, django.setup()": (False, False),
    "cold cache, asgi.py (warm-up)": (True, True),
    "warm cache, asgi.py (warm-up)": (False, True),
}


def child() -> dict[str, float]:
    """One fresh process's timings (run with the parent's environment). Without warm-up, "ready" is
    ``django.setup()``, as any process starts (a management command, a server whose entry point does
    not warm up). With it, "ready" is the import of the demo's ``project.asgi``, as uvicorn imports it
    before it listens: set-up, the ASGI handler, ``with_plugins()``'s warm-up and asgi.py's garbage
    collector policy."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if os.environ.get("GONEXT_BENCH_WARM_UP") == "1":
        import project.asgi  # noqa: F401
    else:
        import django

        django.setup()
    ready, ready_cpu = time.perf_counter(), time.process_time()
    from django.test import Client  # the harness's own import: counted in neither figure

    url = os.environ["GONEXT_BENCH_URL"]
    client = Client()
    asked, cpu_asked = time.perf_counter(), time.process_time()
    response = client.get(url)
    first_done, first_cpu_done = time.perf_counter(), time.process_time()
    assert response.status_code == 200, response.status_code
    markers = response.content.count(b"gn-marker")
    client.get(url)
    second_done = time.perf_counter()
    return {
        "ready_ms": (ready - started) * 1000,
        "first_request_ms": (first_done - asked) * 1000,
        "second_request_ms": (second_done - first_done) * 1000,
        # This process's CPU time: on a busy machine other processes stretch the wall clock, not
        # this (a cold cache's compiles run in child processes and are not counted here).
        "ready_cpu_ms": (ready_cpu - cpu_started) * 1000,
        "first_request_cpu_ms": (first_cpu_done - cpu_asked) * 1000,
        "plugins_on_page": markers,
        "modules": len(sys.modules),
    }


def _sample(env: dict[str, str], warm_up: bool) -> dict[str, float]:
    env = {**env, "GONEXT_BENCH_WARM_UP": "1" if warm_up else "0", "GONEXT_WARM_UP": "1" if warm_up else "0"}
    out = subprocess.run([sys.executable, "-m", "benchmarks", "startup", "--child"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(samples: int, plugins: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="gonext-bench-startup-"))
    page.setup_django(workdir)
    from django.test import Client

    from gonext_plugins.conf import settings as plugin_settings
    from project.blog.models import Post

    slugs = fleet.install(plugins, workdir / "fleet.key")
    fleet.set_active(slugs, plugins)
    url = Post.objects.get(slug="hello-plugins").get_absolute_url()
    assert Client().get(url).content.count(b"gn-marker") == plugins
    cache_dir = Path(plugin_settings.cache_dir)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(GONEXT_BENCH_URL=url, PYTHONPYCACHEPREFIX=str(workdir / "pycache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(page.REPO), os.environ.get("PYTHONPATH")])))
    _sample(env, warm_up=False)  # fills the bytecode cache
    rows: dict[str, list[dict[str, float]]] = {label: [] for label in ROWS}
    for _ in range(samples):
        for label, (cold, warm_up) in ROWS.items():
            if cold:
                shutil.rmtree(cache_dir, ignore_errors=True)
            rows[label].append(_sample(env, warm_up))
    results: dict[str, Any] = {
        "benchmark": "startup",
        "plugins": plugins,
        "samples": samples,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": {},
    }
    for label, values in rows.items():
        assert all(v["plugins_on_page"] == plugins for v in values)
        results["rows"][label] = {
            key: round(statistics.median(v[key] for v in values), 1)
            for key in ("ready_ms", "ready_cpu_ms", "first_request_ms", "first_request_cpu_ms",
                        "second_request_ms", "modules")
        }
        results["rows"][label]["ready_ms_samples"] = [round(v["ready_ms"], 1) for v in values]
        results["rows"][label]["first_request_ms_samples"] = [round(v["first_request_ms"], 1) for v in values]
    # The goal is read as a visitor's first page: a server warms up before it accepts connections.
    warm = results["rows"]["warm cache, asgi.py (warm-up)"]["first_request_ms"]
    results["first_page_warm_goal_ms"] = FIRST_PAGE_WARM_GOAL_MS
    results["first_page_warm_meets_goal"] = warm <= FIRST_PAGE_WARM_GOAL_MS
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"fresh process, {results['plugins']} active plugins"
             f"{'ready ms':>10} {'ready CPU':>10} {'1st page ms':>12} {'1st CPU':>8} {'2nd page ms':>12}"
             f" {'modules':>8}", "-" * 100]
    for label, row in results["rows"].items():
        lines.append(f"{label:<36}{row['ready_ms']:>10.1f} {row['ready_cpu_ms']:>10.1f} "
                     f"{row['first_request_ms']:>12.1f} {row['first_request_cpu_ms']:>8.1f} "
                     f"{row['second_request_ms']:>12.1f} {row['modules']:>8.0f}")
    lines.append(f"a visitor's first page (warm cache, warm-up): goal <= "
                 f"{results['first_page_warm_goal_ms']:.0f} ms: "
                 f"{'met' if results['first_page_warm_meets_goal'] else 'NOT met'}   "
                 f"(medians of {results['samples']}; load average {results['load_average']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks startup", description=__doc__)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--plugins", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child()))
        return 0
    results = run(args.samples, args.plugins)
    print(json.dumps(results, indent=2))
    print()
    print(table(results))
    return 0
