"""WebSocket routing of the plugin app, by the same ``include`` as its HTTP routes.

The WebSocket routes are named patterns of ``gonext_plugins.urls`` (``log_stream``), so a
WebSocket connection is resolved against the site's ROOT_URLCONF exactly like a request: wherever
the site included ``gonext_plugins.urls``, under whatever prefix, the log stream is found at the
path ``reverse("gonext_plugins:log_stream", ...)`` gives, and the log page renders that path.
There is no second list of paths to keep in step with the URLconf.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import Resolver404, resolve

from .consumers import PluginLogConsumer

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

#: URL name (in ``gonext_plugins.urls``) -> the consumer that serves its WebSocket.
WEBSOCKET_VIEWS: dict[str, ASGIApp] = {
    "log_stream": PluginLogConsumer.as_asgi(),
}


def _path_info(scope: Scope) -> str:
    """The path the URLconf sees: without the server's ``root_path`` (Django's SCRIPT_NAME)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", "") or "")
    return path[len(root):] if root and path.startswith(root) else path


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
            await self.guarded({**scope, "url_route": route}, receive, send)
        elif self.fallback is not None:
            await self.fallback(scope, receive, send)
        else:
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 1000})
