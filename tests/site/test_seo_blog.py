"""The SEO example plugin, compiled from Zig source, live in the demo blog's pages."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core.management import call_command

from gonext_plugins import bundle, lifecycle
from gonext_plugins.devtools.zigbuild import build_zig
from gonext_plugins.models import Plugin, PluginState
from gonext_plugins.registry import registry
from project.blog.models import Post
from tests.conftest import REPO

# No real commits needed: the lifecycle's on-commit work (the registry's invalidation, signals) runs
# through django_capture_on_commit_callbacks(execute=True).
pytestmark = pytest.mark.django_db

SEO = REPO / "examples" / "plugins" / "seo"
HOSTILE = "</script><script>alert(1)</script> \"quoted\" & 'single' \u2028 ünïcode"


class PageParser(HTMLParser):
    """Collects scripts (with their text) and meta/title elements of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.meta: list[dict[str, str | None]] = []
        self.titles: list[str] = []
        self._in: str | None = None
        self._attrs: dict[str, str | None] = {}
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "title"):
            self._in, self._attrs, self._text = tag, dict(attrs), []
        elif tag == "meta":
            self.meta.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in == "script":
            self.scripts.append((self._attrs, "".join(self._text)))
        elif tag == self._in == "title":
            self.titles.append("".join(self._text))
        if tag == self._in:
            self._in = None

    def meta_content(self, key: str, value: str) -> str | None:
        for attrs in self.meta:
            if attrs.get(key) == value:
                return attrs.get("content")
        return None


def parse(html: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(html.decode())
    return parser


@pytest.fixture
def seo_active(publisher, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    wasm = build_zig(SEO).read_bytes()
    raw = bundle.sign(bundle.pack((SEO / "manifest.json").read_bytes(), wasm), publisher.private_key)
    verified = bundle.read(raw)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.install(verified, list(verified.manifest.all_capabilities), "tests", activate=True)
    return verified


def test_post_page_carries_json_ld_and_head_tags(client, seo_active) -> None:  # type: ignore[no-untyped-def]
    post = Post.objects.create(title="Sandboxed plugins", slug="sandboxed",
                               body="Fuel and deadlines.\n\nTwo.")
    page = parse(client.get(post.get_absolute_url()).content)
    [(attrs, text)] = page.scripts
    assert attrs["type"] == "application/ld+json"
    data = json.loads(text)
    assert data["@type"] == "Article" and data["headline"] == "Sandboxed plugins"
    assert data["url"] == "/posts/sandboxed/"
    assert page.titles == ["Sandboxed plugins"]  # the plugin's <title> replaced the default one
    assert page.meta_content("property", "og:title") == "Sandboxed plugins"
    assert page.meta_content("name", "twitter:card")
    assert page.meta_content("name", "description").startswith("Fuel and deadlines.")


def test_hostile_titles_stay_inert(client, seo_active) -> None:  # type: ignore[no-untyped-def]
    post = Post.objects.create(title=HOSTILE, slug="hostile", body=f"Body with {HOSTILE}")
    html = client.get(post.get_absolute_url()).content
    page = parse(html)
    assert len(page.scripts) == 1, "no script element may come from the title"
    assert b"<script>alert(1)" not in html
    assert json.loads(page.scripts[0][1])["headline"] == HOSTILE
    assert page.meta_content("property", "og:title") == HOSTILE  # attribute round-trips exactly
    assert page.titles == [HOSTILE]


def test_saving_a_post_stores_its_score(seo_active) -> None:  # type: ignore[no-untyped-def]
    short = Post.objects.create(title="Hi", slug="hi", body="Short.")
    good = Post.objects.create(title="A descriptive title of a good length for search",
                               slug="good", body=" ".join(["Useful words about plugins."] * 80))
    short_score, good_score = short.meta_value("seo_score"), good.meta_value("seo_score")
    assert isinstance(short_score, int) and isinstance(good_score, int)
    assert 0 <= short_score < good_score <= 100


def test_list_page_and_deactivation(client, seo_active,  # type: ignore[no-untyped-def]
                                    django_capture_on_commit_callbacks) -> None:
    post = Post.objects.create(title="Gone soon", slug="gone", body="Text.")
    assert client.get("/").status_code == 200
    assert b"application/ld+json" in client.get(post.get_absolute_url()).content
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.deactivate("seo", "tests")
    page = client.get(post.get_absolute_url()).content
    assert b"application/ld+json" not in page and b"og:title" not in page
    assert parse(page).titles == ["Gone soon"]


def test_make_demo_plugin_step_is_idempotent(tmp_path: Path, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "demo.key"
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_plugin", key=str(key))
    plugin = Plugin.objects.get(slug="seo")
    assert plugin.state == PluginState.ACTIVE and plugin.active_version.signed
    assert (tmp_path / "seo-1.4.0.gnplugin").exists()
    call_command("demo_plugin", key=str(key))  # again: nothing changes
    assert Plugin.objects.get(slug="seo").versions.count() == 1
    assert registry.get("seo") is not None
