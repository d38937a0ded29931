"""The SEO example plugin, compiled from Zig source in the test run, driven through the runtime.

No Django: the site's ``posts.*`` host functions are plain Python functions on a ``HostFunctions``
registry backed by a dict. The build is cached by content under ``examples/plugins/seo/build/``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonext_plugins.errors import HookError
from gonext_plugins.runtime import HostFunctions, Limits, Plugin, Runtime

from .conftest import require_fast_dispatcher

REPO = Path(__file__).resolve().parents[2]
SEO_DIR = REPO / "examples" / "plugins" / "seo"
ALL_CAPS = frozenset({"posts.read", "posts.write", "hooks.subscribe", "jobs.enqueue"})

HOSTILE_TITLES = [
    "</script><script>alert(1)</script>",
    "</SCRIPT ><img src=x onerror=alert(1)>",
    'He said "hi" & \'bye\'',
    "Tom & Jerry <3 &amp; &lt;b&gt;",
    "<!-- not a comment --> ]]> <![CDATA[",
    "Ünïcödé 日本語 🎉 emoji",
    "line\u2028separator\u2029paragraph",
    "\"><script>alert(document.cookie)</script>",
]


def _build() -> Path:
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("ziglang is not installed (pip install ziglang)")
    from gonext_plugins.devtools.zigbuild import build_zig

    return build_zig(SEO_DIR)


@pytest.fixture(scope="module")
def seo_wasm() -> bytes:
    return _build().read_bytes()


class Site:
    """The demo site's post store and host functions, in memory, with a call log."""

    def __init__(self, posts: list[dict[str, Any]] | None = None) -> None:
        self.posts = posts or []
        self.meta: dict[tuple[int, str], Any] = {}
        self.calls: list[tuple[str, Any]] = []
        self.logs: list[tuple[str, int, str, str]] = []
        self.jobs: list[Any] = []  # jobs.enqueue payloads, kept apart from the posts.* calls
        self.functions = HostFunctions()
        self.functions.register("posts.get", "posts.read", self.get)
        self.functions.register("posts.list", "posts.read", self.list)
        self.functions.register("posts.meta_set", "posts.write", self.meta_set)
        self.functions.register("jobs.enqueue", "jobs.enqueue", self.enqueue)

    def get(self, plugin: Any, payload: Any) -> Any:
        self.calls.append(("posts.get", payload))
        return next((p for p in self.posts if p["id"] == payload["id"]), None)

    def list(self, plugin: Any, payload: Any) -> Any:
        self.calls.append(("posts.list", payload))
        return self.posts[payload["offset"]:payload["offset"] + payload["limit"]]

    def meta_set(self, plugin: Any, payload: Any) -> Any:
        self.calls.append(("posts.meta_set", payload))
        self.meta[(payload["id"], payload["key"])] = payload["value"]
        return None

    def enqueue(self, plugin: Any, payload: Any) -> Any:
        """A stand-in for the app's jobs.enqueue (this test has no database or queue)."""
        self.jobs.append(payload)
        return {"id": f"job-{len(self.jobs)}"}

    def sink(self, plugin: str, level: int, message: str, source: str) -> None:
        self.logs.append((plugin, level, message, source))

    def guest_lines(self) -> list[str]:
        return [message for _, _, message, source in self.logs if source == "guest"]


@pytest.fixture(scope="module", params=["fast", "slow"])
def dispatcher(request: pytest.FixtureRequest) -> str:
    if request.param == "fast":
        require_fast_dispatcher()  # fails, not skips
    return str(request.param)


@pytest.fixture
def site() -> Site:
    return Site()


@pytest.fixture
def runtime(site: Site, dispatcher: str) -> Iterator[Runtime]:
    rt = Runtime(host_functions=site.functions, log_sink=site.sink, dispatcher=dispatcher,  # type: ignore[arg-type]
                 limits=Limits(fuel=2_000_000_000, hard_timeout_ms=10_000, soft_timeout_ms=None))
    yield rt
    rt.close()


