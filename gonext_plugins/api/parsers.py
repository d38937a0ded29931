"""The API's JSON parser: DRF's, plus the checks every piece of untrusted JSON passes.

DRF's parser turns only ``ValueError`` into a 400, so a body nested past the interpreter's
recursion limit was a 500, and a ``"\\ud800"`` escape reached the database (or the renderer, when
echoed in an error) as a lone surrogate that cannot be encoded: a 500 again. Both are a
``parse_error`` 400 here, like any other body that is not acceptable JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .. import untrusted_json
from ..manifest import format_path


class UntrustedJSONParser(JSONParser):
    """JSON bodies with bounded nesting and real text only."""

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {untrusted_json.MAX_DEPTH} levels "
                             "deep") from None
        found = untrusted_json.problems(data)
        if found:
            path, message = min(found, key=lambda problem: len(problem[0]))
            raise ParseError(f"JSON parse error - {format_path(path)} {message}")
        return data
