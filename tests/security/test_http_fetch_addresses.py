"""``http.fetch`` never reaches the site's own network (issue #13, class 9).

A plugin granted ``http.fetch`` for a host must not reach loopback, private, shared, link-local,
unique-local, multicast, reserved or unspecified addresses, whatever the spelling of the host
(``2130706433``, ``0x7f000001``, ``127.1``, ``localhost``) and whatever a name resolves to (IPv4
embedded in IPv6 included). Sites on an intranet opt in with ``HTTP_FETCH_ALLOW_PRIVATE``; even then
link-local and cloud metadata addresses stay out of reach.

Real sockets throughout: a local HTTP server on 127.0.0.1 that must never receive a refused request,
the real ``http_fetch``, real bundles and the real admin dialog. Names that no DNS knows are answered
by the resolver hook at the one place ``http.fetch`` resolves
(``host_functions.http_fetch.resolve_host``); the connect that follows is real.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from gonext_plugins import bundle, netpolicy
from gonext_plugins.admin.presenters import describe_bundle
from gonext_plugins.builtin_host import FetchDenied, http_fetch
from gonext_plugins.errors import ManifestError
from gonext_plugins.host_functions import http_fetch as fetch_module
from gonext_plugins.models import Plugin
from tests import test_builtin_host
from tests.api.helpers import assert_error
from tests.conftest import guest_wasm
from tests.test_admin import (  # noqa: F401  (manager and users are fixtures)
    admin_url,
    manager,
    marker_manifest,
    refusal,
    signed_bundle,
    upload,
    users,
)
from tests.test_builtin_host import ERROR, _Server, call, logged, plugin  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db  # no test here needs real commits
server = test_builtin_host.server  # the fixture: a local HTTP server that counts its hits

ALLOW = "HTTP_FETCH_ALLOW_PRIVATE"
# Every way of writing 127.0.0.1 that inet_aton (and so getaddrinfo) accepts, and names for it.
LOOPBACK_SPELLINGS = ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "0x7f.0.0.1", "127.0.1",
                      "localhost", "LOCALHOST", "localhost.", "127.0.0.1",
                      "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54"]  # fullwidth, IDNA-mapped


def _teredo(server: str, client: str) -> str:
    """A Teredo address (2001::/32) whose client, the host it leads to, is ``client``."""
    value = (0x20010000 << 96) | (int(ipaddress.IPv4Address(server)) << 64) \
        | (~int(ipaddress.IPv4Address(client)) & 0xFFFFFFFF)
    return str(ipaddress.IPv6Address(value))


# (address a name resolves to, words the refusal must name). Each is refused with the opt-in off.
INTERNAL_ADDRESSES = [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"), ("fd12:3456::1", "unique-local"), ("fec0::1", "site-local"),
    ("198.18.0.1", "not globally routable"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a00:1", "private"),  # NAT64 well-known prefix
    ("64:ff9b:1::a00:1", "10.0.0.1"), ("64:ff9b:1::5db8:d822", "local-use NAT64"),  # NAT64 local-use
    ("2002:7f00:1::1", "loopback"), ("2002:a00:1::1", "private"),  # 6to4
    (_teredo("10.0.0.1", "127.0.0.1"), "127.0.0.1"),  # Teredo
]
# Refused even with the opt-in on.
NEVER_ADDRESSES = [
    ("169.254.169.254", "link-local"), ("100.100.100.200", "metadata"), ("fd00:ec2::254", "metadata"),
    ("168.63.129.16", "platform"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b:1::a9fe:a9fe", "link-local"), ("2002:a9fe:a9fe::1", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("::7f00:1", "reserved"),
]


def handle(*hosts: str) -> SimpleNamespace:
    """What ``http_fetch`` reads of a loaded plugin: its slug and its granted hosts. Used for hosts
    a manifest can no longer list (a plugin installed before this rule existed)."""
    return SimpleNamespace(name="demo", context=SimpleNamespace(slug="demo", hosts=hosts), limits=None)


@pytest.fixture
def allow_private(settings: Any) -> None:
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: True}


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``answer(name, [addresses, ...], ...)``: the resolver answers ``name`` with the next list on
    each lookup (the last one repeats) and the system resolver for every other name. Returns the
    log of names looked up."""
    lookups: list[str] = []
    system = fetch_module.resolve_host

    def install(name: str, *answers: list[str]) -> list[str]:
        pending = list(answers)

        def resolve(host: str, port: int) -> list[Any]:
            lookups.append(host)
            if host != name:
                return system(host, port)
            addresses = pending.pop(0) if len(pending) > 1 else pending[0]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                     "", (a, port, 0, 0) if ":" in a else (a, port)) for a in addresses]

        monkeypatch.setattr(fetch_module, "resolve_host", resolve)
        return lookups

    return install


