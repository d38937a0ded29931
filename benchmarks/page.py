"""``python -m benchmarks page``: a blog post page with the SEO plugin active vs no plugin.

Both rows render the same page of the demo site through Django's full request path (middleware,
URL routing, ORM, templates): one with the real SEO plugin (compiled from Zig source, signed,
installed and active: its ``wp_head`` action and ``the_content`` filter run on every request), one
with it deactivated. Rounds alternate between the two so drift on a busy machine hits both alike.
Prints a JSON document, then a table. The goal: the plugin page keeps at least 80% of the plain
page's requests per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def setup_django(workdir: Path) -> None:
    """A throwaway SQLite database and media root, migrated, with the demo's posts."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(workdir / "media")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115


def requests_per_second(client: Any, url: str, seconds: float) -> float:
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        done += 1
    return done / (time.perf_counter() - start)


def run(rounds: int, seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="gonext-bench-page-"))
    setup_django(workdir)
    from django.core.management import call_command
    from django.test import Client

    from gonext_plugins import lifecycle
    from gonext_plugins.registry import registry
    from project.blog.models import Post

    call_command("demo_plugin", key=str(workdir / "demo.key"), stdout=open(os.devnull, "w"))  # noqa: SIM115
    post = Post.objects.get(slug="hello-plugins")
    url = post.get_absolute_url()
    client = Client()
    assert b"application/ld+json" in client.get(url).content, "the SEO plugin must be active"

    def set_active(active: bool) -> None:
        (lifecycle.activate if active else lifecycle.deactivate)("seo", "benchmark")
        registry.sync(force=True)
        marker = b"application/ld+json" in client.get(url).content
        assert marker == active

    samples: dict[str, list[float]] = {"no plugin": [], "SEO plugin active": []}
    for _ in range(rounds):
        for label, active in (("no plugin", False), ("SEO plugin active", True)):
            set_active(active)
            requests_per_second(client, url, min(seconds, 0.3))  # warm up
            samples[label].append(requests_per_second(client, url, seconds))
    plain = statistics.median(samples["no plugin"])
    with_plugin = statistics.median(samples["SEO plugin active"])
    loaded = registry.get("seo")
    return {
        "benchmark": "page",
        "url": url,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "rows": {label: {"rps_median": round(statistics.median(v), 1),
                         "rps_rounds": [round(x, 1) for x in v]} for label, v in samples.items()},
        "ratio": round(with_plugin / plain, 3),
        "goal": ">= 0.80",
        "meets_goal": with_plugin / plain >= 0.8,
        "plugin_calls_per_request": 2,
        "plugin": {"slug": "seo", "version": loaded.version if loaded else None},
    }


def table(results: dict[str, Any]) -> str:
    lines = [f"{'page ' + results['url']:<34} {'req/s (median)':>15}  rounds", "-" * 72]
    for label, row in results["rows"].items():
        lines.append(f"{label:<34} {row['rps_median']:>15.1f}  {row['rps_rounds']}")
    lines.append(f"ratio (plugin / plain): {results['ratio']:.3f}  goal {results['goal']}: "
                 f"{'met' if results['meets_goal'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks page", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    results = run(args.rounds, args.seconds)
    print(json.dumps(results, indent=2))
    print()
    print(table(results))
    return 0
