"""Plugin markup is untrusted: the sanitizer and the structured outputs the host renders itself.

A plugin page runs on the same origin as the admin and the API, so one script in a fragment acts
with the session and CSRF token of every admin who views that page. Hence:

- every HTML string a plugin hands back (an action body, ``{"html": ...}``, a filter value that
  renders as HTML) goes through :func:`sanitize`, Ammonia (``nh3``) against an allowlist with no
  script, style, iframe, object, embed, form, base or meta, no ``on*`` or ``style`` attributes and
  only ``http``/``https``/``mailto``/``tel`` or relative URLs, unless the plugin holds
  :data:`RAW_HTML` (a high-risk capability that says plainly it can run scripts);
- what plugins commonly need in ``<head>`` needs no markup at all: an action body's ``title``,
  ``meta`` (``name``/``property`` + ``content`` only, so no ``http-equiv`` refresh), ``link``
  (an allowlist of ``rel`` values, ``http(s)`` or relative ``href``) and ``jsonld`` (escaped so
  no value can end its ``<script type="application/ld+json">``) are checked here and rendered,
  escaped, by :func:`render_fragment`.

The bridge is the one caller of :func:`clean_action_body` and :func:`clean_filter_value`: that is
where a plugin's result enters the hook bus, keyed on the plugin's grants. Pure policy: no
database, no plugin state.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from html import escape as html_escape
from itertools import chain, repeat
from typing import Any
from urllib.parse import urlsplit

import nh3
import orjson
from django.utils.safestring import SafeData, SafeString, mark_safe

from .errors import BadPluginMarkup

RAW_HTML = "html.raw"
"""The capability that lets a plugin's markup through unsanitized."""

ALLOWED_TAGS: frozenset[str] = frozenset(nh3.ALLOWED_TAGS)
"""Ammonia's default allowlist: text-level and structural tags only (no script, style, iframe,
object, embed, form, input, base, meta, link, svg or math)."""

ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"class", "lang", "title", "dir"},
}
"""Ammonia's per-tag defaults plus a few harmless global ones; never ``on*``, ``style``, ``id``
(DOM clobbering) or ``srcdoc``."""

URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto", "tel"})
"""Schemes allowed in ``href``/``src``; ``javascript:``, ``data:`` and ``vbscript:`` never are."""

LINK_RELS: frozenset[str] = frozenset(
    {"canonical", "alternate", "author", "license", "next", "prev", "shortlink", "me"}
)
"""``rel`` values a plugin's ``{"link": [...]}`` may use: metadata only. No ``stylesheet`` (CSS can
read the page's tokens through attribute selectors), no ``preload``/``prefetch``/``modulepreload``
(fetches and script loads), no ``manifest`` or ``import``."""

META_KEYS = ("name", "property")
_META_KEY_SETS = frozenset(frozenset((key, "content")) for key in META_KEYS)
"""The key sets a "meta" entry may have: exactly one of META_KEYS, and "content"."""
STRUCTURED_KEYS = ("title", "meta", "link", "jsonld")
MAX_STRUCTURED_ITEMS = 100

_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes=set(URL_SCHEMES),
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)



class Sanitized(SafeString):
    """What :func:`sanitize` returned: allowlisted HTML as Ammonia serializes it, which ends where a
    parser started, whatever follows: every element it opens is closed, every ``&`` and ``<`` of
    its text is escaped, and it holds no comment, attribute left open, or script, style or other
    raw-text element. So HTML added before or after it can be sanitized on its own (see
    :func:`clean_filter_value`)."""

    __slots__ = ()


