"""The settings table in ``conf`` is the one place a key is declared: its default has the declared
type and lies in its range, and the README documents exactly its keys."""

from __future__ import annotations

import re
from pathlib import Path

from gonext_plugins.conf import DEFAULTS, RANGES, SETTINGS, PluginSettings, Setting, settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_keys() -> list[str]:
    """The keys named in the first column of README's "## Settings" table."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    table = section[section.index("| key | default | meaning |"):].split("\n\n", 1)[0]
    keys: list[str] = []
    for row in table.splitlines()[2:]:
        first_cell = row.split("|")[1]
        keys += re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell)
    return keys


def test_readme_documents_every_setting_and_no_other() -> None:
    keys = _readme_keys()
    assert len(keys) == len(set(keys)) and set(keys) == set(SETTINGS)


def test_each_default_has_its_declared_type_and_lies_in_its_range() -> None:
    for name, setting in SETTINGS.items():
        assert setting.name == name and DEFAULTS[name] == setting.default
        assert isinstance(setting.default, setting.types), name
        if setting.range is not None:
            low, high = setting.range
            assert setting.default is None or low <= setting.default <= high, name
    assert set(RANGES) <= set(SETTINGS)


def test_the_class_reads_declarations_and_the_object_reads_values() -> None:
    assert isinstance(PluginSettings.HARD_TIMEOUT_MS, Setting)
    assert settings.HARD_TIMEOUT_MS == DEFAULTS["HARD_TIMEOUT_MS"]
    assert isinstance(settings.HARD_TIMEOUT_MS, int)
