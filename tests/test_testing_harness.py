"""gonext_plugins.testing: the Django-free harness, on WAT guests from ABI.md and on the SEO example.

The harness's host must answer as the app's does: the payload-equality test below runs the same
payloads through the harness (in memory) and through the app's real host functions (the test
database) and compares every answer. The author-repository test runs pytest in a child process with
no DJANGO_SETTINGS_MODULE, as a plugin's own CI would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gonext_plugins import bundle, lifecycle, registry
from gonext_plugins.devtools import builders
from gonext_plugins.devtools.fsutil import output_path
from gonext_plugins.errors import FixtureError, InvalidSettings, NotBuilt
from gonext_plugins.testing import PluginHarness, run_fixture
from tests.conftest import guest_wasm, make_manifest

REPO = Path(__file__).resolve().parents[1]
SEO_DIR = REPO / "examples" / "plugins" / "seo"


def hostcall_harness(**options: Any) -> PluginHarness:
    manifest = make_manifest(capabilities=["kv"], optionalCapabilities=["jobs.enqueue", "http.fetch"],
                             http={"allowedHosts": ["api.example.com"]},
                             jobs=[{"name": "refresh"}])
    return PluginHarness(guest_wasm("hostcall_guest"), manifest, **options)


def test_filters_actions_and_jobs_on_an_abi_guest() -> None:
    with PluginHarness(guest_wasm("abi_guest"), make_manifest()) as plugin:
        upper = plugin.filter("upper", "hello")
        assert (upper.status, upper.output) == ("ok", "HELLO")
        assert upper.fuel > 0 and upper.peak_memory_bytes == 2 * 65536 and upper.wall_ms > 0
        assert plugin.action("body").output == {"html": "<meta>"}
        assert plugin.action("nobody").output is None
        logged = plugin.action("log")
        assert logged.plugin_logs == [[1, "hello from guest"]]
        assert plugin.action("err").status == "error"
        assert plugin.action("nope").status == "unknown_hook"
        job = plugin.job("anything", {"n": 1}, id="task-1")
        assert job.output == {"kind": "job", "job": "anything", "id": "task-1", "payload": {"n": 1}}


def test_a_trap_keeps_its_reason_and_a_report() -> None:
    with PluginHarness(guest_wasm("abi_guest"), make_manifest()) as plugin:
        panic = plugin.action("panic")
        assert panic.status == "trap" and "boom: something broke" in (panic.error or "")
        assert panic.trap is not None and "boom: something broke" in panic.trap["text"]
        spin = PluginHarness(guest_wasm("abi_guest"), make_manifest(), fuel=100_000)
        with spin:
            looped = spin.action("loop")
        assert looped.status == "trap" and "fuel" in (looped.error or "")
        assert plugin.filter("upper", "still").output == "STILL"  # a trap never breaks the harness


def test_kv_settings_jobs_and_http_stubs() -> None:
    with hostcall_harness(kv={"n": 1}, http=[{"url": "https://api.example.com/x", "status": 201,
                                             "headers": {"X-A": "b"}, "body": "hi"}]) as plugin:
        assert plugin.filter("kv.incr", {"key": "n", "by": 4}).output == {"value": 5}
        assert plugin.filter("kv.set", {"key": "t", "value": "v", "ttlSeconds": 60}).output == {"ok": True}
        assert plugin.kv.snapshot() == {"n": 5, "t": "v"}
        lost = plugin.filter("kv.cas", {"key": "n", "expected": 4, "value": 9})
        assert lost.output == {"ok": False, "value": 5}
        fetched = plugin.filter("http.fetch", {"url": "https://api.example.com/x"})
        assert fetched.output == {"status": 201, "headers": {"x-a": "b"}, "body": "hi",
                                  "url": "https://api.example.com/x"}
        missing = plugin.filter("http.fetch", {"url": "https://api.example.com/other"})
        assert missing.output == {"hc": -1}
        assert "no stub for GET https://api.example.com/other" in missing.host_calls[0].error  # type: ignore[operator]
        elsewhere = plugin.filter("http.fetch", {"url": "https://evil.example.net/"})
        assert "not an allowed host" in (elsewhere.host_calls[0].error or "")
        queued = plugin.filter("jobs.enqueue", {"job": "refresh", "payload": [1]})
        assert queued.enqueued[0]["job"] == "refresh" and queued.output == {"id": queued.enqueued[0]["id"]}
        assert plugin.filter("jobs.enqueue", {"job": "other"}).output == {"hc": -1}
        info = plugin.filter("plugin.info", {}).output
        assert info["capabilities"] == ["http.fetch", "jobs.enqueue", "kv", "log", "self"]


def test_grants_are_enforced_and_the_denial_says_what_to_change() -> None:
    with hostcall_harness(grants=["kv"]) as plugin:
        denied = plugin.filter("http.fetch", {"url": "https://api.example.com/x"})
        assert denied.output == {"hc": -5} and denied.host_calls == []
        assert any("http.fetch" in line.message and "optionalCapabilities" in line.message
                   and line.source == "host" for line in denied.logs)
        again = plugin.filter("http.fetch", {"url": "https://api.example.com/x"})
        assert any("denied" in line.message for line in again.logs)  # every call reports its own denial
        with pytest.raises(FixtureError, match=r"does not ask for posts\.read"):
            plugin.set_grants(["posts.read"])


def test_settings_are_checked_against_the_schema_with_defaults_filled() -> None:
    seo_manifest = json.loads((SEO_DIR / "manifest.json").read_text())
    with pytest.raises(InvalidSettings, match="twitterSite"):
        PluginHarness(guest_wasm("hostcall_guest"), seo_manifest, settings={"twitterSite": "x" * 40})
    with pytest.raises(InvalidSettings, match="nope"):
        PluginHarness(guest_wasm("hostcall_guest"), seo_manifest, settings={"nope": 1})
    with PluginHarness(guest_wasm("hostcall_guest"), seo_manifest) as plugin:
        assert plugin.filter("settings.get", {}).output == {"settings": {"twitterSite": ""}}


def test_a_project_without_a_build_says_how_to_build(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(make_manifest()))
    with pytest.raises(NotBuilt, match="--build-only"):
        PluginHarness.from_project(tmp_path)


def test_a_bundle_changed_after_signing_is_refused(publisher) -> None:  # type: ignore[no-untyped-def]
    raw = bundle.sign(bundle.pack(make_manifest(), guest_wasm()), publisher.private_key)
    with PluginHarness.from_bundle(raw) as plugin:
        assert plugin.filter("upper", "x").output == "X"
    tampered = bundle.pack(make_manifest(), guest_wasm("minimal"))
    signature = bundle._extract(raw, max_unpacked_bytes=1 << 24, max_compression_ratio=100)[bundle.SIGNATURE]
    forged = bundle._write_zip({bundle.MANIFEST: json.dumps(make_manifest()).encode(),
                                bundle.WASM: guest_wasm("minimal"), bundle.SIGNATURE: signature})
    assert tampered
    with pytest.raises(Exception, match=r"changed after signing|does not match"):
        PluginHarness.from_bundle(forged)


# --- the SEO example, built from source, posts.* stubbed through `functions` ------------------------


@pytest.fixture(scope="module")
def seo_project() -> Path:
    pytest.importorskip("ziglang")
    builders.compile_project(SEO_DIR)
    return SEO_DIR


def test_the_seo_example_through_fixtures(seo_project: Path) -> None:
    post = {"id": 3, "title": "How to grow tomatoes on a small balcony", "slug": "grow-tomatoes",
            "body": "Tomatoes love sun. " * 40, "url": "/posts/grow-tomatoes/",
            "published": "2024-05-01T10:00:00Z"}
    with PluginHarness.from_project(seo_project, settings={"twitterSite": "@gonext"}) as plugin:
        head = plugin.action("wp_head", post)
        assert head.ok and head.output["jsonld"]["@type"] == "Article"
        assert {"name": "twitter:site", "content": "@gonext"} in head.output["meta"]
        saved = run_fixture(plugin, {
            "hook": "save_post", "kind": "action", "args": [post], "kv": {},
            "functions": {"posts.meta_set": {"capability": "posts.write", "result": None}},
        })
        assert saved.call.ok and saved.call.output["stored"] is True
        meta_set = next(c for c in saved.call.host_calls if c.name == "posts.meta_set")
        assert (meta_set.payload["key"] == "seo_score" and saved.kv == {"seo_posts_scored": 1}) or saved.kv
        assert saved.call.enqueued[0]["job"] == "seo.recompute-scores"
        job = run_fixture(plugin, {"job": "seo.recompute-scores", "payload": {}, "grants": ["posts.read"],
                                   "functions": {"posts.list": {"capability": "posts.read", "result": []}},
                                   "expect": {"result": {"updated": 0, "next_offset": None}}})
        job.check()


# --- the harness's host answers as the app's ---------------------------------------------------------

PAYLOADS: list[tuple[str, Any]] = [
    ("kv.set", {"key": "a", "value": {"x": [1, 2]}}),
    ("kv.get", {"key": "a"}),
    ("kv.get", {"key": "missing"}),
    ("kv.get", {"key": ""}),
    ("kv.get", {"key": "k" * 256}),
    ("kv.get", {"key": "a", "extra": 1}),
    ("kv.get", ["a"]),
    ("kv.set", {"key": "nul", "value": "a\u0000b"}),
    ("kv.set", {"key": "big", "value": "x" * 70_000}),
    ("kv.set", {"key": "t", "value": 1, "ttlSeconds": 0}),
    ("kv.set", {"key": "t", "value": 1, "ttlSeconds": True}),
    ("kv.set", {"key": "t", "value": 1, "ttlSeconds": 30}),
    ("kv.incr", {"key": "n"}),
    ("kv.incr", {"key": "n", "by": 41}),
    ("kv.incr", {"key": "a"}),
    ("kv.incr", {"key": "n", "by": 2**63}),
    ("kv.incr", {"key": "n", "by": 1.5}),
    ("kv.cas", {"key": "c", "expected": None, "value": 1}),
    ("kv.cas", {"key": "c", "expected": 2, "value": 3}),
    ("kv.cas", {"key": "c", "expected": 1.0, "value": 3}),
    ("kv.cas", {"key": "c", "expected": 1, "value": 3}),
    ("kv.list", {}),
    ("kv.list", {"prefix": "n"}),
    ("kv.list", {"prefix": 5}),
    ("kv.delete", {"key": "a"}),
    ("kv.delete", {"key": "a"}),
    ("settings.get", {}),
    ("settings.get", {"key": "twitterSite"}),
    ("settings.get", {"key": "nope"}),
    ("settings.get", {"key": ""}),
    ("settings.get", {"key": "twitterSite", "x": 1}),
    ("log", {"message": "hi", "level": "warn"}),
    ("log", {"message": "hi", "level": "loud"}),
    ("log", {"message": 5}),
    ("kv.list", {}),
]


@pytest.mark.django_db
def test_the_harness_and_the_app_give_the_same_answers(  # type: ignore[no-untyped-def]
        make_bundle, django_capture_on_commit_callbacks) -> None:
    fields: dict[str, Any] = {"slug": "same", "capabilities": ["kv"],
                              "settings": {"type": "object", "properties": {
                                  "twitterSite": {"type": "string", "default": "@x", "maxLength": 16}}}}
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.install(make_bundle(wasm=guest_wasm("hostcall_guest"), **fields), ("kv",), "tests",
                          activate=True)
    app = registry.get("same")
    assert app is not None
    with PluginHarness(guest_wasm("hostcall_guest"), make_manifest(**fields)) as harness:
        for function, payload in PAYLOADS:
            expected = app.invoke("filter", function, payload)
            assert harness.filter(function, payload).output == expected, (function, payload)



# --- an author's repository: pytest alone, no Django settings ----------------------------------------

AUTHOR_TEST = '''
import sys

from gonext_plugins.testing import PluginHarness, run_fixture


def test_upper(gonext_plugin):
    plugin = gonext_plugin("plugin")
    assert plugin.filter("upper", "abc").output == "ABC"
    assert plugin.action("log").plugin_logs == [[1, "hello from guest"]]


def test_fixture():
    with PluginHarness.load("plugin") as plugin:
        run_fixture(plugin, "fixture.json").check()


def test_a_failing_expect_shows_a_diff():
    with PluginHarness.load("plugin") as plugin:
        result = run_fixture(plugin, {"hook": "upper", "kind": "filter", "value": "a",
                                      "expect": {"result": "B"}})
    assert not result.passed and '-"B"' in result.diff and '+"A"' in result.diff


def test_no_django_was_imported():
    assert not [name for name in sys.modules if name == "django" or name.startswith("django.")]
'''


def test_an_author_repository_tests_its_plugin_without_django(tmp_path: Path) -> None:
    project = tmp_path / "plugin"
    output_path(project).parent.mkdir(parents=True)
    (project / "manifest.json").write_text(json.dumps(make_manifest(slug="author-demo")))
    (project / "plugin.wat").write_text((REPO / "tests" / "guests" / "abi_guest.wat").read_text())
    output_path(project).write_bytes(guest_wasm("abi_guest"))
    (tmp_path / "fixture.json").write_text(json.dumps(
        {"hook": "upper", "kind": "filter", "value": "hey", "expect": {"result": "HEY", "logs": []}}))
    (tmp_path / "test_plugin.py").write_text(AUTHOR_TEST)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django",
                           "test_plugin.py"],  # the fixture: the installed package's pytest11 entry point
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
