"""WebSocket consumers of the plugin app: the live log stream behind the log page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.apps import apps

from . import logs
from . import permissions as policy
from .conf import settings
from .db_outage import DATABASE_DOWN
from .models import Plugin
from .runtime import levels

BACKLOG_LINES = 200
"""Lines replayed on connect and after a filter change (the page asks for more than that rarely;
the database keeps ``LOG_BACKLOG``)."""

MAX_FILTER_CHARS = 200

POLL_SECONDS = 1.0
"""With the in-memory channel layer, how often the consumer also reads lines other processes (the
job worker, other web processes) wrote to the backlog: that layer cannot carry them itself."""

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TRY_AGAIN = 1013
"""RFC 6455's "Try Again Later": the database or the channel layer (Redis) is unreachable for now."""

logger = logging.getLogger("gonext_plugins.logs")


def _allowed(user: Any) -> bool:
    """The log page's rule: staff (the page lives in the admin's shell) who may view logs."""
    return policy.can_use_admin_pages(user) and policy.can_view_logs(user)


class PluginLogConsumer(AsyncJsonWebsocketConsumer):
    """``/_/plugins/dev/logs/<slug>/``: the recent backlog, then live lines of one plugin.

    Staff with ``gonext_plugins.view_plugin_logs`` only, signed in by session or by API token
    (:func:`_token_user`). Refusals accept and then close with an
    application code (4403, 4404), so a browser sees why and stops reconnecting; closing before
    accept would only show it a failed handshake. The client may send
    ``{"min_level": 0-3, "filter": "text"}``; the backlog is replayed under the new filter.

    Messages sent: ``{"type": "backlog", "plugin", "lines": [...]}`` (oldest first) then
    ``{"type": "lines", "lines": [...]}`` for each live batch. Lines carry ``id`` so a line both in
    the backlog and in a live batch that raced the backlog query is sent once.
    """

    slug: str = ""
    min_level: int = 0
    text: str = ""
    last_id: int = 0

    async def connect(self) -> None:
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        await self.accept()
        try:
            await self._start()
        except DATABASE_DOWN:
            await self.close(code=CLOSE_TRY_AGAIN)  # a restart or failover: the page reconnects

    async def _start(self) -> None:
        user = self.scope.get("user")
        if not await database_sync_to_async(_allowed)(user):
            user = await database_sync_to_async(_token_user)(self.scope)
        if not await database_sync_to_async(_allowed)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not await database_sync_to_async(_plugin_exists)(self.slug):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # The in-memory layer's queues live on this loop: the log writer sends through it.
        logs.writer.consumer_loop = asyncio.get_running_loop()
        self._set_filters(_query_params(self.scope))
        # Join before reading the backlog: a batch written in between arrives live too (and is
        # deduplicated by id), so nothing falls in the gap.
        if not await self._join():
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.joined = True
        await self._send_backlog()
        if _layer_is_process_local(self.channel_layer):
            self.poller = asyncio.ensure_future(self._poll_backlog())

    async def _join(self) -> bool:
        """Join the plugin's group, trying twice: after a Redis restart the first command on each
        pooled connection fails (and drops it); the second gets a new one."""
        for attempt in (1, 2):
            try:
                await self.channel_layer.group_add(logs.group_name(self.slug), self.channel_name)
                return True
            except Exception:  # each layer raises its own (redis-py's ConnectionError, ...)
                if attempt == 2:
                    logger.warning("the live log of %s cannot join its channel group", self.slug,
                                   exc_info=True)
        return False

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(logs.group_name(self.slug), self.channel_name)

    async def _poll_backlog(self) -> None:
        """Send lines stored by other processes since the last one sent (in-memory layer only)."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            lines = await database_sync_to_async(_lines_after)(self.slug, self.last_id)
            if lines:
                await self.log_lines({"lines": lines})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not getattr(self, "joined", False) or not isinstance(content, dict):
            return
        if "min_level" in content or "filter" in content:
            self._set_filters(content)
            await self._send_backlog()

    def _set_filters(self, content: dict[str, Any]) -> None:
        level = content.get("min_level", self.min_level)
        with contextlib.suppress(TypeError, ValueError):  # junk keeps the current level
            self.min_level = levels.clamp(level)
        text = content.get("filter", self.text)
        if isinstance(text, str):
            self.text = text[:MAX_FILTER_CHARS].casefold()

    def _matches(self, line: dict[str, Any]) -> bool:
        return line["level"] >= self.min_level and (not self.text or self.text in line["message"].casefold())

    async def _send_backlog(self) -> None:
        lines, last_id = await database_sync_to_async(_backlog)(self.slug, self.min_level, self.text)
        self.last_id = max(self.last_id, last_id)
        await self.send_json({"type": "backlog", "plugin": self.slug, "min_level": self.min_level,
                              "filter": self.text, "lines": lines})

    async def log_lines(self, event: dict[str, Any]) -> None:
        """A batch from the log writer (group message ``log.lines``)."""
        fresh = [line for line in event["lines"] if line["id"] > self.last_id]
        if not fresh:
            return
        self.last_id = fresh[-1]["id"]
        shown = [line for line in fresh if self._matches(line)]
        if shown:
            await self.send_json({"type": "lines", "lines": shown})


def _token_user(scope: dict[str, Any]) -> Any:
    """The user of an API token (``rest_framework.authtoken``) sent as ``Authorization: Token <key>``,
    or, in dev mode only, as ``?token=<key>``: ``manage.py plugin dev --logs`` tails logs without a
    browser session. The query form is for dev sites alone because URLs end up in access logs."""
    if not apps.is_installed("rest_framework.authtoken"):
        return None
    key = ""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token":
                key = rest.strip()
    if not key and settings.DEV_MODE:
        key = _query_params(scope).get("token", "")
    if not key:
        return None
    # Deferred: rest_framework.authtoken is optional (checked just above); its models only load when
    # that app is installed.
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None else None


def _layer_is_process_local(layer: Any) -> bool:
    return isinstance(layer, InMemoryChannelLayer)


def _lines_after(slug: str, last_id: int) -> list[dict[str, Any]]:
    return [row.as_record() for row in logs.backlog(slug, after_id=last_id, limit=BACKLOG_LINES)]


def _plugin_exists(slug: str) -> bool:
    return Plugin.objects.filter(slug=slug).exists()


def _backlog(slug: str, min_level: int, text: str) -> tuple[list[dict[str, Any]], int]:
    """(the newest matching lines oldest first, the newest id of any line) of one plugin."""
    last_id = logs.last_line_id(slug)
    matched = logs.backlog(slug, min_level=min_level, text=text, limit=BACKLOG_LINES)
    return [row.as_record() for row in matched], last_id


def _query_params(scope: dict[str, Any]) -> dict[str, Any]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw))
