"""Fan-out of stored log lines to the Channels group ``gonext-logs.<slug>``, the group
:class:`~gonext_plugins.consumers.PluginLogConsumer` listens on, in messages of at most
:data:`SEND_MAX` lines. The writer calls :meth:`ChannelFanOut.send` after each stored batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger("gonext_plugins.plugin")

SEND_MAX = 200
"""Lines per channel-layer message (keeps each message small for channels-redis)."""

GROUP_PREFIX = "gonext-logs."


def group_name(slug: str) -> str:
    """The Channels group of one plugin's log (slugs are already group-name safe)."""
    return GROUP_PREFIX + slug


class ChannelFanOut:
    """Sends records to the channel layer from the writer's (sync) thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # the writer thread's own, for channels-redis
        self.consumer_loop: asyncio.AbstractEventLoop | None = None  # set by consumers (in-memory layer)
        self.sent = 0  # channel-layer messages sent

    def send(self, by_plugin: dict[str, list[dict[str, Any]]], *, own_loop: bool) -> None:
        """Send each plugin's records to its group; ``own_loop`` when called on the writer thread."""
        layer = get_channel_layer()
        if layer is None or not by_plugin:
            return

        async def send_all() -> None:
            for plugin, records in by_plugin.items():
                for start in range(0, len(records), SEND_MAX):
                    await layer.group_send(group_name(plugin),
                                           {"type": "log.lines", "lines": records[start:start + SEND_MAX]})
                    self.sent += 1

        for attempt in (1, 2):  # after a Redis restart the first send on a pooled connection fails
            try:
                self._run_async(send_all, own_loop=own_loop)
                return
            except Exception:
                if attempt == 2:
                    logger.exception("could not send plugin log lines to the channel layer")

    def _run_async(self, make_coro: Callable[[], Coroutine[Any, Any, None]], *, own_loop: bool) -> None:
        """Run a channel-layer coroutine from a sync thread. The in-memory layer's queues belong
        to the consumers' event loop, so when one is running the coroutine goes there; otherwise
        (channels-redis in a worker process) the writer thread keeps one loop of its own, so the
        redis connection pool is reused across batches instead of rebuilt per ``async_to_sync``
        call."""
        loop = self.consumer_loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            asyncio.run_coroutine_threadsafe(make_coro(), loop).result(timeout=10)
            return
        if own_loop:
            if self.loop is None or self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(make_coro())
            return
        async_to_sync(make_coro)()

    def close(self) -> None:
        """Close the writer thread's loop (when the thread ends)."""
        if self.loop is not None:
            self.loop.close()
            self.loop = None


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
