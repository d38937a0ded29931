"""``plugin new``: every template builds, loads in the runtime and answers its hooks out of the box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from gonext_plugins.devtools import builders, scaffold
from gonext_plugins.devtools.scaffold import ScaffoldError
from gonext_plugins.runtime import Runtime


class Logs:
    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def __call__(self, plugin: str, level: int, message: str, source: str) -> None:
        self.lines.append((level, message))


def test_wat_scaffold_runs(tmp_path: Path) -> None:
    project = tmp_path / "my_Plugin"
    written = scaffold.create(project, "wat")
    assert sorted(p.name for p in written) == [".gitignore", "README.md", "manifest.json", "plugin.wat"]
    built, checked = builders.build(project)
    assert built.lang == "wat" and checked.manifest.slug == "my-plugin"
    assert checked.manifest.name == "My Plugin"
    logs = Logs()
    with Runtime(log_sink=logs) as runtime:
        plugin = runtime.load(checked.wasm, name="my-plugin")
        for _ in range(3):  # a reused instance does not grow
            generator = {"meta": [{"name": "generator", "content": "my-plugin"}]}
            assert plugin.invoke_action("wp_head") == generator
        assert logs.lines[0] == (0, "wp_head: adding the generator tag")
        from gonext_plugins.errors import HookError

        with pytest.raises(HookError) as info:
            plugin.invoke_action("save_post")
        assert info.value.status == "unknown_hook"


def test_zig_scaffold_runs(zig_projects: dict[str, Path]) -> None:
    project = zig_projects["hello"]
    assert {p.name for p in project.iterdir()} >= {"main.zig", "manifest.json", "README.md", ".gitignore"}
    checked = builders.validate(project)
    manifest = json.loads((project / "manifest.json").read_text())
    assert manifest["slug"] == "hello-zig" and manifest["capabilities"] == ["hooks.subscribe"]
    with Runtime() as runtime:
        plugin = runtime.load(checked.wasm, name="hello-zig")
        html = plugin.invoke_filter("the_content", "<p>Post</p>")
        assert html == '<p>Post</p><p class="hello-zig-hello">Hello from Hello Zig!</p>'
        assert plugin.invoke_action("wp_head") == {"meta": [{"name": "generator", "content": "hello-zig"}]}


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "main.zig").write_text("keep me")
    with pytest.raises(ScaffoldError, match="not empty"):
        scaffold.create(tmp_path / "x", "zig")
    assert (tmp_path / "x" / "main.zig").read_text() == "keep me"
    scaffold.create(tmp_path / "empty-dir-ok", "wat")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lang": "cobol"}, "no template for 'cobol'"),
    ({"slug": "Bad_Slug"}, "not a valid plugin slug"),
    ({"name": 'quote"d'}, "plugin name"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    kwargs = dict(kwargs)
    lang = kwargs.pop("lang", "wat")
    with pytest.raises(ScaffoldError, match=message):
        scaffold.create(tmp_path / "plug", lang, **kwargs)


def test_slug_from_directory() -> None:
    assert scaffold.slug_for("/x/My Cool_Plugin!") == "my-cool-plugin"
    assert scaffold.slug_for("/x/2fast") == "fast"


def test_plugin_new_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cmd-plugin"
    call_command("plugin", "new", str(target), "--lang", "wat", "--slug", "greeter", "--name", "Greeter")
    assert "created a wat plugin" in capsys.readouterr().out
    assert json.loads((target / "manifest.json").read_text())["slug"] == "greeter"
    builders.build(target)
