"""The site's hook catalogue: ``hooks.declare`` and its rules, the blog's declarations, the API's
``hooks/`` (permissions, schema), ``manage.py plugin hooks``, the admin's page and the install
dialog's marks, and the ``plugin dev`` warning computed against a catalogue read from a live site."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from gonext_plugins import bundle, hooks, lifecycle
from gonext_plugins.devtools import hookcheck
from gonext_plugins.devtools.devloop import DevLoop, DevOptions
from gonext_plugins.errors import HookDeclarationError, UploadError
from gonext_plugins.manifest import Hook, validate
from tests.test_admin import admin_url, client_for, make_user, marker_manifest, signed_bundle, upload

REPO = Path(__file__).resolve().parents[1]
BLOG_HOOKS = {("save_post", "action"), ("the_content", "filter"), ("wp_head", "action")}


# --- declare ------------------------------------------------------------------------------------


def test_declare_accepts_pairs_dicts_and_names_and_sorts_the_catalogue() -> None:
    title_args: list[Any] = [("title", "the title"), {"name": "post", "description": "the post"}]
    with hooks.declared_temporarily("zz_after", "action", args=["post"]), \
         hooks.declared_temporarily("aa_title", "filter", description="The page title.", args=title_args):
        names = [hook.name for hook in hooks.catalogue()]
        assert names == sorted(names) and {"aa_title", "zz_after"} <= set(names)
        assert hooks.declared("aa_title").as_dict() == {  # type: ignore[union-attr]
            "name": "aa_title", "kind": "filter", "description": "The page title.",
            "args": [{"name": "title", "description": "the title"},
                     {"name": "post", "description": "the post"}]}
        assert hooks.declared("zz_after").args == (hooks.HookArg("post"),)  # type: ignore[union-attr]
    assert hooks.declared("aa_title") is None and hooks.declared("zz_after") is None


def test_same_name_other_kind_is_refused_same_kind_replaces() -> None:
    with hooks.declared_temporarily("x_hook", "filter", description="first"):
        with pytest.raises(HookDeclarationError, match="already declared as a filter; it cannot also be "
                                                       "an action") as caught:
            hooks.declare("x_hook", "action")
        assert caught.value.code == "bad_hook_declaration"
        assert hooks.declared("x_hook").kind == "filter"  # type: ignore[union-attr]
        hooks.declare("x_hook", "filter", description="second")
        assert hooks.declared("x_hook").description == "second"  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "kind", "args"), [
    ("", "action", []), ("x", "hook", []), ("x", "filter", "post"), ("x", "filter", [("a", "b", "c")]),
    ("x", "filter", [{"description": "no name"}]),
])
def test_bad_declarations_are_typed_errors(name: str, kind: str, args: Any) -> None:
    with pytest.raises(HookDeclarationError):
        hooks.declare(name, kind, args=args)
    assert hooks.declared(name) is None


@pytest.mark.django_db  # a dispatch first syncs this process's plugins with the database
def test_an_undeclared_hook_still_runs() -> None:
    assert hooks.declared("never_declared") is None
    with hooks.register_temporarily("never_declared", lambda value: value + 1):
        assert hooks.apply_filters("never_declared", 1) == 2


def test_unoffered_names_missing_and_wrong_kind() -> None:
    offered = [hooks.DeclaredHook("the_content", "filter"), hooks.DeclaredHook("wp_head", "action")]
    wanted = [("the_content", "filter"), ("wp_head", "filter"), ("wp_footer", "action")]
    assert hooks.unoffered(wanted, offered) == [
        ("wp_head", "filter", "the site declares it as an action, not a filter"),
        ("wp_footer", "action", "the site does not declare this hook")]


def test_the_blog_declares_every_hook_it_fires() -> None:
    """Each hook name the demo site fires (code and templates) is in its catalogue, and back."""
    fired: set[str] = set()
    for path in [*(REPO / "project").rglob("*.py"), *(REPO / "templates").rglob("*.html")]:
        text = path.read_text()
        fired |= set(re.findall(r'(?:do_action|apply_filters)\(\s*"([^"]+)"', text))
        fired |= set(re.findall(r'{%\s*(?:do_action|apply_filters)\s+"([^"]+)"', text))
    declared = {(hook.name, hook.kind) for hook in hooks.catalogue()}
    assert BLOG_HOOKS <= declared
    assert fired == {name for name, _ in BLOG_HOOKS}


# --- API --------------------------------------------------------------------------------------------


def token_client(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


@pytest.mark.django_db
def test_api_lists_the_catalogue_to_those_who_may_view_plugins() -> None:
    url = "/api/hooks/"
    anonymous = Client().get(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "not_authenticated"
    nobody = token_client(User.objects.create_user("nobody", password="pw"))
    refused = nobody.get(url)
    assert refused.status_code == 403 and set(refused.json()) >= {"error", "detail"}
    viewer = token_client(make_user("viewer", ["view_plugin"]))
    with hooks.declared_temporarily("api_probe", "filter", args=[("value", "what is filtered")]):
        answer = viewer.get(url)
    assert answer.status_code == 200
    by_name = {entry["name"]: entry for entry in answer.json()}
    assert by_name["api_probe"] == {"name": "api_probe", "kind": "filter", "description": "",
                                    "args": [{"name": "value", "description": "what is filtered"}]}
    assert {(e["name"], e["kind"]) for e in answer.json()} >= BLOG_HOOKS
    assert [e["name"] for e in answer.json()] == sorted(by_name)
    assert viewer.get(url + "?page=2").status_code == 400  # unknown parameters are refused


@pytest.mark.django_db
def test_schema_documents_the_endpoint() -> None:
    root = client_for(make_user("root", [], superuser=True))
    schema = root.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    (path,) = [p for p in schema["paths"] if p.endswith("/hooks/")]
    get = schema["paths"][path]["get"]
    assert get["summary"] == "List the hooks this site offers plugins"
    assert {"200", "401", "403"} <= set(get["responses"])
    item = get["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    fields = schema["components"]["schemas"][item.rsplit("/", 1)[1]]["properties"]
    assert set(fields) == {"name", "kind", "description", "args"}


# --- the command ------------------------------------------------------------------------------------


def test_plugin_hooks_prints_a_table_and_json() -> None:
    out = io.StringIO()
    with hooks.declared_temporarily("cmd_probe", "action", description="Probe.",
                                    args=[("post", "the post")]):
        call_command("plugin", "hooks", stdout=out)
        as_json = io.StringIO()
        call_command("plugin", "hooks", "--json", stdout=as_json)
        expected = [hook.as_dict() for hook in hooks.catalogue()]
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ARGS", "DESCRIPTION"]
    assert re.search(r"^cmd_probe\s+action\s+post\s+Probe\.$", out.getvalue(), re.M)
    assert re.search(r"^the_content\s+filter\s+html, post\s+A post's body", out.getvalue(), re.M)
    assert "    post: the post" in lines
    assert json.loads(as_json.getvalue()) == expected


# --- the admin --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_page_shows_the_catalogue_and_is_linked_from_the_changelist() -> None:
    viewer = client_for(make_user("viewer", ["view_plugin"]))
    changelist = viewer.get(admin_url("plugin_changelist")).content.decode()
    assert f'href="{admin_url("plugin_hooks")}" id="gn-hook-catalogue-link"' in changelist
    page = viewer.get(admin_url("plugin_hooks"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Hooks this site offers" in html and "A post&#x27;s body as HTML, on its page." in html
    for name, kind in BLOG_HOOKS:
        assert re.search(rf'<td class="gn-mono gn-hook-name">{name}</td><td>{kind}</td>', html), name
    no_perm = client_for(make_user("staff", []))
    assert no_perm.get(admin_url("plugin_hooks")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_admin_page_names_active_plugins_and_hooks_the_site_does_not_offer(publisher: Any) -> None:
    root = make_user("root", [], superuser=True)
    raw = signed_bundle(publisher.private_key, hooks=[{"name": "the_content", "kind": "filter"},
                                                      {"name": "wp_footer", "kind": "action"}])
    lifecycle.install(bundle.read(raw), ["hooks.subscribe"], root, activate=True)
    html = client_for(root).get(admin_url("plugin_hooks")).content.decode()
    assert re.search(r'<td class="gn-mono gn-hook-name">the_content</td>.*?<code>marker</code>', html, re.S)
    unoffered = html.split('id="gn-unoffered"', 1)[1]
    assert "wp_footer" in unoffered and "the site does not declare this hook" in unoffered
    assert "the_content" not in unoffered


@pytest.mark.django_db
def test_install_dialog_marks_hooks_the_site_does_not_offer(publisher: Any) -> None:
    manager = client_for(make_user("manager", ["view_plugin", "install_plugin", "activate_plugin",
                                               "grant_capability"]))
    raw = signed_bundle(publisher.private_key, hooks=[{"name": "the_content", "kind": "filter", "pure": True},
                                                      {"name": "wp_footer", "kind": "action"},
                                                      {"name": "save_post", "kind": "filter"}])
    response = upload(manager, admin_url("plugin_install"), raw)
    dialog = manager.get(response["Location"]).content.decode()
    table = dialog.split('id="gn-hooks"', 1)[1].split("</table>", 1)[0]
    rows = dict(re.findall(r'<td class="gn-mono">(\w+)(.*?)</td>', table))
    assert "not offered" not in rows["the_content"]
    assert ">pure</span>" in rows["the_content"] and ">pure</span>" not in rows["wp_footer"]
    assert "not offered by this site" in rows["wp_footer"]
    assert "the site does not declare this hook" in rows["wp_footer"]
    assert "declares it as an action, not a filter" in rows["save_post"]
    assert f'href="{admin_url("plugin_hooks")}"' in dialog


# --- plugin dev ---------------------------------------------------------------------------------------


def test_dev_warnings_from_a_manifest_object_and_a_raw_dict() -> None:
    offered = [hooks.DeclaredHook("the_content", "filter")]
    manifest = validate(marker_manifest(hooks=[{"name": "the_content", "kind": "filter"},
                                                         {"name": "wp_footer", "kind": "action"}]))
    assert [(h.name, h.kind) for h in manifest.hooks][1] == ("wp_footer", "action")
    assert isinstance(manifest.hooks[0], Hook)
    expected = ["action wp_footer: the site does not declare this hook"]
    assert hookcheck.warnings(manifest, offered) == expected
    assert hookcheck.warnings({"hooks": [{"name": "wp_footer", "kind": "action"}]}, offered) == expected
    assert hookcheck.warnings({"hooks": [{"name": "the_content", "kind": "filter"}]}, offered) == []


@pytest.mark.django_db(transaction=True)
def test_dev_reads_the_live_site_catalogue_with_the_token(live_server: Any) -> None:
    user = make_user("dev", ["view_plugin"])
    token = Token.objects.create(user=user).key
    offered = hookcheck.fetch_catalogue(live_server.url, token=token)
    assert offered == hooks.catalogue()
    assert hookcheck.warnings({"hooks": [{"name": "the_content", "kind": "filter"},
                                         {"name": "the_title", "kind": "filter"}]}, offered) == [
        "filter the_title: the site does not declare this hook"]
    with pytest.raises(UploadError, match=r"HTTP 401 .*--token"):
        hookcheck.fetch_catalogue(live_server.url)


def test_dev_loop_prints_the_warning_and_survives_an_unreadable_catalogue(tmp_path: Path) -> None:
    manifest = validate(marker_manifest(hooks=[{"name": "the_content", "kind": "filter"},
                                               {"name": "wp_footer", "kind": "action"}]))
    asked: list[tuple[str, str | None]] = []

    def site_catalogue(host: str, *, token: str | None = None) -> list[hooks.DeclaredHook]:
        asked.append((host, token))
        return [hooks.DeclaredHook("the_content", "filter")]

    out = io.StringIO()
    options = DevOptions(tmp_path, host="http://dev.example:8000/plugins", token="tok", color=False)
    DevLoop(options, out, catalogue=site_catalogue).check_hooks(manifest)
    assert asked == [("http://dev.example:8000/plugins", "tok")]
    assert re.search(r" hooks\s+1 the site does not offer", out.getvalue())
    assert "! action wp_footer: the site does not declare this hook" in out.getvalue()
    assert hookcheck.catalogue_url(options.host) == "http://dev.example:8000/plugins/api/hooks/"

    def unreachable(host: str, *, token: str | None = None) -> list[hooks.DeclaredHook]:
        raise UploadError("cannot read http://dev.example:8000/plugins/api/hooks/: refused")

    out = io.StringIO()
    DevLoop(options, out, catalogue=unreachable).check_hooks(manifest)
    assert re.search(r" hooks\s+not checked: cannot read .*: refused$", out.getvalue(), re.M)
