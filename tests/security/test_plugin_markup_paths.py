"""Issue #13, class 4, the paths around the sanitizer (found by a hostile review of the fix).

Sanitizing keyed on a step's own input or on the plugin's declared hook kind left three ways for a
plugin holding only ``hooks.subscribe`` to put script into a page, or to break it:

- declaring a page's action (``wp_head``) as a *filter*: ``do_action`` collected its unsanitized
  string, and the template tag marked it safe;
- breaking a filter chain's ``SafeData`` with a non-string step (one plugin returns ``0``, the next
  a script): the chain started as HTML, the tag re-marked the end result safe;
- an action body nested 1000 deep (``{"jsonld": [[[...]]]}``): it parsed, then raised
  ``RecursionError`` while the page rendered, a 500 with no fault recorded.

Now the bridge cleans each result the way the running hook uses it (``hooks.current_run_kind``),
and every guest result is checked for depth and lone surrogates where it comes back
(``LoadedPlugin.invoke``), a ``bad_result`` fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import wasmtime
from django.template import engines

from gonext_plugins import lifecycle
from gonext_plugins.models import PluginFault
from gonext_plugins.registry import registry

pytestmark = pytest.mark.django_db
CAPS = ["hooks.subscribe"]
SCRIPT = "<script>alert(1)</script>"


def fixed_guest(body: str) -> bytes:
    """A guest (ABI.md) answering every hook call with the same body."""
    data = body.encode()
    escaped = "".join(f"\\{byte:02x}" for byte in data)
    return wasmtime.wat2wasm(f'''(module (memory (export "memory") 2) (global $h (mut i32) (i32.const 8192))
      (data (i32.const 1024) "{escaped}")
      (func $alloc (export "gn_alloc") (param $n i32) (result i32) (local $p i32)
        (local.set $p (global.get $h))
        (global.set $h (i32.add (global.get $h) (local.get $n))) (local.get $p))
      (func (export "gn_free") (param i32 i32))
      (func (export "gn_handle_hook") (param i32 i32 i32 i32) (result i64) (local $o i32)
        (local.set $o (call $alloc (i32.const {len(data)})))
        (memory.copy (local.get $o) (i32.const 1024) (i32.const {len(data)}))
        (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32)) (i64.const {len(data)}))))''')


def render(template: str, **context: object) -> str:
    return engines["django"].from_string("{% load gonext_hooks %}" + template).render(context)


@pytest.fixture
def active(make_bundle: Callable[..., object], django_capture_on_commit_callbacks) -> Callable[..., None]:  # type: ignore[no-untyped-def]
    def install(body: str, *, slug: str = "demo", hooks: list[dict[str, object]]) -> None:
        bundle = make_bundle(wasm=fixed_guest(body), capabilities=CAPS, slug=slug, hooks=hooks)
        with django_capture_on_commit_callbacks(execute=True):
            lifecycle.install(bundle, CAPS, "tests", activate=True)
        registry.sync(force=True)

    return install


def test_a_filter_declared_on_a_pages_action_is_sanitized(active: Callable[..., None]) -> None:
    active(json.dumps({"value": SCRIPT}), hooks=[{"name": "wp_head", "kind": "filter"}])
    out = render('{% do_action "wp_head" post %}', post="p")
    assert "<script" not in out and "alert" not in out


def test_a_non_string_step_does_not_end_a_chains_html(active: Callable[..., None]) -> None:
    active(json.dumps({"value": 0}), slug="first", hooks=[{"name": "the_content", "kind": "filter",
                                                           "priority": 5}])
    active(json.dumps({"value": SCRIPT}), slug="second", hooks=[{"name": "the_content", "kind": "filter",
                                                                  "priority": 50}])
    out = render('{{ body|linebreaks|apply_filters:"the_content" }}', body="hi")
    assert "<script" not in out and "alert" not in out


def test_an_action_declared_on_a_filter_is_sanitized_as_html(active: Callable[..., None]) -> None:
    active(json.dumps({"html": SCRIPT}), hooks=[{"name": "the_content", "kind": "action", "priority": 5}])
    active(json.dumps({"value": SCRIPT}), slug="second", hooks=[{"name": "the_content", "kind": "filter",
                                                                  "priority": 50}])
    out = render('{{ body|linebreaks|apply_filters:"the_content" }}', body="hi")
    assert "<script" not in out


def test_a_result_nested_too_deep_is_a_fault_and_the_page_renders(  # type: ignore[no-untyped-def]
        active: Callable[..., None], client) -> None:
    from project.blog.models import Post

    active('{"jsonld": ' + "[" * 1000 + "]" * 1000 + "}", hooks=[{"name": "wp_head", "kind": "action"}])
    post = Post.objects.create(title="Deep", slug="deep", body="Body.")
    response = client.get(post.get_absolute_url())
    assert response.status_code == 200
    assert b"Body." in response.content
    fault = PluginFault.objects.get(plugin__slug="demo")
    assert fault.kind == "bad_result" and "nested more than" in fault.message, fault.message
