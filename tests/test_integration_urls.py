"""One include under any prefix, the site untouched: the app's routes (API, docs, metrics, the log
WebSocket) follow the prefix, claim nothing outside it, and the API answers the same whatever the
site's own REST_FRAMEWORK says (issue 15, items 1 and 2)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.asgi import get_asgi_application
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import include, path, reverse
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from gonext_plugins.asgi import with_plugins

from .api.helpers import assert_error, signed_bundle

pytestmark = pytest.mark.django_db

HIGH_RATES = {"gonext_plugins.read": "100000/min", "gonext_plugins.write": "100000/min"}


def site_view(request: HttpRequest) -> JsonResponse:
    """A route of the site's own, under a path that looks like the app's API."""
    return JsonResponse({"mine": True})


class SiteAPIView(APIView):
    """A DRF endpoint of the site's own: it must keep the site's REST_FRAMEWORK behaviour."""

    def get(self, request: Any) -> Response:
        raise NotFound("site says no")


def site_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The site's own error format, which must never reach the plugin API."""
    return Response({"site_error": str(exc)}, status=418)


class URLConf:
    """A URLconf object (Django takes any hashable object with ``urlpatterns``)."""

    def __init__(self, urlpatterns: list[Any]) -> None:
        self.urlpatterns = urlpatterns


def urlconf(prefix: str) -> URLConf:
    """A site URLconf with the app included once under ``prefix`` and routes of its own after it."""
    return URLConf([
        path(prefix, include("gonext_plugins.urls")),
        path("api/mine/", site_view),
        path("api/site-drf/", SiteAPIView.as_view()),
        path("plugins/api/elsewhere/", site_view),
    ])


HOSTILE_REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "tests.test_integration_urls.site_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.AcceptHeaderVersioning",
    "DEFAULT_THROTTLE_RATES": HIGH_RATES,
}


@pytest.fixture(autouse=True)
def _generous_throttles(settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": HIGH_RATES}
    cache.clear()


@pytest.fixture
def token_client() -> Client:
    user = User.objects.create_user("root", is_staff=True, is_superuser=True)
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


@pytest.mark.parametrize("prefix", ["plugins/", "deep/er/"])
def test_everything_follows_the_prefix(settings: Any, token_client: Client, prefix: str) -> None:
    settings.ROOT_URLCONF = urlconf(prefix)
    base = "/" + prefix
    assert reverse("gonext_plugins:api:schema") == f"{base}api/schema/"
    assert reverse("gonext_plugins:metrics") == f"{base}metrics"
    assert reverse("gonext_plugins:log_stream", kwargs={"slug": "x"}) == f"{base}_/plugins/dev/logs/x/"
    assert token_client.get(f"{base}api/plugins/").status_code == 200
    assert token_client.get(f"{base}api/schema/").status_code == 200
    assert token_client.get(f"{base}api/docs/").status_code == 200
    assert token_client.get(f"{base}api/redoc/").status_code == 200
    assert_error(token_client.get(f"{base}api/plugins/nope/"), 404, "not_found")
    assert_error(token_client.get(f"{base}api/keys/nope/"), 404, "not_found")
    assert Client().get(f"{base}metrics").status_code == 403  # the view is there, and guarded
    # nothing at the old, unprefixed paths, and the site's own routes stay the site's
    assert Client().get("/api/schema/").status_code == 404
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/api/mine/").json() == {"mine": True}


def test_catch_all_covers_only_the_apis_own_resources(settings: Any, token_client: Client) -> None:
    """Included at "": the site's ``api/mine/`` (a route after the include) is not swallowed."""
    settings.ROOT_URLCONF = urlconf("")
    assert Client().get("/api/mine/").json() == {"mine": True}
    assert_error(token_client.get("/api/plugins/nope/"), 404, "not_found")
    assert_error(token_client.get("/api/plugins/demo/no-such-action/"), 404, "not_found")
    response = Client().get("/api/not-ours/")
    assert response.status_code == 404 and "error" not in response.content.decode()  # the site's 404
    settings.ROOT_URLCONF = urlconf("plugins/")
    assert Client().get("/plugins/api/elsewhere/").json() == {"mine": True}


def test_api_docs_can_be_turned_off(settings: Any, token_client: Client) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, "API_DOCS": False}
    for page in ("schema", "docs", "redoc"):
        assert_error(token_client.get(f"/api/{page}/"), 404, "not_found")
    assert token_client.get("/api/plugins/").status_code == 200


