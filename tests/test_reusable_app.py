"""The package as a new user gets it (issue #15): the wheel, built from this tree, installed into a
fresh virtualenv, added to a fresh `django-admin startproject` site with exactly the README's three
marked snippets, served by that venv's uvicorn, and driven the way the docs say.

One venv, one site, one server for the whole module (pip's cache keeps re-runs fast). The site code
the test writes beyond the snippets is what docs/site-developers.md asks of a site developer: a
capability and its host function registered from an AppConfig, hooks fired from a view with a
template, plus a DRF endpoint of the site's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import websockets

from .api.server import free_port
from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

README = REPO / "README.md"
SNIPPETS = ("settings", "urls", "asgi")
# What the wheel is built from: the package and the files pyproject.toml names.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "gonext_plugins")
PREFIX = "/plugins/"
PROJECT = "newsite"  # the README's snippets say `mysite`: the placeholder is replaced by this
SLUG = "greeter"
GREETING = "Hello, reader, from the site"
LOG_MESSAGE = "greeted a reader"  # what greetings/views.py has the plugin log
PASSWORD = "a-long-test-password-1"

# The site's own code, beside its settings: what the site developer's guide describes.
SITE_FILES = {
    "greetings/__init__.py": "",
    "greetings/apps.py": '''
        from django.apps import AppConfig


        class GreetingsConfig(AppConfig):
            name = "greetings"

            def ready(self) -> None:
                from . import plugins  # noqa: F401  (registers the capability and host function)
        ''',
    "greetings/plugins.py": '''
        """What plugins may ask this site for: one capability, one host function behind it, and the
        hooks the site offers (its catalogue)."""
        from gonext_plugins import capabilities, hooks

        capabilities.register("greeting.read", "Read the site's greeting for a visitor.", "low")
        hooks.declare("greeting.hello", "filter", args=[("who", "the reader to greet, as {'name': ...}")],
                      description="The greeting on the home page.")
        hooks.declare("log", "filter", args=[("line", "{'level', 'message'} to log")],
                      description="Fired once per home page view.")


        @capabilities.host_function("greeting.hello", capability="greeting.read")
        def hello(plugin, payload):
            return {"text": f"Hello, {payload['name']}, from the site"}
        ''',
    "greetings/views.py": '''
        from django.shortcuts import render
        from rest_framework.exceptions import NotFound
        from rest_framework.views import APIView

        from gonext_plugins import hooks


        def home(request):
            # The plugin answers this filter by calling the site's host function.
            greeting = hooks.apply_filters("greeting.hello", {"name": "reader"})
            # ...and logs through the built-in `log` host function when this one fires.
            hooks.apply_filters("log", {"level": "info", "message": "greeted a reader"})
            return render(request, "greetings/home.html", {"greeting": greeting})


        class Missing(APIView):
            """The site's own DRF API: its errors keep DRF's default format."""

            def get(self, request):
                raise NotFound("no such greeting")
        ''',
    "greetings/templates/greetings/home.html": '''
        {% load gonext_hooks %}<!doctype html>
        <html><head>{% do_action "wp_head" %}<title>mysite</title></head>
        <body><p id="greeting">{{ greeting.text }}</p></body></html>
        ''',
}
SITE_SETTINGS = 'INSTALLED_APPS += ["greetings"]\n'
# What the site had before the README's snippet: its own DRF API (the snippet must not add it again).
SITE_SETTINGS_BEFORE = 'INSTALLED_APPS += ["rest_framework"]\n'
SITE_URLS = '''
from greetings.views import Missing, home

urlpatterns += [path("", home), path("api/mine/", Missing.as_view())]
'''
# tests/guests/hostcall_guest.wat answers a filter named after a host function by calling it with
# the filter's value: `greeting.hello` is the site's, `log` the built-in one.
MANIFEST = {
    "apiVersion": "gonext.io/v1", "slug": SLUG, "name": "Greeter", "version": "1.0.0", "abi": 1,
    "description": "Greets the reader through the site's host function.", "author": "tests",
    "capabilities": ["hooks.subscribe", "greeting.read"],
    "hooks": [{"name": "greeting.hello", "kind": "filter"}, {"name": "log", "kind": "filter"}],
}


def readme_snippets(text: str) -> dict[str, str]:
    """The fenced python block after each ``<!-- site:NAME -->`` marker line of the README."""
    pattern = re.compile(r"^<!-- site:(\w+) -->\n```python\n(.*?)^```$", re.M | re.S)
    return {name: body for name, body in pattern.findall(text)}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test suite's Django and app settings (the new site has its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GONEXT_"))}
    return {**env, **extra}


def run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 900) -> str:
    """Run a command; on failure, fail the test with its output (the command is the evidence).

    Never from this repository's folder by default: Python puts the working directory first on
    ``sys.path``, so the checkout's ``gonext_plugins`` (and its editable-install metadata) would
    shadow the package installed from the wheel."""
    done = subprocess.run([str(c) for c in cmd], cwd=cwd or tempfile.gettempdir(), env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


@dataclass
class Site:
    root: Path
    venv: Path
    env: dict[str, str]
    token: str = ""
    url: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def manage(self, *args: str | Path) -> str:
        return run(self.venv / "bin" / "python", "manage.py", *args, cwd=self.root, env=self.env)


def test_readme_has_the_three_marked_snippets() -> None:
    snippets = readme_snippets(README.read_text(encoding="utf-8"))
    assert sorted(snippets) == sorted(SNIPPETS)
    assert 'include("gonext_plugins.urls")' in snippets["urls"]
    assert "mysite" in snippets["asgi"]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel of this tree and its `server` and `author` extras."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in WHEEL_SOURCES:  # a clean copy: no stale build/ from an earlier build leaks in
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "build", ".zig-cache"))
        else:
            shutil.copy2(path, src / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "dist", src)
    (wheel,) = (work / "dist").glob("gonext_plugins-*.whl")
    # The pinned versions this repository tests with (pip refuses extras in a constraints file).
    pins = [re.sub(r"\[.*?\]", "", line) for line in (REPO / "requirements.txt").read_text().splitlines()
            if line and not line.startswith(("#", "-"))]
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    env_dir = work / "venv"
    run(sys.executable, "-m", "venv", env_dir)
    run(env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-c", constraints, f"{wheel}[server,author]")
    return env_dir


def test_the_wheel_carries_what_the_app_reads_from_disk(venv: Path) -> None:
    code = ("import gonext_plugins, pathlib; p = pathlib.Path(gonext_plugins.__file__).parent; "
            "print(*sorted(str(f.relative_to(p)) for f in p.rglob('*') if f.suffix != '.pyc'), sep='\\n')")
    files = set(run(venv / "bin" / "python", "-c", code).split())
    for needed in ("sdk/zig/gonext.zig", "sdk/zig/README.md", "schemas/manifest-v1.json",
                   "sdk/assemblyscript/gonext/index.ts", "sdk/assemblyscript/README.md",
                   "devtools/templates/assemblyscript/index.ts.tmpl",
                   "static/gonext_plugins/logs.js", "templates/gonext_plugins/log_page.html",
                   "migrations/0001_initial.py", "devtools/templates/zig/main.zig.tmpl"):
        assert needed in files
    # Author tooling and daphne stay out of a site's runtime dependencies.
    requires = run(venv / "bin" / "python", "-c",
                   "from importlib.metadata import requires; print(*requires('gonext-plugins'), sep='\\n')")
    runtime = [r for r in requires.splitlines() if "extra ==" not in r]
    assert not [r for r in runtime if re.match(r"(daphne|watchfiles|ziglang|websockets)\b", r, re.I)]


@pytest.fixture(scope="module")
def site(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """startproject + the README's snippets + the site's own code, migrated, with the plugin
    signed, installed and activated through the CLI."""
    root = tmp_path_factory.mktemp("site") / PROJECT
    root.mkdir()
    run(venv / "bin" / "django-admin", "startproject", PROJECT, root)
    env = clean_env(DJANGO_SETTINGS_MODULE=f"{PROJECT}.settings", DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    s = Site(root=root, venv=venv, env=env)
    snippets = readme_snippets(README.read_text(encoding="utf-8"))
    package = root / PROJECT
    for name, before, extra in (("settings", SITE_SETTINGS_BEFORE, SITE_SETTINGS), ("urls", "", SITE_URLS)):
        target = package / f"{name}.py"
        target.write_text(target.read_text() + "\n" + before + snippets[name] + extra)
    (package / "asgi.py").write_text(snippets["asgi"].replace("mysite", PROJECT))
    for rel, text in SITE_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip())

    s.manage("migrate", "--noinput", "-v0")
    s.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    s.token = re.search(r"token (\w+)", s.manage("drf_create_token", "admin")).group(1)  # type: ignore[union-attr]

    work = root.parent / "plugin"
    work.mkdir()
    (work / "manifest.json").write_text(json.dumps(MANIFEST))
    guest = REPO / "tests" / "guests" / "hostcall_guest.wat"
    run(venv / "bin" / "python", "-c", "import sys, wasmtime; open(sys.argv[2], 'wb').write("
        "wasmtime.wat2wasm(open(sys.argv[1]).read()))", guest, work / "plugin.wasm")
    s.manage("plugin", "keygen", "--name", "Test publisher", "--out", work / "key.json")
    s.manage("plugin", "trust-key", "Test publisher", work / "key.json")
    s.manage("plugin", "pack", "--manifest", work / "manifest.json", "--wasm", work / "plugin.wasm",
             "--out", work / "unsigned.gnplugin")
    s.manage("plugin", "sign", work / "unsigned.gnplugin", "--key", work / "key.json",
             "--out", work / f"{SLUG}.gnplugin")
    s.manage("plugin", "install", work / f"{SLUG}.gnplugin", "--grant", "hooks.subscribe", "greeting.read")
    s.manage("plugin", "activate", SLUG)
    return s


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Site]:
    """The site under the venv's uvicorn (the flags of README "Serving") on a free loopback port."""
    port = free_port()
    log_path = site.root.parent / "uvicorn.log"
    with log_path.open("wb") as log:
        site.proc = subprocess.Popen(
            [str(site.venv / "bin" / "uvicorn"), f"{PROJECT}.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--lifespan", "off", "--ws-max-size", "65536"],
            cwd=site.root, env=site.env, stdout=log, stderr=subprocess.STDOUT)
        site.url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                if site.proc.poll() is not None:
                    pytest.fail(f"uvicorn exited:\n{log_path.read_text()}")
                try:
                    requests.get(site.url + "/api/mine/", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            yield site
        finally:
            site.proc.terminate()
            site.proc.wait(timeout=30)


def test_zig_plugin_scaffold_builds_from_the_installed_package(site: Site, tmp_path: Path) -> None:
    """`plugin new --lang zig` then a build, outside any checkout (the bug: no SDK in the wheel)."""
    plugin = tmp_path / "hello"
    out = site.manage("plugin", "new", plugin, "--lang", "zig")
    assert (plugin / "main.zig").is_file(), out
    out = site.manage("plugin", "dev", plugin, "--build-only")
    wasm = sorted(plugin.rglob("*.wasm"))
    assert wasm and wasm[0].read_bytes()[:4] == b"\0asm", out


def test_check_deploy_says_nothing_about_the_app(site: Site) -> None:
    done = subprocess.run([str(site.venv / "bin" / "python"), "manage.py", "check", "--deploy"],
                          cwd=site.root, env=site.env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    assert "System check identified" in output or "no issues" in output, output
    assert "gonext_plugins" not in output
    assert "drf_spectacular" not in output  # its schema check builds the app's API too


def test_the_page_shows_the_plugins_output(server: Site) -> None:
    page = requests.get(server.url + "/", timeout=30)
    assert page.status_code == 200, page.text[:2000]
    assert f'<p id="greeting">{GREETING}</p>' in page.text


def test_the_static_files_the_apps_pages_need_are_served_under_debug(server: Site) -> None:
    """startproject's DEBUG = True and the README's asgi.py: the admin's CSS, the log page's script
    and the API docs' Swagger UI load (uvicorn serves no static files by itself)."""
    for path in ("admin/css/base.css", "gonext_plugins/logs.js",
                 "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"):
        answer = requests.get(f"{server.url}/static/{path}", timeout=30)
        assert answer.status_code == 200, path


def _api(server: Site, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, server.url + PREFIX + "api/" + path, timeout=60,
                            headers={"Authorization": f"Token {server.token}"}, **kwargs)  # type: ignore[arg-type]


def test_the_api_answers_with_a_token_in_its_error_shape(server: Site) -> None:
    listed = _api(server, "GET", "plugins/")
    assert listed.status_code == 200, listed.text
    assert SLUG in listed.text
    bundle = (server.root.parent / "plugin" / f"{SLUG}.gnplugin").read_bytes()
    again = _api(server, "POST", "plugins/", files={"bundle": (f"{SLUG}.gnplugin", bundle)},
                 data={"grant": "hooks.subscribe,greeting.read"})
    assert again.status_code == 409, again.text[:2000]
    body = again.json()
    assert body["error"] == "plugin_exists" and body["detail"] and "problems" in body


def test_the_api_serves_the_hooks_the_site_declared(server: Site) -> None:
    catalogue = _api(server, "GET", "hooks/")
    assert catalogue.status_code == 200, catalogue.text[:2000]
    declared = {hook["name"]: hook["kind"] for hook in catalogue.json()}
    assert declared == {"greeting.hello": "filter", "log": "filter"}, declared


def test_the_api_schema_and_docs_load(server: Site) -> None:
    schema = _api(server, "GET", "schema/")
    assert schema.status_code == 200, schema.text[:2000]
    assert "openapi" in schema.text[:200]
    docs = _api(server, "GET", "docs/")
    assert docs.status_code == 200, docs.text[:2000]
    assert "swagger" in docs.text.lower()


def test_the_sites_own_drf_endpoint_keeps_drfs_error_format(server: Site) -> None:
    answer = requests.get(server.url + "/api/mine/", timeout=30)
    assert answer.status_code == 404
    assert answer.json() == {"detail": "no such greeting"}


def test_the_live_log_streams_a_line_the_plugin_logs(server: Site) -> None:
    """Signed in as staff through the admin, open the log page, follow its WebSocket."""
    browser = requests.Session()
    login = server.url + "/admin/login/"
    browser.get(login, timeout=30)
    signed_in = browser.post(login, timeout=30, data={
        "username": "admin", "password": PASSWORD, "next": "/admin/",
        "csrfmiddlewaretoken": browser.cookies["csrftoken"]}, headers={"Referer": login})
    assert signed_in.url.endswith("/admin/"), signed_in.text[:500]
    page = browser.get(f"{server.url}{PREFIX}_/plugins/logs/{SLUG}/", timeout=30)
    assert page.status_code == 200, page.text[:500]
    ws_path = re.search(r'data-ws-path="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())

    async def follow() -> list[str]:
        ws_url = server.url.replace("http://", "ws://") + ws_path
        async with websockets.connect(ws_url, origin=server.url, additional_headers={"Cookie": cookie},
                                      open_timeout=30) as ws:  # type: ignore[arg-type]
            requests.get(server.url + "/", timeout=30)  # the view fires the hook the plugin logs on
            seen: list[str] = []
            while not any(LOG_MESSAGE in line for line in seen):
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                seen += [json.dumps(line) for line in message.get("lines", [])]
            return seen

    assert any(LOG_MESSAGE in line for line in asyncio.run(follow()))