@pytest.fixture
def seo(runtime: Runtime, seo_wasm: bytes) -> Plugin:
    return runtime.load(seo_wasm, name="seo", capabilities=ALL_CAPS)


def make_post(post_id: int = 3, title: str = "How to grow tomatoes on a small balcony",
              **fields: Any) -> dict[str, Any]:
    post = {"id": post_id, "title": title, "slug": "grow-tomatoes",
            "body": "Tomatoes love sun. Grow them in big pots on a sunny balcony. " * 20,
            "url": "/posts/grow-tomatoes/", "published": "2024-05-01T10:00:00Z"}
    post.update(fields)
    return post


# --- the scoring rules, written again from README.md ---------------------------------------------

_TITLE_DELIMS = re.compile("[" + re.escape(" \t\r\n.,:;!?\"'()[]{}<>/\\|&*+=_-") + "]+")
_SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def expected_score(post: dict[str, Any]) -> int:
    title, body, slug = post["title"], post["body"], post["slug"]
    n = len(title)
    total = 30 if 30 <= n <= 60 else 20 if (15 <= n < 30 or 60 < n <= 70) else 10 if n else 0
    words = len([w for w in re.split("[ \t\r\n]+", body) if w])
    total += 40 if words >= 300 else 30 if words >= 150 else 15 if words >= 50 else 5 if words else 0
    if slug:
        total += 10 if len(slug.encode()) <= 60 and set(slug) <= _SLUG_CHARS else 5
    keywords = [w for w in _TITLE_DELIMS.split(title) if len(w) >= 4 and w.isascii() and w.isalnum()]
    lowered = body.encode().lower()
    found = sum(1 for w in keywords if w.lower().encode() in lowered)
    if keywords:
        total += 20 * found // len(keywords)
    return min(total, 100)


# --- HTML inspection ---------------------------------------------------------------------------


# --- module shape --------------------------------------------------------------------------------


def test_module_is_small_and_imports_only_env(seo_wasm: bytes) -> None:
    import wasmtime

    module = wasmtime.Module(wasmtime.Engine(), seo_wasm)
    assert {(i.module, i.name) for i in module.imports} <= {
        ("env", "gn_log"), ("env", "gn_panic"), ("env", "gn_time_ms"), ("env", "gn_host_call")}
    exports = {e.name: e.type for e in module.exports}
    assert {"memory", "gn_alloc", "gn_free", "gn_handle_hook", "gn_handle_job"} <= set(exports)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.MemoryType)
    assert memory.limits.min <= 4  # a few pages: data + a 64 KiB stack
    assert memory.limits.max == 256  # never more than the host's default cap
    assert len(seo_wasm) < 200_000


def test_loads_under_the_manifest_memory_limit(runtime: Runtime, seo_wasm: bytes) -> None:
    manifest = json.loads((SEO_DIR / "manifest.json").read_text())
    limits = runtime.limits.replace(memory_pages=manifest["limits"]["memoryPages"])
    plugin = runtime.load(seo_wasm, name="seo", capabilities=ALL_CAPS, limits=limits)
    assert plugin.invoke_action("wp_head") is None


def test_manifest_is_valid_and_matches_the_handlers() -> None:
    from gonext_plugins import manifest

    m = manifest.validate((SEO_DIR / "manifest.json").read_bytes())
    assert m.slug == "seo" and m.name == "SEO" and m.version == "1.4.0" and m.abi == 1
    assert set(m.capabilities) == ALL_CAPS
    assert m.optional_capabilities == ("kv",)
    assert m.raw["settings"]["properties"]["twitterSite"]["default"] == ""
    assert {(h.name, h.kind) for h in m.hooks} == {
        ("wp_head", "action"), ("save_post", "action")}
    assert [(j.name, j.max_retries) for j in m.jobs] == [("seo.recompute-scores", 3)]


