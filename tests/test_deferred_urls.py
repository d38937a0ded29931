"""The API's routes and the dev install view are imported on first use (issue #18, start-up): a
fresh process serving the site's own pages and the app's other routes never imports DRF's views or
drf-spectacular; the API's URL names and paths stay what they were, reversed or resolved first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = r"""
import json, sys
import django
django.setup()
from django.urls import resolve, reverse

HEAVY = ("rest_framework.views", "rest_framework.serializers", "drf_spectacular.openapi",
         "gonext_plugins.api.urls", "gonext_plugins.dev_views")
def loaded():
    return sorted(name for name in HEAVY if name in sys.modules)

out = {"after_setup": loaded()}
out["log_page"] = reverse("gonext_plugins:log_page", args=["demo"])
out["metrics"] = resolve("/metrics").url_name
out["dev_install"] = resolve("/_/plugins/dev/install").view_name
out["log_page_resolved"] = resolve(out["log_page"]).url_name
out["after_site_routes"] = loaded()
if sys.argv[1] == "reverse":
    out["schema"] = reverse("gonext_plugins:api:schema")
    out["plugin_detail"] = reverse("gonext_plugins:api:plugin-detail", args=["seo"])
else:
    match = resolve("/api/plugins/seo/")
    out["resolved"] = [match.view_name, match.kwargs]
    out["schema"] = reverse("gonext_plugins:api:schema")
out["after_api"] = loaded()
print(json.dumps(out))
"""


def probe(first: str) -> dict[str, object]:
    """Run the probe in a fresh process (``sys.modules`` must start empty of DRF)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", PROBE, first], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_site_routes_leave_the_api_unimported_and_a_reverse_loads_it() -> None:
    out = probe("reverse")
    assert out["after_setup"] == []
    assert out["after_site_routes"] == []  # a reverse elsewhere walked the resolvers: still nothing
    assert out["log_page"] == "/_/plugins/logs/demo/"
    assert out["metrics"] == "metrics"
    assert out["dev_install"] == "gonext_plugins:dev_install"
    assert out["log_page_resolved"] == "log_page"
    assert out["schema"] == "/api/schema/"
    assert out["plugin_detail"] == "/api/plugins/seo/"
    assert "gonext_plugins.api.urls" in out["after_api"]  # type: ignore[operator]


def test_resolving_an_api_path_first_loads_it() -> None:
    out = probe("resolve")
    assert out["after_site_routes"] == []
    assert out["resolved"] == ["gonext_plugins:api:plugin-detail", {"slug": "seo"}]
    assert out["schema"] == "/api/schema/"
    assert "rest_framework.views" in out["after_api"]  # type: ignore[operator]
