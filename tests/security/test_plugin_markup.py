"""Issue #13, class 4: plugin markup is untrusted.

A plugin holding only ``hooks.subscribe`` hands back script, ``on*`` handlers, ``javascript:`` and
``data:`` URLs, ``<base>``, meta refresh, iframes, forms and structured outputs built to break out
of their escaping (``tests/guests/markup_guest.wat``). The blog's post page, rendered by Django's
real template engine through the real bridge and wasmtime, must carry none of it as markup. The
same plugin granted ``html.raw`` gets its markup through, which shows the gate is the grant.
"""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core import checks
from django.utils.safestring import SafeData, mark_safe

from gonext_plugins import capabilities, hooks, lifecycle, markup
from gonext_plugins.checks import CSP_MIDDLEWARE
from gonext_plugins.models import PluginFault
from gonext_plugins.registry import registry
from project.blog.models import Post
from tests.conftest import guest_wasm

pytestmark = pytest.mark.django_db  # no test here needs real commits

HOOKS = [{"name": name, "kind": "action"}
         for name in ("wp_head", "plain_action", "bad_meta", "bad_link_rel", "bad_link_href", "bad_html")]
HOOKS.append({"name": "the_content", "kind": "filter"})
HOSTILE_TITLE = "</title><script>fetch('/__xss/title')</script>"
HOSTILE_HEADLINE = "</script><script>fetch('/__xss/jsonld')</script><!--"
FORBIDDEN_TAGS = {"script", "style", "iframe", "object", "embed", "form", "base", "svg", "animate",
                  "frame", "frameset", "applet", "math", "template", "noscript", "input", "button"}
SITE_STYLESHEET = "/static/blog/site.css"


def install_markup_guest(make_bundle: Any, *, raw: bool) -> None:  # type: ignore[no-untyped-def]
    caps = ["hooks.subscribe", *(["html.raw"] if raw else [])]
    bundle = make_bundle(wasm=guest_wasm("markup_guest"), capabilities=caps, hooks=HOOKS)
    lifecycle.install(bundle, caps, "tests", activate=True)
    registry.sync(force=True)