# --- wp_head -------------------------------------------------------------------------------------
# The head is structured data (title, meta, link, jsonld) that the host escapes and renders: the
# plugin needs no html.raw. How it renders, hostile titles included, is in tests/site/test_seo_blog.py.


def meta_of(body: dict[str, Any], key: str, value: str) -> str | None:
    found = [item["content"] for item in body["meta"] if item.get(key) == value]
    assert len(found) <= 1
    return found[0] if found else None


def test_wp_head_is_structured_output(seo: Plugin) -> None:
    post = make_post()
    body = seo.invoke_action("wp_head", post)
    assert set(body) == {"title", "meta", "link", "jsonld"}
    assert body["title"] == post["title"]
    assert all(set(item) in ({"name", "content"}, {"property", "content"}) for item in body["meta"])
    description = meta_of(body, "name", "description")
    assert description and post["body"].startswith(description.rstrip("…"))
    assert meta_of(body, "property", "og:type") == "article"
    assert meta_of(body, "property", "og:title") == post["title"]
    assert meta_of(body, "property", "og:description") == description
    assert meta_of(body, "property", "og:url") == post["url"]
    assert meta_of(body, "name", "twitter:card") == "summary"
    assert meta_of(body, "name", "twitter:title") == post["title"]
    assert meta_of(body, "name", "twitter:description") == description
    assert body["link"] == [{"rel": "canonical", "href": post["url"]}]


def test_wp_head_article_json_ld(seo: Plugin) -> None:
    post = make_post()
    data = seo.invoke_action("wp_head", post)["jsonld"]
    assert data["@context"] == "https://schema.org"
    assert data["@type"] == "Article"
    assert data["headline"] == post["title"]
    assert data["url"] == post["url"]
    assert data["wordCount"] == len(post["body"].split())
    assert data["datePublished"] == post["published"]
    assert data["description"].endswith("…") and len(data["description"].encode()) <= 155 + 3
    assert post["body"].startswith(data["description"][:-1])


def test_wp_head_omits_date_when_not_a_string(seo: Plugin) -> None:
    data = seo.invoke_action("wp_head", make_post(published=True))["jsonld"]
    assert "datePublished" not in data


def test_wp_head_without_a_post_has_no_body(seo: Plugin) -> None:
    assert seo.invoke_action("wp_head") is None


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_title_round_trips_as_data(seo: Plugin, title: str) -> None:
    post = make_post(title=title, body=f"{title} & more <b>text</b>", url='/posts/a"b<c>/')
    body = seo.invoke_action("wp_head", post)
    assert body["title"] == title and body["jsonld"]["headline"] == title
    for key, name in (("property", "og:title"), ("name", "twitter:title")):
        assert meta_of(body, key, name) == title
    assert meta_of(body, "property", "og:url") == post["url"]
    assert meta_of(body, "name", "description") == post["body"]


def test_wp_head_without_the_twitter_site_setting_omits_twitter_site(seo: Plugin) -> None:
    """This Site has no settings.get (an older host, -6) and no setting: the head is complete but
    for twitter:site. With the setting: tests/test_zig_sdk_helpers.py."""
    body = seo.invoke_action("wp_head", make_post())
    assert meta_of(body, "name", "twitter:site") is None
    assert meta_of(body, "name", "twitter:card") == "summary"


# --- save_post -----------------------------------------------------------------------------------


def test_save_post_stores_the_score(seo: Plugin, site: Site) -> None:
    post = make_post()
    score = expected_score(post)
    assert seo.invoke_action("save_post", post) == {"score": score, "stored": True}
    assert site.meta == {(3, "seo_score"): score}
    assert site.calls == [("posts.meta_set", {"id": 3, "key": "seo_score", "value": score})]
    assert f"scored post 3: {score}" in site.guest_lines()
    # ... and queues the site-wide refresh in the background
    assert site.jobs == [{"job": "seo.recompute-scores", "payload": {"offset": 0}}]
    assert "queued seo.recompute-scores (job job-1)" in site.guest_lines()


