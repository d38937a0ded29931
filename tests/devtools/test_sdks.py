"""Where the SDKs are found: one function, the package's own folder, which the repository's
top-level ``sdk`` (where authors look) is a link to."""

from __future__ import annotations

import pytest

from gonext_plugins.devtools.sdks import SDK_ROOT, sdk_dir
from gonext_plugins.errors import BuildError

from ..conftest import REPO


def test_the_zig_sdk_is_inside_the_package() -> None:
    zig = sdk_dir("zig")
    assert (zig / "gonext.zig").is_file()
    assert zig.parent == SDK_ROOT and SDK_ROOT.parent.name == "gonext_plugins"


def test_the_top_level_sdk_folder_is_the_packages() -> None:
    assert (REPO / "sdk").is_symlink()
    assert (REPO / "sdk" / "zig").resolve() == sdk_dir("zig").resolve()


def test_a_missing_sdk_is_a_build_error_naming_the_path() -> None:
    with pytest.raises(BuildError, match=r"no cobol SDK at .*gonext_plugins/sdk/cobol"):
        sdk_dir("cobol")


def test_the_rust_sdk_is_a_crate_inside_the_package() -> None:
    rust = sdk_dir("rust")
    assert {"Cargo.toml", "README.md"} <= {p.name for p in rust.iterdir()}
    assert (rust / "src" / "lib.rs").is_file()
    assert 'name = "gonext"' in (rust / "Cargo.toml").read_text()
    assert (REPO / "sdk" / "rust").resolve() == rust.resolve()
