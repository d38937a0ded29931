"""The markup module's fast paths give exactly what the slow ones gave.

The sanitizer's cache (``markup._sanitized``): a plugin that returns the same markup on every page
is sanitized once, and the cache never hands one input's result to another input. Each check
compares with Ammonia itself (``markup._cleaner.clean``, uncached): a cache that served a stale,
shared or unsanitized string fails here. ``json_for_script`` is compared with ``json.dumps`` and
the escapes it documents. The rendered-head memo (``markup._rendered``) is compared with the
uncached renderer for bodies that differ by one value, one key or one type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils.safestring import SafeData, mark_safe

from gonext_plugins import hooks, lifecycle, markup
from gonext_plugins.registry import registry

# Pairs that differ by little (one character, a tag, an attribute): a cache keyed on anything
# looser than the exact string (a prefix, a length, a hash alone) would mix them up.
NEAR_MISSES = [
    "<p>safe</p>",
    "<p>safe</p><script>alert(1)</script>",
    "<p>Safe</p>",
    "<p>safe</p> ",
    '<a href="https://example.com/">x</a>',
    '<a href="javascript:alert(1)">x</a>',
    '<img src="/a.png" alt="a">',
    '<img src="/a.png" alt="a" onerror="alert(1)">',
    "<b>x</b><style>*{}</style>",
    "<b>x</b>",
    "",
]


@pytest.fixture(autouse=True)
def _empty_cache() -> Any:
    markup._sanitized.clear()
    markup._rendered.clear()
    yield
    markup._sanitized.clear()


def test_every_result_is_the_sanitizers_own_for_that_exact_input() -> None:
    for _ in range(3):  # first pass fills the cache, the next ones are served from it
        for html in NEAR_MISSES + list(reversed(NEAR_MISSES)):
            assert markup.sanitize(html) == markup._cleaner.clean(html), html
    assert len(markup._sanitized) == len(set(NEAR_MISSES))


def test_a_safe_string_input_is_cleaned_like_the_same_characters() -> None:
    """``SafeString`` says the site trusts it, not that the cache may: it is cleaned by its
    characters, and its result is the plain string's."""
    hostile = "<p>x</p><script>alert(1)</script>"
    assert markup.sanitize(mark_safe(hostile)) == markup._cleaner.clean(hostile) == "<p>x</p>"
    assert markup.sanitize(hostile) == "<p>x</p>"


def test_the_cache_is_bounded_by_entries_and_by_characters() -> None:
    cache = markup._BoundedCache(max_entries=3, max_chars=40, max_item_chars=20)
    for key in ("a", "b", "c", "d"):
        cache.put(key, key.upper())
    assert len(cache) == 3 and cache.get("a") is None and cache.get("d") == "D"  # oldest went first
    cache.get("b")  # used: now the newest
    cache.put("e" * 9, "E" * 9)  # 18 characters: over 40 in all, so the least recently used go
    assert cache.get("b") == "B" and cache.get("c") is None
    cache.put("f" * 11, "F" * 11)  # 22 characters: over max_item_chars, never kept
    assert cache.get("f" * 11) is None


def test_added_markup_is_sanitized_through_the_cache_too() -> None:
    """The append/prepend path of ``clean_filter_value`` (only the added part is cleaned) gives what a
    fresh clean gives, for a harmless addition and a hostile one alike."""
    content = markup.sanitize("<p>post</p>")
    for added in ("<p>badge</p>", "<p>badge</p><script>x()</script>", "<p>badge</p>"):
        result = markup.clean_filter_value(content, content + added, raw=False, html=True)
        assert result == content + markup._cleaner.clean(added)
        assert isinstance(result, markup.Sanitized)