def test_save_post_without_jobs_enqueue_still_scores(runtime: Runtime, seo_wasm: bytes, site: Site) -> None:
    plugin = runtime.load(seo_wasm, name="seo", capabilities=ALL_CAPS - {"jobs.enqueue"})
    post = make_post()
    assert plugin.invoke_action("save_post", post) == {"score": expected_score(post), "stored": True}
    assert site.jobs == []
    assert "seo.recompute-scores not queued: CapabilityDenied" in site.guest_lines()


def test_save_post_without_kv_scores_but_does_not_count(seo: Plugin, site: Site) -> None:
    """kv is optional (not in ALL_CAPS) and this Site has no kv.incr: the count is skipped, the
    score stands. The count itself: tests/test_zig_sdk_helpers.py."""
    post = make_post()
    assert seo.invoke_action("save_post", post) == {"score": expected_score(post), "stored": True}
    lines = site.guest_lines()
    assert any(line.startswith("posts scored not counted: ") for line in lines)
    assert not any(line.startswith("posts scored: ") for line in lines)


@pytest.mark.parametrize(("fields", "score"), [
    # 39-character title, 240 words, clean slug, 3 of the 4 title keywords ("small" is not).
    ({}, 30 + 30 + 10 + 15),
    ({"title": "", "body": "", "slug": ""}, 0),
    ({"title": "Hi", "body": "one two", "slug": "Not_Clean"}, 10 + 5 + 5),
    ({"title": "Tomatoes and peppers and onions!", "body": "tomatoes " * 300}, 30 + 40 + 10 + 6),
    ({"title": "x" * 65, "body": "w " * 150, "slug": "a" * 61}, 20 + 30 + 5),
])
def test_score_rules(seo: Plugin, site: Site, fields: dict[str, Any], score: int) -> None:
    post = make_post(**fields)
    assert expected_score(post) == score  # the reference agrees with the README's table
    assert seo.invoke_action("save_post", post)["score"] == score
    assert site.meta[(3, "seo_score")] == score


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=st.text(max_size=90),
       body=st.lists(st.sampled_from(["a", "B", "tomato", "Tomato", " ", "\n", "\t", "é", "<", "&",
                                      "\u2028", "word", "GROW"]), max_size=400).map("".join),
       slug=st.text(alphabet="abz09-_X", max_size=70))
def test_score_matches_the_documented_rules(seo: Plugin, title: str, body: str, slug: str) -> None:
    post = make_post(title=title, body=body, slug=slug)
    assert seo.invoke_action("save_post", post)["score"] == expected_score(post)


def test_save_post_without_posts_write_logs_and_does_not_store(runtime: Runtime, seo_wasm: bytes,
                                                              site: Site) -> None:
    plugin = runtime.load(seo_wasm, name="seo", capabilities=ALL_CAPS - {"posts.write"})
    post = make_post()
    assert plugin.invoke_action("save_post", post) == {"score": expected_score(post), "stored": False}
    assert site.meta == {} and site.calls == []
    assert "seo_score of post 3 not stored: capability posts.write not granted" in site.guest_lines()
    assert any("denied" in message for _, _, message, source in site.logs if source == "host")


# --- the job -------------------------------------------------------------------------------------


def _posts(count: int) -> list[dict[str, Any]]:
    return [make_post(i, title=f"Post {i} about growing tomatoes", slug=f"post-{i}",
                      body="tomatoes growing " * (i % 200), url=f"/posts/post-{i}/")
            for i in range(1, count + 1)]


