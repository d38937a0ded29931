"""`make demo`'s plugin step: build, sign, install and activate the example SEO plugin.

Placeholder until the hook-bus issue lands the Zig SDK and the SEO plugin: it says so plainly
instead of pretending to install anything.
"""

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Build, sign, install and activate the example SEO plugin (not yet available)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(self.style.WARNING(
            "SEO plugin step: not built yet — the example plugin arrives with the hook-bus issue. "
            "The site runs without plugins until then."
        ))
