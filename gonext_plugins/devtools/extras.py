"""The ``author`` extra's Python packages (watchfiles, websockets): optional for a site.

Why a home of their own: a site installs the app without them, and every ``manage.py plugin``
subcommand (install, list, trust-key ...) must still work there; only the author's ``dev`` loop needs
them. So they are imported where they are used, through :func:`author_module`, and a missing one is
named with the one line that installs it rather than as a traceback. No Django here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

AUTHOR_EXTRA = "pip install 'gonext_plugins[author]'"


class MissingAuthorPackage(ImportError):
    """An optional package of the ``author`` extra is not installed; the message says which and how."""


def author_module(name: str, needed_for: str) -> ModuleType:
    """``import name``, or :class:`MissingAuthorPackage` saying that ``needed_for`` needs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingAuthorPackage(f"{needed_for} needs the Python package {name}, which is not installed: "
                                   f"{AUTHOR_EXTRA}") from exc
