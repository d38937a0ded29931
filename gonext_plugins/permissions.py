"""The one permission policy: a codename per action and a ``can_*`` function per action.

The admin, the API, the log WebSocket and the plain views all ask these functions, so a role means
the same thing everywhere and a permission does exactly what its name says. Each function takes the
signed-in user (or ``None``/an anonymous user) and answers ``True``/``False``; how a refusal looks
(a redirect to the login page, 401, 403, a WebSocket close code) is each interface's business.

The rules that are more than one codename:

- Installing needs ``install_plugin``; installing *and activating* also needs ``activate_plugin``;
  installing *with grants* (any capability beyond those every plugin holds) also needs
  ``grant_capability``. So ``install_plugin`` alone adds code that stays inactive and holds
  nothing; a plugin that requires a capability cannot be installed by such a user at all (granting
  it is a decision of its own).
- Upgrading needs ``install_plugin``, and ``grant_capability`` when it grants something the plugin
  does not hold yet or changes the hosts of its ``http.fetch`` grant.
- A dev install (dev mode only) installs, grants everything asked for and activates: all three.
- Trusted publisher keys use Django's model permissions on ``PublisherKey``: ``add_`` to trust,
  ``change_`` to revoke, ``view_`` to list. Superusers hold every permission, as in Django.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .capabilities import ALWAYS_GRANTED

if TYPE_CHECKING:  # only for hints: the consumer imports this module before the app registry is ready
    from .models import Plugin

APP_LABEL = "gonext_plugins"

VIEW_PLUGIN = f"{APP_LABEL}.view_plugin"
"""See installed plugins, their versions, grants, faults, jobs, and the capability catalogue."""
INSTALL_PLUGIN = f"{APP_LABEL}.install_plugin"
"""Install, upgrade, roll back and uninstall (activation and grants are separate permissions)."""
ACTIVATE_PLUGIN = f"{APP_LABEL}.activate_plugin"
"""Activate and deactivate, and a staged rollout (start, change, promote, roll back)."""
GRANT_CAPABILITY = f"{APP_LABEL}.grant_capability"
"""Grant and revoke capabilities, at install, at upgrade or on their own."""
VIEW_PLUGIN_LOGS = f"{APP_LABEL}.view_plugin_logs"
"""Read a plugin's log backlog and watch it live."""
CHANGE_SETTINGS = f"{APP_LABEL}.change_plugin_settings"
"""Change a plugin's settings (secrets included: write-only). Reading them (secrets as set or not)
is ``view_plugin``. Its own codename: settings are configuration, not code, capabilities or state."""
VIEW_AUDIT = f"{APP_LABEL}.view_auditevent"
"""Read the audit trail of plugin changes."""
VIEW_KEYS = f"{APP_LABEL}.view_publisherkey"
"""List trusted publisher keys."""
TRUST_KEY = f"{APP_LABEL}.add_publisherkey"
"""Trust a publisher key: bundles it signs may then be installed."""
REVOKE_KEY = f"{APP_LABEL}.change_publisherkey"
"""Revoke a publisher key (deactivates the plugins it signed)."""

HTTP_FETCH = "http.fetch"


def is_signed_in(user: Any) -> bool:
    """An authenticated, active account: nobody else is asked about permissions."""
    return bool(user is not None and user.is_authenticated and user.is_active)


def _has(user: Any, *codenames: str) -> bool:
    return is_signed_in(user) and all(user.has_perm(codename) for codename in codenames)


def can_view_plugins(user: Any) -> bool:
    return _has(user, VIEW_PLUGIN)


def changes_grants(grants: Iterable[str], plugin: Plugin | None = None,
                   hosts: Iterable[str] | None = None) -> bool:
    """Whether ``grants`` (with ``hosts``) give ``plugin`` (``None`` for a new one) anything it does
    not hold: a new capability, or other hosts for its ``http.fetch`` grant."""
    held = {grant.capability: grant for grant in plugin.grants.all()} if plugin is not None else {}
    if set(grants) - set(held) - ALWAYS_GRANTED:
        return True
    fetch = held.get(HTTP_FETCH)
    return fetch is not None and hosts is not None and sorted(set(hosts)) != sorted(fetch.hosts)


