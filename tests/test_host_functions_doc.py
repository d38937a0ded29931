"""docs/host-functions.md and the host-function registry cannot disagree: every built-in host
function registered in the app is a row of the doc's table with the capability it is registered
under, and every row of the table is registered.

"Built-in" means registered under a capability the app itself declares (``Capability.builtin``);
a site's own functions (``posts.get`` under ``posts.read``) are the site's to document.
"""

from __future__ import annotations

import re
from pathlib import Path

from gonext_plugins import capabilities

DOC = Path(__file__).resolve().parent.parent / "docs" / "host-functions.md"
ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|\s*`(?P<capability>[^`]+)`\s*\|")


def documented() -> dict[str, str]:
    """function → capability, from the rows of the section "## The table"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## The table\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match["name"] not in rows, f"{match['name']} has two rows in {DOC.name}"
            rows[match["name"]] = match["capability"]
    return rows


def registered() -> dict[str, str]:
    """function → capability, for every host function registered under a built-in capability."""
    return {f.name: f.capability for f in capabilities.host_functions
            if capabilities.is_known(f.capability) and capabilities.get(f.capability).builtin}


def test_the_doc_table_is_the_registry_of_built_in_host_functions() -> None:
    doc, code = documented(), registered()
    assert len(doc) >= 10  # the parser found the table (an empty parse would hide every mismatch)
    assert {n: c for n, c in doc.items() if code.get(n) != c} == {}, "documented, but not registered so"
    assert {n: c for n, c in code.items() if doc.get(n) != c} == {}, "registered, but not documented so"


def test_the_table_parser_reads_rows_and_ignores_other_tables() -> None:
    assert documented()["plugin.info"] == "self"
    assert documented()["http.fetch"] == "http.fetch"
    assert not any(name.startswith("-") for name in documented())  # the statuses table is not read
