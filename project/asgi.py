"""ASGI entry point: HTTP through Django behind the request-body cap, WebSockets through the plugin
app's routes. Serve it with uvicorn (``make serve``), which streams bodies to the app so the cap holds
before anything is buffered (README "Serving")."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()
if settings.DEBUG:
    # The demo serves its own static files (admin CSS, the log page's JS) without a front server.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from gonext_plugins.asgi import RequestBodyLimit  # noqa: E402
from gonext_plugins.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
