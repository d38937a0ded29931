"""The demo site itself: ``make demo``'s seed data and the blog's pages (moved from test_foundation)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from project.blog.models import Post


@pytest.mark.django_db
def test_seed_demo_creates_admin_and_posts(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DEMO_ADMIN_USER", "boss")
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "s3cret-pass")
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    assert Post.objects.count() == 3
    assert client.login(username="boss", password="s3cret-pass")
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_blog_list_and_detail_pages(client) -> None:  # type: ignore[no-untyped-def]
    Post.objects.create(title="Visible", slug="visible", body="Hello <b>world</b>")
    Post.objects.create(title="Draft", slug="draft", body="secret", published=False)
    page = client.get("/")
    assert page.status_code == 200
    assert b"Visible" in page.content and b"Draft" not in page.content
    detail = client.get("/posts/visible/")
    assert detail.status_code == 200
    assert b"Hello &lt;b&gt;world&lt;/b&gt;" in detail.content
    assert client.get("/posts/draft/").status_code == 404