class Page(HTMLParser):
    """Every element with its attributes, and the text of scripts and titles, as a parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {"script": [], "title": []}
        self._open: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))
        if tag in self.text:
            self._open = tag
            self.text[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.text[self._open][-1] += data

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def post_page(client: Any) -> tuple[str, Page]:  # type: ignore[no-untyped-def]
    post = Post.objects.create(title="Ordinary post", slug="ordinary", body="Plain words.")
    response = client.get(post.get_absolute_url())
    assert response.status_code == 200
    html = response.content.decode()
    return html, Page(html)


def test_hostile_markup_is_inert_without_html_raw(client, make_bundle) -> None:  # type: ignore[no-untyped-def]
    install_markup_guest(make_bundle, raw=False)
    html, page = post_page(client)

    assert {tag for tag, _ in page.elements} & FORBIDDEN_TAGS == {"script"}
    [ld] = page.tags("script")  # the one script is the host's JSON-LD, which never runs
    assert ld == {"type": "application/ld+json"}
    assert json.loads(page.text["script"][0]) == {"headline": HOSTILE_HEADLINE}
    for tag, attrs in page.elements:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        for name in ("href", "src", "action", "formaction", "data", "srcdoc"):
            value = attrs.get(name, "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (tag, attrs)
    assert not [m for m in page.tags("meta") if "http-equiv" in m]
    assert [link["href"] for link in page.tags("link") if "stylesheet" in link["rel"]] == [SITE_STYLESHEET]
    # structured values stay values: escaped text and single attributes, never new elements
    assert page.text["title"] == [HOSTILE_TITLE]
    [canonical] = [link for link in page.tags("link") if link["rel"] == "canonical"]
    assert canonical == {"rel": "canonical", "href": "/ok\"onload=\"fetch('/__xss/link')\""}
    assert {"name": "description", "content": "\"><script>fetch('/__xss/meta')</script>"} in page.tags("meta")
    # what is harmless survives the sanitizer
    assert '<p class="lead">Plugin text survives</p>' in html
    assert "xss-link</a>" in html and "<details><summary>s</summary></details>" in html


def test_html_raw_lets_a_plugin_markup_through(client, make_bundle) -> None:  # type: ignore[no-untyped-def]
    install_markup_guest(make_bundle, raw=True)
    html, page = post_page(client)
    assert "<script>fetch('/__xss/head-script');" in html
    assert "<script>fetch('/__xss/content-script');" in html
    assert page.tags("base") == [{"href": "http://127.0.0.1:9/"}]
    # structured outputs are rendered by the host, escaped, whatever the plugin holds
    assert page.text["title"] == [HOSTILE_TITLE]


def test_action_string_bodies_are_sanitized_and_marked_safe(make_bundle) -> None:  # type: ignore[no-untyped-def]
    install_markup_guest(make_bundle, raw=False)
    [body] = hooks.do_action("plain_action")
    assert body == "<b>bold</b>" and isinstance(body, SafeData)


def test_a_filter_value_is_sanitized_only_when_it_renders_as_html(make_bundle) -> None:  # type: ignore[no-untyped-def]
    install_markup_guest(make_bundle, raw=False)
    as_html = hooks.apply_filters("the_content", mark_safe("<p>site</p>"))
    assert isinstance(as_html, SafeData) and "<script" not in as_html and "onerror" not in as_html
    assert "Plugin text survives" in as_html
    # plain text is escaped by the template, so it is passed on exactly (sanitizing would mangle it)
    as_text = hooks.apply_filters("the_content", "site text")
    assert "<script>fetch('/__xss/content-script')" in as_text and not isinstance(as_text, SafeData)


@pytest.mark.parametrize("hook", ["bad_meta", "bad_link_rel", "bad_link_href", "bad_html"])
def test_malformed_structured_output_is_a_fault_not_markup(make_bundle, caplog, hook: str) -> None:  # type: ignore[no-untyped-def]
    install_markup_guest(make_bundle, raw=True)  # even html.raw does not make structured output raw
    with caplog.at_level(logging.WARNING, logger="gonext_plugins.bridge"):
        assert hooks.do_action(hook) == []
    assert f"failed on action '{hook}' (bad_markup)" in caplog.text
    # the plugin's fault, as its author sees faults (log, admin, API), not only the server's log line
    assert list(PluginFault.objects.values_list("kind", "hook")) == [("bad_markup", hook)]


@pytest.mark.parametrize("vector", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>",
    "<a href='java\tscript:alert(1)'>x</a>", "<a href='&#106;avascript:alert(1)'>x</a>",
    "<iframe src=//evil></iframe>", "<base href=//evil/>", "<meta http-equiv=refresh content=0;url=//evil>",
    "<style>*{}</style>", "<form action=//evil><button>x</button></form>", "<object data=//evil>",
    "<embed src=//evil>", "<link rel=stylesheet href=//evil>", "<math><mi xlink:href=javascript:alert(1)>",
    "<div style=background:url(javascript:alert(1))>x</div>",
    "<img src='data:image/svg+xml,<svg onload=alert(1)>'>",
    "<noscript><p title='</noscript><img src=x onerror=alert(1)>'>", "<!--<img src=x onerror=alert(1)>-->",
])
def test_sanitizer_allowlist(vector: str) -> None:
    page = Page(markup.sanitize(vector))
    for tag, attrs in page.elements:
        assert tag not in FORBIDDEN_TAGS | {"meta", "link", "mi"}
        assert not [name for name in attrs if name.startswith("on") or name in ("style", "srcdoc")]
        for value in attrs.values():
            assert "javascript" not in value.lower() and not value.lower().startswith("data:")


def test_html_raw_is_a_high_risk_capability_that_says_it_runs_scripts() -> None:
    raw = capabilities.get("html.raw")
    assert raw.risk == "high" and raw.builtin
    assert "scripts" in raw.description and "admins" in raw.description


def test_admin_and_api_carry_a_strict_csp_and_the_site_keeps_its_own(client, settings) -> None:  # type: ignore[no-untyped-def]
    for path in ("/admin/login/", "/api/capabilities/", "/api/docs/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert "script-src 'self';" in policy
        assert "object-src 'none'" in policy and "base-uri 'none'" in policy
    assert "Content-Security-Policy" not in client.get("/")  # the blog is the site's to police
    assert "gonext_plugins.W006" not in {m.id for m in checks.run_checks()}
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != CSP_MIDDLEWARE]
    assert "gonext_plugins.W006" in {m.id for m in checks.run_checks()}


# Issue #18: a filter chain of plugins each adding to already sanitized content sanitizes what each
# one added, not the whole content again; what they add is held to the same allowlist.
SANITIZED_POST = "<p>Post &amp; <a href='https://example.com/'>a link</a> <b>bold</p>&"
RAW_TEXT_ELEMENTS = {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes",
                     "plaintext", "noscript", "template"}
ADDED_VECTORS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>",
    "<a href='java\tscript:alert(1)'>x</a>", "<iframe src=//evil></iframe>", "<style>*{}</style>",
    "<noscript><p title='</noscript><img src=x onerror=alert(1)>'>", "<!--<img src=x onerror=alert(1)>-->",
    "</p></b><script>alert(1)</script>",  # closing what the content left open changes nothing
    "lt;img src=x onerror=alert(1)&gt;",  # after the content's escaped "&": text, not a tag
    "\" onmouseover=\"alert(1)",  # no attribute of the content is open to receive it
]


def assert_inert(html: str) -> None:
    page = Page(html)
    for tag, attrs in page.elements:
        assert tag not in FORBIDDEN_TAGS | {"meta", "link"}
        assert not [name for name in attrs if name.startswith("on") or name in ("style", "srcdoc")]
        for value in attrs.values():
            assert "javascript" not in value.lower()


def test_the_sanitizer_allows_no_element_that_would_swallow_what_follows() -> None:
    assert not RAW_TEXT_ELEMENTS & markup.ALLOWED_TAGS


@pytest.mark.parametrize("added", ADDED_VECTORS)
def test_html_added_to_sanitized_content_is_sanitized_alone(added: str) -> None:
    content = markup.sanitize(SANITIZED_POST)
    appended = markup.clean_filter_value(content, content + added, raw=False, html=True)
    prepended = markup.clean_filter_value(content, added + content, raw=False, html=True)
    assert isinstance(appended, markup.Sanitized) and isinstance(prepended, markup.Sanitized)
    assert appended.startswith(content) and prepended.endswith(content)  # kept as it was
    assert appended[len(content):] == markup.sanitize(added)
    assert prepended[:len(prepended) - len(content)] == markup.sanitize(added)
    assert_inert(appended)
    assert_inert(prepended)


def test_a_change_inside_sanitized_content_is_sanitized_whole() -> None:
    content = markup.sanitize(SANITIZED_POST)
    changed = content.replace("a link", "a link<img src=x onerror=alert(1)>")
    result = markup.clean_filter_value(content, changed + "<p>more</p>", raw=False, html=True)
    assert result == markup.sanitize(changed + "<p>more</p>")
    assert_inert(result)


def test_site_markup_is_not_taken_for_sanitized_content() -> None:
    """The site's own SafeData was never through the sanitizer: a plugin result that extends it is
    sanitized whole (what the site trusted is not what the plugin returned)."""
    site = mark_safe("<p>Site</p><iframe src='https://video.example/'></iframe>")
    result = markup.clean_filter_value(site, site + "<p>more</p>", raw=False, html=True)
    assert result == markup.sanitize(site + "<p>more</p>")
    assert "<iframe" not in result


def test_html_raw_results_are_trusted_whole() -> None:
    content = markup.sanitize(SANITIZED_POST)
    result = markup.clean_filter_value(content, content + "<script>ok()</script>", raw=True, html=True)
    assert result == content + "<script>ok()</script>" and isinstance(result, SafeData)
    assert not isinstance(result, markup.Sanitized)
