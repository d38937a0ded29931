"""ASGI entry point of the demo: the README's asgi.py, plus the static-files handler while DEBUG is
on. Serve it with uvicorn (``make serve``), which streams bodies to the app so the request-body cap
holds before anything is buffered (README "Serving")."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

from gonext_plugins.asgi import with_plugins

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

django_asgi_app = get_asgi_application()
if settings.DEBUG:
    # The demo serves its own static files (admin CSS, the log page's JS) without a front server.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

application = with_plugins(django_asgi_app)