def needed_to_install(*, activate: bool = False, grants: Iterable[str] = ()) -> list[str]:
    """Every codename an install with these options needs (named in refusals)."""
    needed = [INSTALL_PLUGIN]
    if changes_grants(grants):
        needed.append(GRANT_CAPABILITY)
    if activate:
        needed.append(ACTIVATE_PLUGIN)
    return needed


def can_install(user: Any, *, activate: bool = False, grants: Iterable[str] = ()) -> bool:
    """Install; activating in the same step and granting capabilities need their own permissions."""
    return _has(user, *needed_to_install(activate=activate, grants=grants))


def can_start_install(user: Any) -> bool:
    """Upload a bundle for review (the admin's first step; nothing is written)."""
    return _has(user, INSTALL_PLUGIN)


def needed_to_upgrade(plugin: Plugin, grants: Iterable[str] = (),
                      hosts: Iterable[str] | None = None) -> list[str]:
    return [INSTALL_PLUGIN, *([GRANT_CAPABILITY] if changes_grants(grants, plugin, hosts) else [])]


def can_upgrade(user: Any, plugin: Plugin | None = None, grants: Iterable[str] = (),
                hosts: Iterable[str] | None = None) -> bool:
    """Upgrade; without ``plugin`` only whether the user may start one (review a bundle)."""
    if plugin is None:
        return _has(user, INSTALL_PLUGIN)
    return _has(user, *needed_to_upgrade(plugin, grants, hosts))


def can_rollback(user: Any) -> bool:
    return _has(user, INSTALL_PLUGIN)


def can_uninstall(user: Any) -> bool:
    return _has(user, INSTALL_PLUGIN)


def can_activate(user: Any) -> bool:
    """Activate and deactivate."""
    return _has(user, ACTIVATE_PLUGIN)


def can_roll_out(user: Any) -> bool:
    """Start, change, promote or roll back a staged rollout: an activation in steps."""
    return _has(user, ACTIVATE_PLUGIN)


def can_grant(user: Any) -> bool:
    """Grant and revoke capabilities."""
    return _has(user, GRANT_CAPABILITY)


def can_change_settings(user: Any) -> bool:
    return _has(user, CHANGE_SETTINGS)


def can_view_logs(user: Any) -> bool:
    return _has(user, VIEW_PLUGIN_LOGS)


def can_view_audit(user: Any) -> bool:
    return _has(user, VIEW_AUDIT)


def can_view_keys(user: Any) -> bool:
    return _has(user, VIEW_KEYS)


def can_trust_key(user: Any) -> bool:
    return _has(user, TRUST_KEY)


def can_revoke_key(user: Any) -> bool:
    return _has(user, REVOKE_KEY)


DEV_INSTALL = (INSTALL_PLUGIN, ACTIVATE_PLUGIN, GRANT_CAPABILITY)
"""A dev install grants everything the manifest asks for and activates it."""


def can_dev_install(user: Any) -> bool:
    return _has(user, *DEV_INSTALL)


def can_preview(user: Any) -> bool:
    """A preview runs a plugin's code on a page of the site (for that render only, its writes held
    back): what activating does, seen first. So it needs what activation needs, plus seeing plugins."""
    return _has(user, VIEW_PLUGIN, ACTIVATE_PLUGIN)


def can_view_metrics(user: Any) -> bool:
    """Metrics name plugins and count their calls and faults: what ``view_plugin`` shows."""
    return _has(user, VIEW_PLUGIN)


def can_use_admin_pages(user: Any) -> bool:
    """The admin's own rule for pages in its shell (the live log page and its WebSocket): staff."""
    return is_signed_in(user) and bool(user.is_staff)
