"""Moved to :mod:`gonext_plugins.diagnostics.traps`: the registry builds trap reports in production,
and production code must not import the author's tools. Re-exported for old imports."""

from gonext_plugins.diagnostics.traps import *  # noqa: F403
from gonext_plugins.diagnostics.traps import __all__  # noqa: F401
