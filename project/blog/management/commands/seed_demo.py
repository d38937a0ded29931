"""Create the demo admin user and a few posts; safe to run again."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from project.blog.models import Post

POSTS = [
    ("Hello, plugins", "hello-plugins",
     "This blog runs third-party plugins inside a WebAssembly sandbox.\n\n"
     "Each plugin is signed, asks for capabilities, and runs with memory, CPU and time limits."),
    ("Why sandbox a plugin?", "why-sandbox",
     "A plugin that crashes, loops or asks for too much memory must not take the site down.\n\n"
     "WebAssembly gives each call a fuel budget and a deadline."),
    ("Quotes & \"ampersands\" </script>", "hostile-title",
     "A title with <b>markup</b>, quotes and & must stay inert wherever a plugin echoes it."),
]


class Command(BaseCommand):
    help = "Create the demo admin (DEMO_ADMIN_USER / DEMO_ADMIN_PASSWORD) and sample posts."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        email = os.environ.get("DEMO_ADMIN_EMAIL", "admin@example.com")
        users = get_user_model()
        user, created = users.objects.get_or_create(
            username=username, defaults={"email": email, "is_staff": True, "is_superuser": True}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        for title, slug, body in POSTS:
            Post.objects.get_or_create(slug=slug, defaults={"title": title, "body": body})
        self.stdout.write(self.style.SUCCESS(
            f"Demo admin: username {username!r}, password {password!r} (the admin is at /admin/)"
        ))
        self.stdout.write(f"Posts: {Post.objects.count()}")