# --- the manifest ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "says"), [
    ("2130706433", "obfuscated spelling"), ("0x7f000001", "obfuscated spelling"), ("127.1", "obfuscated"),
    ("0177.0.0.1", "obfuscated"), ("example.123", "last label is a number"),
    ("127.0.0.1", "is an IP address"), ("10.0.0.1:8080", "is an IP address"),
    ("100.100.100.200", "metadata"), ("localhost", "names this machine"),
    ("localhost:8000", "names this machine"), ("admin.localhost", "names this machine"),
])
def test_manifest_refuses_ip_literal_obfuscated_and_localhost_hosts(  # type: ignore[no-untyped-def]
        make_bundle, host: str, says: str) -> None:
    with pytest.raises(ManifestError) as caught:
        make_bundle(capabilities=["http.fetch"], http={"allowedHosts": ["api.example.com", host]})
    assert caught.value.code == "bad_manifest"
    problems = dict(caught.value.problems)
    assert list(problems) == ["$.http.allowedHosts[1]"] and says in problems["$.http.allowedHosts[1]"]


def test_with_the_opt_in_ip_hosts_install_but_never_obfuscated_or_metadata_ones(  # type: ignore[no-untyped-def]
        make_bundle, allow_private) -> None:
    fine = ["127.0.0.1:8000", "10.0.0.5", "localhost:8080", "intranet.example.com"]
    assert make_bundle(capabilities=["http.fetch"], http={"allowedHosts": fine}).manifest.allowed_hosts \
        == tuple(fine)
    for host, says in [("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"), ("169.254.169.254", "link-local"),
                       ("100.100.100.200", "metadata"), ("0.0.0.0", "unspecified")]:
        with pytest.raises(ManifestError) as caught:
            make_bundle(capabilities=["http.fetch"], http={"allowedHosts": [host]})
        assert says in dict(caught.value.problems)["$.http.allowedHosts[0]"]


# --- fetch: spellings of this machine -------------------------------------------------------------


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_fetch_never_reaches_loopback_by_any_spelling(server: _Server, spelling: str) -> None:
    as_listed = spelling.encode("idna").decode("ascii").lower().rstrip(".")  # as a manifest writes it
    granted = handle(f"{as_listed}:{server.port}")
    with pytest.raises(FetchDenied) as caught:
        http_fetch(granted, {"url": f"http://{spelling}:{server.port}/ok"})
    assert caught.value.code == "http_fetch_denied"
    assert server.hits == []


def test_an_installed_loopback_host_stops_working_when_the_opt_in_is_turned_off(  # type: ignore[no-untyped-def]
        plugin, server: _Server, settings, caplog) -> None:  # noqa: F811
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: True}
    demo = plugin(caps=("http.fetch",), hosts=(f"127.0.0.1:{server.port}",))
    assert call(demo, "http.fetch", {"url": server.url("/ok")})["body"] == "hello"
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: False}
    assert call(demo, "http.fetch", {"url": server.url("/ok")}) == ERROR
    assert server.hits == ["/ok"]
    assert logged(caplog, "demo", "127.0.0.1", "IP address")


# --- fetch: what a name resolves to ---------------------------------------------------------------


@pytest.mark.parametrize(("address", "says"), INTERNAL_ADDRESSES + NEVER_ADDRESSES)
def test_fetch_refuses_a_name_that_resolves_inside(answer, server: _Server, address: str, says: str) -> None:  # type: ignore[no-untyped-def]
    answer("intranet.example.test", [address])
    with pytest.raises(FetchDenied) as caught:
        http_fetch(handle(f"intranet.example.test:{server.port}"),
                   {"url": f"http://intranet.example.test:{server.port}/ok"})
    assert says in caught.value.message and "HTTP_FETCH_ALLOW_PRIVATE" in caught.value.message
    assert server.hits == []


def test_one_inside_address_refuses_the_whole_name(answer, server: _Server) -> None:  # type: ignore[no-untyped-def]
    answer("mixed.example.test", ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(FetchDenied, match="loopback"):
        http_fetch(handle(f"mixed.example.test:{server.port}"), {"url": f"http://mixed.example.test:{server.port}/ok"})
    assert server.hits == []


@pytest.mark.parametrize(("address", "says"), NEVER_ADDRESSES)
def test_the_opt_in_never_opens_metadata_link_local_or_reserved(  # type: ignore[no-untyped-def]
        answer, allow_private, server: _Server, address: str, says: str) -> None:
    answer("intranet.example.test", [address])
    with pytest.raises(FetchDenied, match=says):
        http_fetch(handle(f"intranet.example.test:{server.port}"),
                   {"url": f"http://intranet.example.test:{server.port}/ok"})
    assert server.hits == []


def test_fetch_connects_to_the_address_it_checked_and_rechecks_each_redirect(  # type: ignore[no-untyped-def]
        answer, allow_private, server: _Server) -> None:
    """``rebind.example.test`` is unknown to DNS: the fetch only works if the connect goes to the
    address the check saw, with the name kept as the Host header. The second lookup (for the
    same-host redirect) answers the metadata address, and the redirect is refused."""
    lookups = answer("rebind.example.test", ["127.0.0.1"], ["169.254.169.254"])
    granted = handle(f"rebind.example.test:{server.port}")
    echoed = http_fetch(granted, {"url": f"http://rebind.example.test:{server.port}/echo"})
    assert f'"host": "rebind.example.test:{server.port}"' in echoed["body"]
    assert lookups == ["rebind.example.test"]  # one lookup per request: nothing resolves it again
    with pytest.raises(FetchDenied, match="link-local"):
        http_fetch(granted, {"url": f"http://rebind.example.test:{server.port}/redirect?to=/ok"})
    assert server.hits == ["/echo"]  # the redirect's hop is checked afresh and refused


def test_intranet_addresses_are_reachable_with_the_opt_in(answer, allow_private, server: _Server) -> None:  # type: ignore[no-untyped-def]
    answer("intranet.example.test", ["::ffff:127.0.0.1"])
    result = http_fetch(handle(f"intranet.example.test:{server.port}"),
                        {"url": f"http://intranet.example.test:{server.port}/ok"})
    assert result["body"] == "hello" and server.hits == ["/ok"]


# --- the setting: off by default, warned about when on ---------------------------------------------


def _check_ids() -> set[str]:
    return {message.id for message in checks.run_checks() if message.id and message.id.startswith("gonext")}


def test_the_opt_in_is_off_by_default_and_warned_about_when_on(settings) -> None:  # type: ignore[no-untyped-def]
    assert "gonext_plugins.W005" not in _check_ids()
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: True}
    ids = _check_ids()
    assert "gonext_plugins.W005" in ids and "gonext_plugins.E002" not in ids
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: "yes"}
    assert "gonext_plugins.E003" in _check_ids()


