"""The demo blog's side of the plugin system: its capabilities, host functions and hooks.

This is what a site developer writes: declare what plugins may ask for, give each capability its
host functions, and fire hooks at the right moments.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db.models.signals import post_save
from django.dispatch import receiver

from gonext_plugins import capabilities, hooks

from .models import Post, PostMeta

MAX_META_BYTES = 16 * 1024
MAX_PAGE = 100

capabilities.register("posts.read", "Read the title, text and address of published posts.", "low")
capabilities.register("posts.write", "Store its own data (such as an SEO score) on posts.", "medium")


# The hooks the blog fires, for the admin, the API, ``plugin hooks`` and ``plugin dev``.
hooks.declare("the_content", "filter", description="A post's body as HTML, on its page.", args=[
    ("html", "the post's body rendered to HTML (the value to return, changed or not)"),
    ("post", "the post: {id, title, slug, body, url, published}"),
])
hooks.declare("wp_head", "action", description="Markup for the page's <head>; the HTML fragments "
              "plugins return are sanitized and rendered there.", args=[
    ("post", "the post on a post's page; absent on other pages"),
])
hooks.declare("save_post", "action", description="After a post is saved (created or edited).", args=[
    ("post", "the saved post: {id, title, slug, body, url, published}"),
])


def _post_id(payload: Any) -> int:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        raise ValueError('expected {"id": <post id>}')
    return payload["id"]


@capabilities.host_function("posts.get", capability="posts.read")
def posts_get(plugin: Any, payload: Any) -> dict[str, Any] | None:
    """``{"id"}`` → the published post, or null."""
    post = Post.objects.filter(pk=_post_id(payload), published=True).first()
    return post.to_plugin_json() if post else None


@capabilities.host_function("posts.list", capability="posts.read")
def posts_list(plugin: Any, payload: Any) -> list[dict[str, Any]]:
    """``{"limit"?, "offset"?}`` → published posts, oldest first, at most 100 per call."""
    payload = payload if isinstance(payload, dict) else {}
    limit = min(max(int(payload.get("limit", 20)), 0), MAX_PAGE)
    offset = max(int(payload.get("offset", 0)), 0)
    posts = Post.objects.filter(published=True).order_by("id")[offset:offset + limit]
    return [post.to_plugin_json() for post in posts]


@capabilities.host_function("posts.meta_set", capability="posts.write")
def posts_meta_set(plugin: Any, payload: Any) -> dict[str, bool]:
    """``{"id", "key", "value"}`` → ``{"ok": true}``; keys are namespaced by nothing but the
    plugin's good manners, as in WordPress, and values are capped at 16 KiB."""
    post_id = _post_id(payload)
    key = payload.get("key")
    if not isinstance(key, str) or not 0 < len(key) <= 100:
        raise ValueError("key must be a string of 1 to 100 characters")
    if len(orjson.dumps(payload.get("value"))) > MAX_META_BYTES:
        raise ValueError(f"value is over {MAX_META_BYTES} bytes")
    if not Post.objects.filter(pk=post_id).exists():
        raise ValueError(f"no post {post_id}")
    PostMeta.objects.update_or_create(post_id=post_id, key=key, defaults={"value": payload.get("value")})
    return {"ok": True}


@receiver(post_save, sender=Post, dispatch_uid="blog_save_post_hook")
def fire_save_post(sender: type[Post], instance: Post, **kwargs: Any) -> None:
    """WordPress's ``save_post``: plugins see every saved post."""
    hooks.do_action("save_post", instance)


def preview_suggestions() -> list[tuple[str, str]]:
    """Pages the admin's "Preview on a page" suggests (``GONEXT_PLUGINS["PREVIEW_SUGGESTIONS"]``): the
    home page and the latest published post, where most plugins show what they do."""
    suggestions = [("/", "Home page")]
    latest = Post.objects.filter(published=True).first()  # Meta.ordering: newest first
    if latest is not None:
        suggestions.append((latest.get_absolute_url(), f"Latest post: {latest.title}"))
    return suggestions