def test_api_ignores_a_hostile_rest_framework_setting(settings: Any, publisher: Any) -> None:
    settings.ROOT_URLCONF = urlconf("plugins/")
    settings.REST_FRAMEWORK = HOSTILE_REST_FRAMEWORK
    anonymous = Client()
    # authentication still required, in our shape, whatever the site's defaults
    data = assert_error(anonymous.get("/plugins/api/plugins/"), 401, "not_authenticated")
    assert data and anonymous.get("/plugins/api/plugins/")["WWW-Authenticate"].startswith("Token")
    user = User.objects.create_user("root", is_staff=True, is_superuser=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    listing = client.get("/plugins/api/plugins/")
    assert listing.status_code == 200 and listing["Content-Type"] == "application/json"
    assert set(listing.json()) >= {"count", "results"}  # our page numbers, not LimitOffset
    assert_error(client.get("/plugins/api/plugins/nope/"), 404, "not_found")
    raw = signed_bundle(publisher.private_key, capabilities=["kv"])
    refused = client.post("/plugins/api/plugins/", {
        "bundle": SimpleUploadedFile("demo.gnplugin", raw, content_type="application/octet-stream")})
    assert_error(refused, 409, "consent_required")
    schema = client.get("/plugins/api/schema/?format=json")
    assert schema.status_code == 200, schema.content[:300]
    assert "/plugins/api/plugins/{slug}/activate/" in schema.json()["paths"]
    assert client.get("/plugins/api/docs/").status_code == 200
    assert client.get("/plugins/api/redoc/").status_code == 200
    # ... while the site's own DRF endpoint keeps the site's error format
    site = anonymous.get("/api/site-drf/")
    assert site.status_code == 418 and site.data == {"site_error": "site says no"}


def _connect(application: Any, path: str) -> tuple[bool, int | None]:
    """Connect as an anonymous browser: (accepted, the close code that followed)."""

    async def scenario() -> tuple[bool, int | None]:
        comm = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver"),
                                                                 (b"host", b"testserver")])
        connected, code = await comm.connect()
        if connected:
            message = await comm.receive_output(timeout=5)
            code = message.get("code")
        await comm.disconnect()
        return connected, code

    return async_to_sync(scenario)()


def test_log_websocket_is_routed_by_the_include(settings: Any) -> None:
    settings.ROOT_URLCONF = urlconf("plugins/")
    application = with_plugins(get_asgi_application())
    reversed_path = reverse("gonext_plugins:log_stream", kwargs={"slug": "demo"})
    assert reversed_path == "/plugins/_/plugins/dev/logs/demo/"
    # our consumer answers there (accepts, then refuses the anonymous user with its own code) ...
    assert _connect(application, reversed_path) == (True, 4403)
    # ... and nothing answers at the unprefixed path or at a site path
    assert _connect(application, "/_/plugins/dev/logs/demo/")[0] is False
    assert _connect(application, "/api/mine/")[0] is False


def test_site_websocket_app_gets_the_other_paths(settings: Any) -> None:
    seen: list[str] = []

    async def site_ws(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    application = with_plugins(get_asgi_application(), websocket_app=site_ws)
    assert _connect(application, "/chat/") == (True, 4000)
    assert seen == ["/chat/"]
    assert _connect(application, "/_/plugins/dev/logs/demo/") == (True, 4403)
    assert seen == ["/chat/"]


def test_log_stream_over_plain_http_says_websocket_only(client: Client) -> None:
    data = assert_error(client.get("/_/plugins/dev/logs/demo/"), 426, "upgrade_required")
    assert data["detail"]