@pytest.mark.parametrize(("count", "offsets"), [
    (0, [0]), (42, [0]), (100, [0, 100]), (250, [0, 100, 200]),
])
def test_recompute_scores_pages_through_posts(seo: Plugin, site: Site, count: int,
                                              offsets: list[int]) -> None:
    site.posts = _posts(count)
    result = seo.invoke_job("seo.recompute-scores", {}, task_id="t1")
    assert result == {"updated": count, "next_offset": None}
    assert [p for name, p in site.calls if name == "posts.list"] == [
        {"limit": 100, "offset": o} for o in offsets]
    assert site.meta == {(p["id"], "seo_score"): expected_score(p) for p in site.posts}


def test_recompute_scores_stops_under_the_host_call_budget_and_resumes(seo: Plugin, site: Site) -> None:
    site.posts = _posts(1000)
    first = seo.invoke_job("seo.recompute-scores", None, task_id="t1")
    assert first == {"updated": 900, "next_offset": 900}
    # the rest is queued as a new job from where this run stopped
    assert site.jobs == [{"job": "seo.recompute-scores", "payload": {"offset": 900}}]
    second = seo.invoke_job("seo.recompute-scores", {"offset": 900}, task_id="t2")
    assert second == {"updated": 100, "next_offset": None}
    assert len(site.meta) == 1000
    assert "recomputed 100 SEO scores (task t2)" in site.guest_lines()


def test_recompute_scores_fails_without_posts_read(runtime: Runtime, seo_wasm: bytes, site: Site) -> None:
    site.posts = _posts(3)
    plugin = runtime.load(seo_wasm, name="seo", capabilities=ALL_CAPS - {"posts.read"})
    with pytest.raises(HookError) as info:
        plugin.invoke_job("seo.recompute-scores", {}, task_id="t1")
    assert info.value.status == "error"
    assert "job seo.recompute-scores failed: CapabilityDenied" in site.guest_lines()


# --- statuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda p: p.invoke_action("no_such_hook", make_post()),
    lambda p: p.invoke_filter("no_such_filter", "x"),
    lambda p: p.invoke_filter("the_content", "x", make_post()),  # no longer a hook of it
    lambda p: p.invoke_filter("save_post", "x", make_post()),  # an action, not a filter
    lambda p: p.invoke_job("no.such-job", {}),
])
def test_unknown_hooks_and_jobs(seo: Plugin, call: Any) -> None:
    with pytest.raises(HookError) as info:
        call(seo)
    assert info.value.status == "unknown_hook"


@pytest.mark.parametrize("args", [
    ("garbage",), ({"title": "no id"},), ({"id": "three"},), (),
])
def test_payload_of_the_wrong_shape_is_bad_payload(seo: Plugin, site: Site, args: tuple[Any, ...]) -> None:
    with pytest.raises(HookError) as info:
        seo.invoke_action("save_post", *args)
    assert info.value.status == "bad_payload"
    assert site.meta == {}


@pytest.mark.parametrize("payload", [b"{not json", b"", b"[1,2]", b'{"kind": 7}',
                                     b'{"kind": "action", "args": 5}', b'{"kind": "weird", "args": []}',
                                     b"\xff\xfe"])
def test_raw_garbage_payload_is_bad_payload(seo: Plugin, payload: bytes) -> None:
    inst = seo.pool.checkout()
    try:
        with pytest.raises(HookError) as info:
            inst.dispatcher.call("gn_handle_hook", b"save_post", payload)
    finally:
        seo.pool.checkin(inst)
    assert info.value.status == "bad_payload"


def test_many_calls_do_not_leak_memory(seo: Plugin) -> None:
    post = make_post(body="word " * 5000)
    for _ in range(300):
        seo.invoke_action("wp_head", post)
        seo.invoke_action("save_post", post)
    inst = seo.pool.checkout()
    try:
        assert inst.ctx.memory is not None
        pages = inst.ctx.memory.size(inst.store)
    finally:
        seo.pool.checkin(inst)
    assert pages <= 16
