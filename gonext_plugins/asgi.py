"""ASGI pieces a site wraps its application in: :func:`with_plugins` is the whole of it
(README, "Using it in your site")::

    application = with_plugins(get_asgi_application())

:class:`RequestBodyLimit` bounds request bodies where they arrive, before anything buffers them.
Django's ASGI handler reads the whole body into memory (or a temp file) before any middleware runs,
so a Django middleware sees a 200 MiB upload only after the server has held it. Here a declared
``Content-Length`` over ``MAX_REQUEST_BYTES`` is refused before a byte of the body is read, and a
streamed (chunked) body is counted as it arrives and cut at the cap. The refusal is a 413 in the
API's one error shape. The server must stream bodies to the app for this to bound memory: uvicorn
does (it pauses reading until the app asks for more); daphne does not (Twisted buffers the whole
body before the app is called), which is why the demo and the tests serve with uvicorn.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from .conf import settings
from .errors import RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# True while the site's asgi.py is imported only to be looked at (the deploy check W009 imports
# ASGI_APPLICATION): with_plugins() then builds the application without warming the process up.
inspecting: ContextVar[bool] = ContextVar("gonext_asgi_inspecting", default=False)


def parse_content_length(value: str | bytes | None) -> int | None:
    """The declared body length, or ``None`` when there is none or it is not a plain number (the
    body is then counted as it arrives instead, so a bad header cannot get around the cap)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    return int(text) if text.isdigit() else None


def check_declared_length(declared: int | None) -> None:
    """Raise :class:`RequestTooLarge` when a declared body length is over ``MAX_REQUEST_BYTES``: the
    one rule, shared by the ASGI guard and the Django middleware."""
    limit = int(settings.MAX_REQUEST_BYTES)
    if declared is not None and declared > limit:
        raise RequestTooLarge(limit=limit, declared=declared)


def _refusal_messages(error: RequestTooLarge) -> tuple[Message, Message]:
    """The 413 as ASGI messages. ``Connection: close`` makes the server stop reading the rest of a
    body nobody will use."""
    body = json.dumps(error.as_dict()).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class RequestBodyLimit:
    """ASGI middleware: HTTP request bodies over ``MAX_REQUEST_BYTES`` get a 413 before they are
    buffered. Other scopes (WebSocket, lifespan) pass through untouched.

    A declared length over the cap is answered at once and the app is never called. A streamed body
    is counted chunk by chunk; the chunk that passes the cap is not handed on: the client gets the
    413, the app is told the client disconnected (Django then drops the request), and anything the
    app sends afterwards is swallowed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = parse_content_length(_header(scope, b"content-length"))
        try:
            check_declared_length(declared)
        except RequestTooLarge as error:
            for message in _refusal_messages(error):
                await send(message)
            return
        exchange = _BoundedExchange(receive, send, int(settings.MAX_REQUEST_BYTES))
        await self.app(scope, exchange.receive, exchange.send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


class _BoundedExchange:
    """One request's ``receive``/``send`` pair with the body counted against ``limit``."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.refused = False
        self.response_started = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit:
            return message
        self.refused = True
        if not self.response_started:  # an app that answered before reading keeps its answer
            for refusal in _refusal_messages(RequestTooLarge(limit=self.limit)):
                await self._send(refusal)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


class PluginsApplication:
    """What :func:`with_plugins` returns: HTTP (and lifespan) through :class:`RequestBodyLimit` to the
    site's app, WebSockets through :class:`~gonext_plugins.routing.PluginWebSocketRouter`. The
    deploy check ``gonext_plugins.W009`` looks for it (or a bare :class:`RequestBodyLimit`)."""

    def __init__(self, http_app: ASGIApp, websocket_app: ASGIApp | None = None) -> None:
        # Imported here, not at the top: the router's consumer and Channels' auth middleware import
        # models, which Django allows only once the app registry is ready, while this module is
        # imported by the site's asgi.py before get_asgi_application() sets Django up (and by the
        # request-size middleware).
        from .routing import PluginWebSocketRouter

        self.http = RequestBodyLimit(http_app)
        self.websocket: ASGIApp = PluginWebSocketRouter(fallback=websocket_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.http(scope, receive, send)


def with_plugins(http_app: ASGIApp, websocket_app: ASGIApp | None = None) -> PluginsApplication:
    """The site's ASGI application with this app's pieces: the request-body cap on HTTP, and the
    live log WebSocket wherever the site included ``gonext_plugins.urls`` (resolved through the
    URLconf, behind ``AllowedHostsOriginValidator`` and ``AuthMiddlewareStack``). A site with
    WebSocket routes of its own passes them as ``websocket_app``: paths that are not this app's go
    there. With ``GONEXT_PLUGINS["WARM_UP"]`` on, it also warms the process up (the active plugins
    loaded, the template engine built: :mod:`gonext_plugins.warmup`) before the server, which
    imports the application first, accepts a connection."""
    # Imported here for the reason PluginsApplication imports the router late: the warm-up needs the
    # models, and this module is imported before get_asgi_application() sets Django up.
    from .warmup import warm_up_on_start

    application = PluginsApplication(http_app, websocket_app)
    if not inspecting.get():
        warm_up_on_start()
    return application
