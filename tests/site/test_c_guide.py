"""docs/languages/c.md, executed: every ```sh block in order (scaffold, ``plugin dev --build-only``,
the release build and ``plugin pack``), from the repository's root with ``HOME`` a temporary
directory, ``python`` this interpreter. ``<!-- test: expect="REGEX" -->`` before a block: its output
must match. The page's parser is the plugin-authors page's (``steps``)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gonext_plugins import bundle
from tests.conftest import REPO
from tests.site.test_plugin_authors_doc import steps

GUIDE = REPO / "docs" / "languages" / "c.md"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ziglang") is None,
                                reason="ziglang is not installed (pip install ziglang)")


def test_the_c_guide_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py picks the demo site's, as for an author
    ran = 0
    for step in steps(GUIDE.read_text(encoding="utf-8")):
        if step.command is None:
            continue
        done = subprocess.run(["bash", "-ec", step.command], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{step.command}\n{output}"
        if "expect" in step.attrs:
            assert re.search(step.attrs["expect"], output), f"{step.command}\n{output}"
        ran += 1
    assert ran == 3
    packed = bundle.read((tmp_path / "wordcount-0.1.0.gnplugin").read_bytes(), require_signature=False)
    assert packed.manifest.slug == "wordcount"
    assert b".debug_line" not in packed.wasm and len(packed.wasm) < 16_000  # the release build
