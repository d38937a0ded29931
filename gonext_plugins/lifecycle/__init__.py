"""The one service that changes plugin state (moved from ``lifecycle.py``; split next)."""

from .plugins import *  # noqa: F403
from .plugins import _semver_key  # noqa: F401  (imported by the API and the CLI until they use version_key)