class _BoundedCache:
    """A thread-safe LRU of ``str | bytes -> str`` bounded by entries and by the characters it holds
    (keys and values): only for pure functions of the key's exact characters (or bytes), so a hit
    is the very result a fresh call would give. Items over ``max_item_chars`` are never kept."""

    def __init__(self, max_entries: int, max_chars: int, max_item_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.max_item_chars = max_item_chars
        self._items: OrderedDict[str | bytes, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: str | bytes) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str | bytes, value: str) -> None:
        size = len(key) + len(value)
        if size > self.max_item_chars:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._chars += size
            while len(self._items) > self.max_entries or self._chars > self.max_chars:
                old_key, old_value = self._items.popitem(last=False)
                self._chars -= len(old_key) + len(old_value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._chars = 0

    def __len__(self) -> int:
        return len(self._items)


# Sanitizing is a pure function of the exact input and this module's fixed policy, and a plugin
# usually returns the same markup on every page (a badge, a paragraph, the post it was given): each
# distinct string is cleaned once, then served from here (a dict lookup instead of an Ammonia parse).
_sanitized = _BoundedCache(max_entries=1024, max_chars=4 * 1024 * 1024, max_item_chars=256 * 1024)


def _clean(html: str) -> str:
    """``_cleaner.clean(html)``, remembered by the exact string (:data:`_sanitized`)."""
    key = str.__str__(html)  # a str subclass (SafeString) keys by its characters, like a str
    cleaned = _sanitized.get(key)
    if cleaned is None:
        cleaned = _cleaner.clean(key)
        _sanitized.put(key, cleaned)
    return cleaned


def sanitize(html: str) -> SafeString:
    """The allowlisted form of untrusted ``html``, safe to render anywhere in a page."""
    return Sanitized(_clean(html))


def _trusted_or_sanitized(html: str, raw: bool) -> SafeString:
    return mark_safe(html) if raw else sanitize(html)


def clean_filter_value(original: Any, result: Any, *, raw: bool, html: bool = False) -> Any:
    """A plugin filter's result as the bus passes it on.

    A string counts as HTML when the chain renders as HTML (``html``: it started from ``SafeData``,
    whatever a step in between returned) or the value it replaced was ``SafeData`` (Django's rule):
    that one is sanitized (or trusted, with ``html.raw``) and stays marked safe, so the next filter
    in the chain sees HTML too. Plain text is left as it is: the template escapes it.

    A result equal to a ``SafeData`` original is that original: nothing the plugin said needs
    cleaning (a filter with no body hands the value back), and a page whose content passes through
    many plugins that leave it alone is not sanitized once per plugin. A result that keeps an
    already :class:`Sanitized` original whole and adds HTML before or after it (a badge, a
    paragraph) has only the added part sanitized: with 20 plugins each adding to the content, the
    content is not sanitized 20 times over.
    """
    if isinstance(original, SafeData) and result == original:
        return original
    if isinstance(original, Sanitized) and not raw and isinstance(result, str):
        if result.startswith(original):
            return Sanitized(original + _clean(result[len(original):]))
        if result.endswith(original):
            return Sanitized(_clean(result[:len(result) - len(original)]) + original)
    if (html or isinstance(original, SafeData)) and isinstance(result, str):
        return _trusted_or_sanitized(result, raw)
    return result


class PluginBody(dict[str, Any]):
    """An action body from a plugin, as :func:`clean_action_body` checked it: JSON data (strings,
    numbers, lists, objects) and, under ``html``, markup already sanitized. Only these are
    rendered through :data:`_rendered`."""

    __slots__ = ()


def clean_action_body(body: Any, *, slug: str, raw: bool) -> Any:
    """A plugin action's body as ``do_action`` returns it: a string is HTML (sanitized); in a dict,
    ``html`` is HTML (sanitized) and the structured outputs are checked (:class:`BadPluginMarkup`
    on a bad one, so the bridge skips the whole body). Other keys are data, passed through."""
    if isinstance(body, str):
        return _trusted_or_sanitized(body, raw)
    if not isinstance(body, dict):
        return body
    cleaned = PluginBody(body)
    if "html" in cleaned:
        if not isinstance(cleaned["html"], str):
            raise BadPluginMarkup('"html" must be a string', plugin=slug)
        cleaned["html"] = _trusted_or_sanitized(cleaned["html"], raw)
    if "title" in cleaned and not isinstance(cleaned["title"], str):
        raise BadPluginMarkup('"title" must be a string', plugin=slug)
    # The body is the plugin's freshly decoded JSON, owned by this call: its lists are checked where
    # they are, not copied.
    if "meta" in cleaned:
        _check_meta(_items(cleaned["meta"], "meta", slug), slug)
    if "link" in cleaned:
        for item in _items(cleaned["link"], "link", slug):
            _check_link(item, slug)
    if "jsonld" in cleaned and not isinstance(cleaned["jsonld"], dict | list):
        raise BadPluginMarkup('"jsonld" must be an object or a list', plugin=slug)
    return cleaned


def _items(value: Any, key: str, slug: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_STRUCTURED_ITEMS:
        raise BadPluginMarkup(f'"{key}" must be a list of at most {MAX_STRUCTURED_ITEMS} objects',
                              plugin=slug)
    # One pass in C over every value of every item, on every head of every page: dict.values
    # refuses an item that is not a dict (TypeError), isinstance a value that is not a string.
    try:
        fine = all(map(isinstance, chain.from_iterable(map(dict.values, value)), repeat(str)))
    except TypeError:
        fine = False
    if not fine:
        raise BadPluginMarkup(f'each "{key}" entry must be an object of strings', plugin=slug)
    return value


def _check_meta(items: list[Mapping[str, Any]], slug: str) -> None:
    """Each entry ``{"name"|"property": ..., "content": ...}`` and nothing else: no ``http-equiv``
    (refresh, set-cookie, CSP), no ``charset``. One pass in C for the usual head of a dozen tags."""
    if all(map(_META_KEY_SETS.__contains__, map(frozenset, items))):
        return
    for item in items:
        if frozenset(item) not in _META_KEY_SETS:
            raise BadPluginMarkup(
                f'a "meta" entry needs exactly "name" or "property", and "content"; got {sorted(item)}',
                plugin=slug)


def _check_link(item: Mapping[str, Any], slug: str) -> None:
    """``{"rel", "href", "hreflang"?, "type"?}`` with an allowlisted ``rel`` and a safe ``href``."""
    unknown = set(item) - {"rel", "href", "hreflang", "type"}
    if unknown or "rel" not in item or "href" not in item:
        raise BadPluginMarkup(f'a "link" entry needs "rel" and "href" (and at most "hreflang", "type"); '
                              f"got {sorted(item)}", plugin=slug)
    rels = item["rel"].lower().split()
    if not rels or any(rel not in LINK_RELS for rel in rels):
        allowed = ", ".join(sorted(LINK_RELS))
        raise BadPluginMarkup(f"link rel {item['rel']!r} is not allowed; allowed: {allowed}", plugin=slug)
    if not is_safe_url(item["href"]):
        raise BadPluginMarkup(f"link href {item['href']!r} is not an http(s) or relative URL", plugin=slug)


@lru_cache(maxsize=1024)  # a pure function of the string; a plugin sends the same URLs on every page
def is_safe_url(url: str) -> bool:
    """``http``/``https`` or relative, with no control characters or spaces a browser would strip
    (``java\\tscript:``)."""
    if not url or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        return False
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        return False
    return scheme in ("", "http", "https")


# ``json.dumps`` with any non-default option builds a new encoder per call (most of its cost on a
# small JSON-LD object); this one is built once, with the same options, so the output is the same.
_script_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def json_for_script(data: Any) -> str:
    """JSON that cannot end or comment out the ``<script>`` element it sits in."""
    # The characters that could end a <script> element or an HTML comment inside it become JSON
    # \uXXXX escapes; U+2028/U+2029 too (ensure_ascii), so the text is also valid JavaScript.
    # Three C-level replaces: the output is ASCII, and this is far cheaper than str.translate.
    return (_script_json.encode(data).replace("&", "\\u0026").replace("<", "\\u003c")
            .replace(">", "\\u003e"))


def escape(value: Any) -> str:
    """Django's ``django.utils.html.escape`` (the same ``html.escape(str(value))``) without its
    lazy-string wrapper and ``SafeString``: it runs for every value of every head fragment on every
    page, and the wrapper cost more than the escaping (a third of a SEO head's rendering)."""
    return html_escape(str(value))


# A plugin's head is usually the same on every view of a page. Rendering is a pure function of the
# body, and a plugin's body is JSON data, so its JSON text keys the HTML: a repeat costs one encode
# and a lookup instead of escaping every value (the same content in another key order only misses).
# JSON has one text per value it can hold; a body the site's code changed to hold a float NaN or
# infinity (orjson writes null) could share a key with one holding null, both rendered escaped.
_rendered = _BoundedCache(max_entries=512, max_chars=2 * 1024 * 1024, max_item_chars=64 * 1024)


def render_fragment(body: Any) -> str:
    """The HTML of one action body, as the host renders it (every value escaped here).

    A string or ``html`` is markup: from a plugin, the bridge already sanitized it; from the site's
    own Python receivers (``collect = True``), it is the site's code, trusted like its templates.
    A plugin's body (:class:`PluginBody`) is rendered once per distinct content (:data:`_rendered`).
    """
    if isinstance(body, str):
        return body
    if not isinstance(body, dict):
        return ""
    if type(body) is not PluginBody:
        return _render(body)
    try:
        key = orjson.dumps(body)
    except TypeError:  # changed by the site's code into something JSON cannot say: no memo
        return _render(body)
    html = _rendered.get(key)
    if html is None:
        html = _render(body)
        _rendered.put(key, html)
    return html


def _render(body: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if isinstance(body.get("title"), str):
        parts.append(f"<title>{escape(body['title'])}</title>")
    for item in body.get("meta") or ():
        key = "name" if "name" in item else "property"
        parts.append(f'<meta {key}="{escape(item[key])}" content="{escape(item["content"])}">')
    for item in body.get("link") or ():
        attrs = "".join(f' {name}="{escape(item[name])}"' for name in ("rel", "href", "hreflang", "type")
                        if name in item)
        parts.append(f"<link{attrs}>")
    if isinstance(body.get("html"), str):
        parts.append(body["html"])
    if "jsonld" in body:
        parts.append(f'<script type="application/ld+json">{json_for_script(body["jsonld"])}</script>')
    return "\n".join(part for part in parts if part)
