"""Template tags for the hook bus: ``{% load gonext_hooks %}``.

- ``{{ value|apply_filters:"the_content" }}`` — run a filter hook on a value.
- ``{% apply_filters "the_content" value post as html %}`` — the same with extra arguments.
- ``{% do_action "wp_head" post %}`` — run an action and render the HTML fragments plugins returned.

Escaping follows Django's rule: a filter's output is treated as HTML only when its input already
was (``SafeData``), so a hook can never launder plain text into markup. Fragments from
``do_action`` are plugin markup, untrusted: the bridge sanitized their HTML (unless the plugin
holds ``html.raw``) and checked their structured outputs, which :func:`markup.render_fragment`
renders here with every value escaped.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeData, SafeString, mark_safe

from gonext_plugins import hooks
from gonext_plugins.markup import render_fragment

register = template.Library()


def _keep_safety(original: Any, result: Any) -> Any:
    if isinstance(original, SafeData) and isinstance(result, str):
        return mark_safe(result)
    return result


@register.filter(name="apply_filters")
def apply_filters_filter(value: Any, name: str) -> Any:
    return _keep_safety(value, hooks.apply_filters(name, value))


@register.simple_tag(name="apply_filters")
def apply_filters_tag(name: str, value: Any, *args: Any) -> Any:
    return _keep_safety(value, hooks.apply_filters(name, value, *args))


@register.simple_tag(name="do_action")
def do_action_tag(name: str, *args: Any) -> SafeString:
    parts = [html for html in map(render_fragment, hooks.do_action(name, *args)) if html]
    return mark_safe("\n".join(parts))
