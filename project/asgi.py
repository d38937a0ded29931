"""ASGI entry point of the demo: the README's asgi.py, plus the garbage collector paused while it
starts (below). Serve it with uvicorn (``make serve``), which streams bodies to the app so the
request-body cap holds before anything is buffered (README "Serving").

The server imports this module before it accepts a connection, so everything a process does once
happens here: ``django.setup()``, then ``with_plugins()``'s warm-up (``GONEXT_PLUGINS["WARM_UP"]``:
the active plugins loaded, the template engine built). Start-up creates some 300k objects that live
as long as the process; the cyclic garbage collector, scanning them while they are made, ran two
full passes for nothing (~150 ms of CPU of a start on the 2-core machine). It is off until the
application is ready; what exists then is frozen (never scanned again, so no visitor's request pays
for a pass over it) and collection resumes (docs/deploy.md "Start-up").
"""

import gc

gc.disable()

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

gc.freeze()
gc.enable()
