"""Where the plugin SDKs live: the one place every build and scaffold asks.

The SDK sources ship inside the package (``gonext_plugins/sdk/<lang>/``) so that a wheel and an
editable install find them alike; the repository's top-level ``sdk`` is a symlink to that folder,
the place authors reading a checkout look. No Django here.
"""

from __future__ import annotations

from pathlib import Path

from gonext_plugins.errors import BuildError

SDK_ROOT = Path(__file__).resolve().parents[1] / "sdk"


def sdk_dir(lang: str) -> Path:
    """The SDK folder for ``lang`` (e.g. ``zig``); a ``BuildError`` naming the path if it is missing,
    which means a broken install (the wheel carries every SDK)."""
    path = SDK_ROOT / lang
    if not path.is_dir():
        raise BuildError(f"no {lang} SDK at {path}: reinstall gonext-plugins (the package carries its SDKs)")
    return path
