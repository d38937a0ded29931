"""The one service that changes plugin state.

Interfaces (admin, API, commands, the dev endpoint) call these functions and nothing else that
writes plugin state. The package holds one job per module:

- :mod:`.plugins`: install, activate, deactivate, upgrade, rollback, uninstall;
- :mod:`.grants`: grant and revoke capabilities after install;
- :mod:`.keys`: trust, find and revoke publisher keys;
- :mod:`.dev`: dev builds (dev mode only);
- :mod:`.faults`: fault records and quarantine;
- :mod:`.settings`: a plugin's settings, read (with defaults) and changed;
- :mod:`.rollout`: a staged rollout started, changed, promoted or rolled back;
- :mod:`.preflight`: every check made before a change (the admin shows them at upload);
- :mod:`.blobs`: blobs of failed operations undone, unreferenced blobs removed, ``plugin gc``;
- :mod:`._tx`: audit, generation bump, signals on commit; :mod:`._compile`: compiling before a
  transaction opens, through the loader ``AppConfig.ready`` installs (:func:`set_loader`).

This module re-exports the public API, so ``from gonext_plugins import lifecycle;
lifecycle.install(...)`` keeps working.
"""

from . import rollout, settings
from ._compile import Compiled, Loader, set_loader
from ._tx import Actor, Result, bump_generation, current_generation, manifest_of
from .blobs import collect_blobs
from .dev import DEV_MARKER, DevInstallResult, dev_install, dev_version, is_dev_version
from .faults import quarantine, record_fault
from .grants import grant, revoke
from .keys import db_key_lookup, find_key, revoke_key, trust_key
from .plugins import activate, deactivate, install, rollback, uninstall, upgrade
from .preflight import (
    effective,
    granted_capabilities,
    publisher_change,
    publisher_label,
)

__all__ = [
    "DEV_MARKER",
    "Actor",
    "Compiled",
    "DevInstallResult",
    "Loader",
    "Result",
    "activate",
    "bump_generation",
    "collect_blobs",
    "current_generation",
    "db_key_lookup",
    "deactivate",
    "dev_install",
    "dev_version",
    "effective",
    "find_key",
    "grant",
    "granted_capabilities",
    "install",
    "is_dev_version",
    "manifest_of",
    "publisher_change",
    "publisher_label",
    "quarantine",
    "record_fault",
    "revoke",
    "revoke_key",
    "rollback",
    "rollout",
    "set_loader",
    "settings",
    "trust_key",
    "uninstall",
    "upgrade",
]
