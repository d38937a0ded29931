"""Moved to the :mod:`gonext_plugins.admin` package (``plugins``, ``keys``, ``staging`` for held
uploads, ``presenters`` for what the dialogs show). Re-exported so old imports keep working."""

from .admin.keys import PublisherKeyAdminViews
from .admin.plugins import PluginAdminViews
from .admin.presenters import (
    CapabilityRow,
    bundle_error_lines,
    describe_bundle,
    install_capabilities,
    recent_audit,
    sentence,
    upgrade_capabilities,
)
from .admin.staging import (
    PENDING_MAX_AGE,
    PENDING_PREFIX,
    PENDING_SALT,
    PendingError,
    discard_upload,
    fetch_upload,
    hold_upload,
)

__all__ = ["PENDING_MAX_AGE", "PENDING_PREFIX", "PENDING_SALT", "CapabilityRow", "PendingError",
           "PluginAdminViews", "PublisherKeyAdminViews", "bundle_error_lines", "describe_bundle",
           "discard_upload", "fetch_upload", "hold_upload", "install_capabilities", "recent_audit",
           "sentence", "upgrade_capabilities"]
