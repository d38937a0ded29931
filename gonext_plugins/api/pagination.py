"""The API's pagination."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class PluginPagination(PageNumberPagination):
    """DRF's page numbers, but strict: a malformed ``page`` or ``page_size`` is a 400 that says so
    (DRF would quietly fall back to a default, and a script would never learn of its typo)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        problems = {}
        for name, upper in ((self.page_query_param, None), (self.page_size_query_param, self.max_page_size)):
            values = request.query_params.getlist(name)
            if not values:
                continue
            value = values[-1]
            if len(values) > 1 or not value.isdigit() or int(value) < 1 or (upper and int(value) > upper):
                limit = f"from 1 to {upper}" if upper else "of at least 1"
                problems[name] = [f"must be one whole number {limit}"]
        if problems:
            raise ValidationError(problems)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters
