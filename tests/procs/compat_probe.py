"""One process of a site after an upgrade: does it start, serve pages, and say what it skipped?

``python tests/procs/compat_probe.py SLUG`` (DJANGO_SETTINGS_MODULE picks the site) prints one JSON
line: the plugin's ``upper`` filter applied to "hello", what the registry skipped, the status of the
blog's home page, the plugin resource's ``incompatible`` field, whether the admin changelist shows
the banner (saved to ``--html``), and the system check's W013 messages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _django import emit, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("slug")
    parser.add_argument("--html", default="")
    args = parser.parse_args()
    setup()
    from django.contrib.auth.models import User
    from django.core.checks import run_checks
    from django.test import Client

    from gonext_plugins import hooks
    from gonext_plugins.registry import registry

    filtered = hooks.apply_filters("upper", "hello")
    root, _ = User.objects.get_or_create(username="probe-root", defaults={"is_staff": True,
                                                                        "is_superuser": True})
    client = Client()
    client.force_login(root)
    home = client.get("/")
    resource = client.get(f"/api/plugins/{args.slug}/")
    changelist = client.get("/admin/gonext_plugins/plugin/")
    html = changelist.content.decode()
    if args.html:
        Path(args.html).write_text(html)
    emit(filtered=filtered, skipped={slug: [r.as_dict() for r in reasons]
                                     for slug, reasons in registry.incompatible().items()},
         home=home.status_code, api=resource.status_code, incompatible=resource.json().get("incompatible"),
         admin=changelist.status_code, banner='id="gn-incompatible-banner"' in html,
         w013=[m.msg for m in run_checks() if m.id == "gonext_plugins.W013"])
    registry.close()


if __name__ == "__main__":
    main()
