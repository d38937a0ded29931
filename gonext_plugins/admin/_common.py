"""What the admin's custom views share: a form's posted data, and rendering inside the admin."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.response import TemplateResponse


def posted(request: HttpRequest, *, files: bool = False) -> tuple[Any, ...]:
    """A form's data: bound on POST even when nothing was ticked (an empty POST is falsy)."""
    if request.method != "POST":
        return ()
    return (request.POST, request.FILES) if files else (request.POST,)


class AdminViewsMixin:
    """Rendering a template inside the admin's chrome for a ``ModelAdmin`` mixin's custom views."""

    admin_site: Any
    model: Any

    def _render(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        opts = self.model._meta
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request), "opts": opts, "app_label": opts.app_label,
            "title": title, "has_view_permission": True, **context,
        })
