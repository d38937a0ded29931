"""The markup module's fast paths give exactly what the slow ones gave.

The sanitizer's cache (``markup._sanitized``): a plugin that returns the same markup on every page
is sanitized once, and the cache never hands one input's result to another input. Each check
compares with Ammonia itself (``markup._cleaner.clean``, uncached): a cache that served a stale,
shared or unsanitized string fails here. ``json_for_script`` is compared with ``json.dumps`` and
the escapes it documents.
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
