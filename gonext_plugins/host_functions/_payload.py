"""Reading a host call's payload: the calling plugin's slug, and the shape checks of
:mod:`gonext_plugins.host_rules` (their one home, shared with the Django-free test harness).

The runtime has already decoded the JSON (-3 otherwise) and checked the capability (-5); what is left
is the shape: an object with exactly the fields a function takes (a typo fails loudly), and strings
the database can store.
"""

from __future__ import annotations

from typing import Any

from ..host_rules import fields, require_storable

__all__ = ["fields", "require_storable", "slug"]


def slug(plugin: Any) -> str:
    """The calling plugin's slug (the registry's LoadedPlugin when there is one)."""
    return str(getattr(getattr(plugin, "context", None), "slug", None) or plugin.name)
