"""docs/site-developers.md, executed: every ```python block, in order, in one namespace, against the
test site, so the guide cannot drift from the API. A block after ``<!-- not run: why -->`` is a
settings fragment and is skipped; a block after ``<!-- doc: from PATH -->`` is an excerpt of that
file, and each of its lines that is not an import must appear there verbatim.

What the blocks add to this process (a capability re-registered, hooks declared, a serializer, a
signal receiver) is undone afterwards, so the page's examples leave the other tests alone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from django.db.models.signals import post_save

from gonext_plugins import bridge, capabilities, hooks
from project.blog.models import Post

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "site-developers.md"
_BLOCK = re.compile(r"(?:<!-- (not run|doc): ?(.*?) -->\n)?```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str | None, str, str]]:
    """``(directive, argument, code)`` of every python block, in order."""
    return [(m.group(1), m.group(2) or "", m.group(3)) for m in _BLOCK.finditer(DOC.read_text())]


@pytest.fixture
def restored() -> Iterator[None]:
    """Put back what the page's blocks change in this process."""
    before_catalogue = {hook.name: hook for hook in hooks.catalogue()}
    before_caps = {cap.name: cap for cap in capabilities.all_capabilities()}
    before_funcs = {f.name: f for f in capabilities.host_functions}
    try:
        yield
    finally:
        for hook in hooks.catalogue():
            if hook.name not in before_catalogue:
                hooks.undeclare(hook.name)
        for cap in before_caps.values():
            capabilities.register(cap.name, cap.description, cap.risk, builtin=cap.builtin)
        for func in before_funcs.values():
            capabilities.host_functions.register(func.name, func.capability, func.func)
        bridge._serializers.pop(Fraction, None)
        post_save.disconnect(sender=Post, dispatch_uid="docs_save_post_hook")


def test_the_page_has_the_sections_the_issue_asks_for() -> None:
    text = DOC.read_text()
    for heading in ("Installing", "Registering capabilities and host functions",
                    "Declaring the hooks the site offers", "Firing actions and filters",
                    "Serializing models for plugins", "The job worker", "Metrics",
                    "Static files in production", "The security model", "Upgrading the app"):
        assert re.search(rf"^## {heading}", text, re.M), heading
    for link in ("security.md", "jobs.md", "../README.md#using-it-in-your-site"):
        assert f"]({link}" in text, link
        assert (DOC.parent / link.split("#")[0]).exists(), link
    assert "manage.py plugin_worker" in text and "{% load gonext_hooks %}" in text


def test_excerpts_match_their_source() -> None:
    excerpts = [(arg, code) for directive, arg, code in blocks() if directive == "doc"]
    assert excerpts, "the capability example must be the blog's real code"
    for arg, code in excerpts:
        source = (REPO / arg.removeprefix("from ").strip()).read_text()
        for line in code.splitlines():
            if line.strip() and not line.startswith(("from ", "import ")):
                assert line in source, f"{arg}: {line!r} is not in the file"


@pytest.mark.django_db
def test_every_python_block_runs(restored: None) -> None:
    namespace: dict[str, object] = {"__name__": "site_developers_doc"}
    ran = 0
    for number, (directive, _, code) in enumerate(blocks(), 1):
        if directive == "not run":
            continue
        exec(compile(code, f"{DOC.name}[python block {number}]", "exec"), namespace)
        ran += 1
    assert ran >= 8
    # What the page promised is in place: the declared hooks, the receiver, the serializer.
    assert hooks.declared("the_title").kind == "filter"  # type: ignore[union-attr]
    assert hooks.declared("post_published").kind == "action"  # type: ignore[union-attr]
    fired = hooks.did_action("save_post")
    Post.objects.create(title="Saved", slug="saved", body="x")
    assert hooks.did_action("save_post") == fired + 2  # the blog's receiver and the page's
