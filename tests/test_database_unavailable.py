"""A database error on the way (what a restart or failover looks like to a request) is a 503 with
``Retry-After`` in the app's one error shape, for pages and the API alike, never a 500 or a
traceback. The error is real: the table a request needs is dropped inside the test's transaction
(rolled back afterwards), so the driver raises ``OperationalError`` through the whole stack.
The cluster test (tests/cluster) stops a real PostgreSQL under running servers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.handlers.exception import convert_exception_to_response
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token

from gonext_plugins.db_outage import RETRY_AFTER_SECONDS
from gonext_plugins.middleware import DatabaseUnavailableMiddleware
from project.blog.models import Post

pytestmark = pytest.mark.django_db


def _drop(model: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(model._meta.db_table)}")


def _assert_503(response: Any) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"] == "database_unavailable" and body["problems"] == []
    assert "Traceback" not in response.content.decode()


def test_a_page_whose_query_fails_answers_503() -> None:
    Post.objects.create(title="Hello", slug="hello", body="Hi.")
    client = Client(raise_request_exception=False)
    assert client.get("/posts/hello/").status_code == 200
    _drop(Post)
    _assert_503(client.get("/posts/hello/"))


def test_the_api_answers_503_when_authentication_cannot_read_its_table() -> None:
    user = User.objects.create_superuser("admin", "a@example.com", "pw")
    token = Token.objects.create(user=user).key
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/plugins/").status_code == 200
    _drop(Token)
    _assert_503(client.get("/api/plugins/"))


def test_a_missing_page_stays_a_404() -> None:
    """Only the database's unavailability is a 503."""
    client = Client(raise_request_exception=False)
    assert client.get("/posts/no-such-post/").status_code == 404


def test_an_error_in_another_middleware_becomes_503_too() -> None:
    """An outage met outside the view (a session saved on the way out) has become Django's 500
    before it reaches this middleware: the 500 is replaced by the 503 all the same."""

    def inner_middleware(request: HttpRequest) -> HttpResponse:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")  # sqlite3: OperationalError
        return HttpResponse("unreachable")

    wrapped = DatabaseUnavailableMiddleware(convert_exception_to_response(inner_middleware))
    _assert_503(wrapped(RequestFactory().get("/")))


def test_any_other_error_in_another_middleware_stays_a_500() -> None:
    def inner_middleware(request: HttpRequest) -> HttpResponse:
        raise ValueError("not an outage")

    wrapped = DatabaseUnavailableMiddleware(convert_exception_to_response(inner_middleware))
    assert wrapped(RequestFactory().get("/")).status_code == 500
