"""The serializers of the log backlog endpoint: its query, and the lines it answers with."""

from __future__ import annotations

import contextlib
from datetime import datetime

from django.utils.dateparse import parse_datetime
from rest_framework import serializers as drf_serializers

from ..runtime import levels
from . import serializers as s

LOG_LEVELS = levels.BY_NAME


class LogQuerySerializer(s.QuerySerializer):
    since = drf_serializers.CharField(
        required=False, max_length=64,
        help_text="a line id (lines after it: pass the previous answer's `next_since` to tail) or an "
                  "ISO 8601 time (lines at or after it)",
    )
    level = drf_serializers.ChoiceField(
        required=False, choices=[*LOG_LEVELS, "0", "1", "2", "3"],
        help_text="minimum level: debug, info, warning, error (or 0-3)",
    )
    limit = drf_serializers.IntegerField(required=False, min_value=1, max_value=1000, default=200)

    def validate_since(self, value: str) -> int | datetime:
        if value.isdigit():
            if int(value) >= 2**63:  # beyond any database's ids (and SQLite's integers)
                raise drf_serializers.ValidationError("is not a line id: too large")
            return int(value)
        when = None
        with contextlib.suppress(ValueError):
            when = parse_datetime(value)
        if when is None:
            raise drf_serializers.ValidationError("must be a line id or an ISO 8601 time")
        return when

    def validate_level(self, value: str) -> int:
        return LOG_LEVELS[value] if value in LOG_LEVELS else int(value)


class LogLineSerializer(drf_serializers.Serializer):
    id = drf_serializers.IntegerField()
    time = drf_serializers.DateTimeField()
    plugin = drf_serializers.CharField()
    version = drf_serializers.CharField()
    level = drf_serializers.IntegerField(help_text="0 debug, 1 info, 2 warning, 3 error")
    message = drf_serializers.CharField()
    # A field named like DRF's own ``Field.source`` attribute: the line's JSON shape needs the name.
    source = drf_serializers.CharField(help_text="guest or host")  # type: ignore[assignment]
    dropped = drf_serializers.IntegerField(help_text="lines this report line says were dropped")


class LogPageSerializer(drf_serializers.Serializer):
    lines = LogLineSerializer(many=True)
    next_since = drf_serializers.IntegerField(help_text="pass as `since` to get only newer lines")