@pytest.mark.django_db
def test_a_plugins_changed_markup_shows_and_stays_sanitized(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """The test guest's ``upper`` filter upper-cases its value: each new input gives new markup,
    which must show (no earlier result served) and must still be sanitized; the same input again
    gives the same page."""
    caps = ["hooks.subscribe"]
    lifecycle.install(make_bundle(capabilities=caps, hooks=[{"name": "upper", "kind": "filter"}]),
                      caps, "tests", activate=True)
    registry.sync(force=True)
    seen = []
    for text in ("first", "second", "first"):
        result = hooks.apply_filters("upper", mark_safe(f"<b>{text}</b><script>steal()</script>"))
        assert isinstance(result, SafeData)
        assert result == f"<b>{text.upper()}</b>"
        seen.append(str(result))
    assert seen == ["<b>FIRST</b>", "<b>SECOND</b>", "<b>FIRST</b>"]


@pytest.mark.django_db
def test_html_raw_results_never_come_from_the_cache(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """A plugin holding ``html.raw`` gets its exact markup through even when the same string was
    sanitized for another plugin before: the cache stands only for sanitizing."""
    hostile = "<b>x</b><script>site()</script>"
    assert markup.sanitize(hostile.upper()) == "<b>X</b>"  # cached for the upper-cased string
    caps = ["hooks.subscribe", "html.raw"]
    lifecycle.install(make_bundle(capabilities=caps, hooks=[{"name": "upper", "kind": "filter"}]),
                      caps, "tests", activate=True)
    registry.sync(force=True)
    assert hooks.apply_filters("upper", mark_safe(hostile)) == hostile.upper()


@pytest.mark.parametrize("data", [
    {"headline": "</script><script>alert(1)</script><!--", "n": 1.5, "ok": True, "none": None},
    ["&amp; &lt; <!-- --> \u2028 \u2029 é 😀", float("nan"), -0.0, 10**20],
    "plain",
])
def test_json_for_script_is_json_dumps_with_the_script_breaking_characters_escaped(data: Any) -> None:
    expected = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        expected = expected.replace(char, escape)
    result = markup.json_for_script(data)
    assert result == expected
    assert not {"<", ">", "&"} & set(result) and result.isascii()


@pytest.mark.django_db
def test_revoking_html_raw_sanitizes_the_very_next_call(make_bundle) -> None:  # type: ignore[no-untyped-def]
    """A proxy reads the plugin's ``html.raw`` grant once, when it is made: a grant change re-wires
    the plugin with new proxies, so a revoked grant holds from the next call on."""
    bundle = make_bundle(capabilities=["hooks.subscribe"], optionalCapabilities=["html.raw"],
                         hooks=[{"name": "upper", "kind": "filter"}])
    lifecycle.install(bundle, ["hooks.subscribe", "html.raw"], "tests", activate=True)
    registry.sync(force=True)
    hostile = mark_safe("<b>x</b><script>site()</script>")
    assert hooks.apply_filters("upper", hostile) == "<B>X</B><SCRIPT>SITE()</SCRIPT>"
    lifecycle.revoke(bundle.manifest.slug, "html.raw", "tests")
    registry.sync(force=True)
    assert hooks.apply_filters("upper", hostile) == "<b>X</b>"


# Action bodies that differ by little: one value, its type (1 / 1.0 / "1" / true), a key, an
# order of items. A memo keyed on anything looser than the body's content mixes them up.
NEAR_MISS_BODIES: list[dict[str, Any]] = [
    {"title": "Hello"},
    {"title": "Hello "},
    {"title": "<b>Hello</b>"},
    {"meta": [{"name": "description", "content": "a"}]},
    {"meta": [{"property": "description", "content": "a"}]},
    {"meta": [{"name": "description", "content": "a\"><script>"}]},
    {"meta": [{"name": "a", "content": "1"}, {"name": "b", "content": "2"}]},
    {"meta": [{"name": "b", "content": "2"}, {"name": "a", "content": "1"}]},
    {"link": [{"rel": "canonical", "href": "https://example.com/a"}]},
    {"link": [{"rel": "canonical", "href": "https://example.com/a", "hreflang": "en"}]},
    {"jsonld": {"n": 1}},
    {"jsonld": {"n": 1.0}},
    {"jsonld": {"n": "1"}},
    {"jsonld": {"n": True}},
    {"jsonld": {"n": "</script><script>alert(1)</script>"}},
    {"html": "<p>x</p>"},
    {"html": "<p>x</p>", "title": "t"},
]


@pytest.mark.parametrize("raw", [False, True])
def test_a_plugin_body_renders_as_the_uncached_renderer_renders_it(raw: bool) -> None:
    bodies = [markup.clean_action_body(body, slug="p", raw=raw) for body in NEAR_MISS_BODIES]
    assert all(type(body) is markup.PluginBody for body in bodies)
    for _ in range(2):  # the second pass is served from the memo
        for body in bodies:
            assert markup.render_fragment(body) == markup._render(body)
    assert len(markup._rendered) == len({json.dumps(body) for body in NEAR_MISS_BODIES})


def test_a_body_changed_after_it_was_rendered_renders_anew() -> None:
    body = markup.clean_action_body({"title": "before", "meta": [{"name": "a", "content": "x"}]},
                                    slug="p", raw=False)
    assert "before" in markup.render_fragment(body)
    body["title"] = "after"
    body["meta"][0]["content"] = "<y>"
    assert markup.render_fragment(body) == markup._render(body) == (
        '<title>after</title>\n<meta name="a" content="&lt;y&gt;">')


def test_a_body_that_json_cannot_say_is_rendered_uncached() -> None:
    body = markup.clean_action_body({"title": "t"}, slug="p", raw=False)
    body["meta"] = [{"name": "n", "content": object()}]  # the site's code put an object there
    assert markup.render_fragment(body) == markup._render(body)
    assert len(markup._rendered) == 0


def test_a_sites_own_dict_body_is_never_memoized() -> None:
    body = {"title": "from the site's Python receiver"}
    assert markup.render_fragment(body) == "<title>from the site&#x27;s Python receiver</title>"
    assert len(markup._rendered) == 0