# --- the install dialog ---------------------------------------------------------------------------


def test_install_dialog_flags_ip_and_localhost_hosts(  # type: ignore[no-untyped-def]
        publisher: Any, manager: Client, settings) -> None:  # noqa: F811
    hosts = ["api.example.com", "10.0.0.5:8080", "localhost"]
    raw = signed_bundle(publisher.private_key, optionalCapabilities=["http.fetch"],
                        http={"allowedHosts": hosts})
    page = refusal(upload(manager, admin_url("plugin_install"), raw))  # off: refused, with the reason
    assert "10.0.0.5 is an IP address" in page and "localhost names this machine" in page
    settings.GONEXT_PLUGINS = {**settings.GONEXT_PLUGINS, ALLOW: True}
    dialog = manager.get(upload(manager, admin_url("plugin_install"), raw)["Location"]).content.decode()
    assert 'data-internal-host="10.0.0.5:8080"' in dialog and 'data-internal-host="localhost"' in dialog
    assert 'data-internal-host="api.example.com"' not in dialog and "api.example.com" in dialog


@pytest.mark.parametrize(("entry", "split"), [
    ("api.example.com", ("api.example.com", "")), ("api.example.com:8443", ("api.example.com", "8443")),
    ("10.0.0.5:8080", ("10.0.0.5", "8080")), ("[::1]:8080", ("::1", "8080")), ("[fd00::5]", ("fd00::5", "")),
    ("::1", ("::1", "")),
])
def test_one_rule_splits_an_allowed_host_and_its_port(entry: str, split: tuple[str, str]) -> None:
    """The manifest check, http.fetch and the install dialog all split entries with this."""
    assert netpolicy.split_host(entry) == split


def test_install_dialog_flags_ipv6_literal_hosts(publisher: Any) -> None:
    """Before: ``[::1]:8080`` was cut at its first colon into ``[``, which is no IP host, and the
    dialog showed loopback unflagged. The manifest pattern refuses brackets today; the dialog must
    not depend on it (a manifest stored under an older or looser rule)."""
    raw = signed_bundle(publisher.private_key, optionalCapabilities=["http.fetch"],
                        http={"allowedHosts": ["api.example.com"]})
    checked = bundle.read(raw, require_signature=False)
    hosts = ("api.example.com", "[::1]:8080", "[fd00::5]", "::1", "[2001:db8::1]:443")
    described = describe_bundle(dataclasses.replace(
        checked, manifest=dataclasses.replace(checked.manifest, allowed_hosts=hosts)))
    assert described["allowed_hosts"] == hosts
    assert described["internal_hosts"] == list(hosts[1:])  # IP literals all: the site's own network or not


# --- the API --------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0x7f000001:8000", "10.0.0.5"])
def test_api_install_of_an_ip_host_bundle_is_400_bad_manifest_and_writes_nothing(
        publisher: Any, host: str) -> None:
    manifest = marker_manifest(optionalCapabilities=["http.fetch"],
                               http={"allowedHosts": ["api.example.com", host]})
    # Written by hand: pack() and sign() already refuse the obfuscated spelling.
    raw = bundle._write_zip({bundle.MANIFEST: bundle._manifest_bytes(manifest),
                             bundle.WASM: guest_wasm("marker_guest")})
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root", "root@example.com", "pw"))
    upload_file = SimpleUploadedFile("p.gnplugin", raw)
    response = client.post("/api/plugins/", {"bundle": upload_file, "grant": ["hooks.subscribe"]},
                           format="multipart")
    data = assert_error(response, 400, "bad_manifest")
    assert [p["path"] for p in data["problems"]] == ["$.http.allowedHosts[1]"], data
    assert not Plugin.objects.exists()
