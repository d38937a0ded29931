"""WebSocket routing of the plugin app, by the same ``include`` as its HTTP routes.

The WebSocket routes are named patterns of ``gonext_plugins.urls`` (``log_stream``), so a
WebSocket connection is resolved against the site's ROOT_URLCONF exactly like a request: wherever
the site included ``gonext_plugins.urls``, under whatever prefix, the log stream is found at the
path ``reverse("gonext_plugins:log_stream", ...)`` gives, and the log page renders that path.
There is no second list of paths to keep in step with the URLconf.

A database outage met before the consumer answered the handshake (Channels' auth middleware reads
the session first) is refused cleanly: accepted and closed at once with 1013 "try again later", the
code the consumer itself uses for an outage, which the log page answers by reconnecting. Left alone
it would escape to the server, which answers the handshake with an HTTP 500 and logs a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import Resolver404, resolve

from .consumers import CLOSE_TRY_AGAIN, PluginLogConsumer
from .db_outage import DATABASE_DOWN

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

logger = logging.getLogger("gonext_plugins.routing")

#: URL name (in ``gonext_plugins.urls``) -> the consumer that serves its WebSocket.
WEBSOCKET_VIEWS: dict[str, ASGIApp] = {
    "log_stream": PluginLogConsumer.as_asgi(),
}


def _path_info(scope: Scope) -> str:
    """The path the URLconf sees: without the server's ``root_path`` (Django's SCRIPT_NAME)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    return path[len(root):] if root and path.startswith(root) else path


async def _try_again_on_outage(app: ASGIApp, scope: Scope, receive: Any, send: Any) -> None:
    """Run ``app``; if the database is down before it accepted or closed the connection, finish the
    handshake and close with 1013 (what was already received or sent is tracked, so no message is
    repeated). An outage after the app answered is the app's to handle (the consumer closes with
    1013 itself); one that escapes it anyway still ends in a 1013, not a server error."""
    seen = {"connect": False, "accept": False, "close": False}

    async def tracked_receive() -> Any:
        message = await receive()
        if message.get("type") == "websocket.connect":
            seen["connect"] = True
        return message

    async def tracked_send(message: Any) -> None:
        await send(message)
        kind = str(message.get("type", "")).removeprefix("websocket.")
        if kind in seen:
            seen[kind] = True

    try:
        await app(scope, tracked_receive, tracked_send)
    except DATABASE_DOWN as exc:
        logger.warning("log stream refused with 1013: the database is unreachable (%s: %s)",
                       type(exc).__name__, exc)
        if seen["close"]:
            return
        if not seen["connect"]:
            await receive()
        if not seen["accept"]:
            await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})


async def _dispatch(scope: Scope, receive: Any, send: Any) -> None:
    """After the origin check and authentication: the consumer of the route resolved earlier."""
    await WEBSOCKET_VIEWS[scope["url_route"]["name"]](scope, receive, send)


class PluginWebSocketRouter:
    """ASGI app for ``websocket`` scopes: this app's routes behind the allowed-hosts origin check and
    the session/auth middleware, anything else to ``fallback`` (the site's own WebSocket app) or,
    without one, refused at the handshake (a 403)."""

    def __init__(self, fallback: ASGIApp | None = None) -> None:
        self.fallback = fallback
        self.guarded = AllowedHostsOriginValidator(AuthMiddlewareStack(_dispatch))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            match = resolve(_path_info(scope))
        except Resolver404:
            match = None
        ours = match is not None and match.namespaces[:1] == ["gonext_plugins"]
        if match is not None and ours and match.url_name in WEBSOCKET_VIEWS:
            route = {"args": match.args, "kwargs": match.kwargs, "name": match.url_name}
            await _try_again_on_outage(self.guarded, {**scope, "url_route": route}, receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        else:
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 1000})
