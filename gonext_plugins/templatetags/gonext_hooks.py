"""Template tags for the hook bus: ``{% load gonext_hooks %}``.

- ``{{ value|apply_filters:"the_content" }}`` — run a filter hook on a value.
- ``{% apply_filters "the_content" value post as html %}`` — the same with extra arguments.
- ``{% do_action "wp_head" post %}`` — run an action and render the HTML fragments plugins returned.

Escaping follows Django's rule: a filter's output is treated as HTML only when its input already
was (``SafeData``), so a hook can never launder plain text into markup. Fragments from
``do_action`` are HTML by contract: a plugin granted ``hooks.subscribe`` writes page markup, as a
WordPress plugin does, and is responsible for escaping what it interpolates.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeData, SafeString, mark_safe

from gonext_plugins import hooks

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


def fragment(body: Any) -> str | None:
    """The HTML of one action body: a string, or ``{"html": "..."}``."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("html"), str):
        return body["html"]
    return None


@register.simple_tag(name="do_action")
def do_action_tag(name: str, *args: Any) -> SafeString:
    parts = [html for html in map(fragment, hooks.do_action(name, *args)) if html]
    return mark_safe("\n".join(parts))
