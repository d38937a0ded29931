"""Child process of tests/security/test_reentrant_host_calls.py: the demo site with a plugin whose
``gn_alloc`` calls ``gn_host_call("log", ...)`` on ``wp_head``, which every page renders.

``python tests/procs/reentrant_site.py VIEWS`` (environment as ``tests.test_cross_process.base_env``)

It migrates the database it is given, installs and activates the signed plugin, then renders the
home page VIEWS times with Django's test client, printing after each view its status and what the
database holds: the plugin's faults and its state. ``{"event": "end"}`` closes a run that survived.
"""

from __future__ import annotations

import sys

import wasmtime
from _django import REPO, emit, setup


def main(views: int) -> None:
    setup()
    from django.core.management import call_command
    from django.test import Client

    from gonext_plugins import bundle, lifecycle, signing
    from gonext_plugins.models import Plugin, PluginFault

    call_command("migrate", verbosity=0, interactive=False)
    private, public = signing.generate_key()
    lifecycle.trust_key("Re-entrancy publisher", public, "tests")
    manifest = {
        "apiVersion": "gonext.io/v1", "slug": "reentrant", "name": "Re-entrant allocator",
        "version": "1.0.0", "abi": 1, "description": "Calls a host function from gn_alloc.",
        "author": "Tests", "capabilities": ["hooks.subscribe"],
        "hooks": [{"name": "wp_head", "kind": "action"}],
    }
    wasm = wasmtime.wat2wasm((REPO / "tests" / "guests" / "reentrant_guest.wat").read_text())
    signed = bundle.read(bundle.sign(bundle.pack(manifest, wasm), private))
    lifecycle.install(signed, ["hooks.subscribe"], "tests", activate=True)
    emit(event="ready")
    client = Client()
    for view in range(1, views + 1):
        response = client.get("/")
        plugin = Plugin.objects.get(slug="reentrant")
        faults = list(PluginFault.objects.filter(plugin=plugin).order_by("pk").values_list("kind", "message"))
        emit(event="view", view=view, status=response.status_code, state=plugin.state,
             faults=[{"kind": kind, "message": message} for kind, message in faults])
    emit(event="end")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
