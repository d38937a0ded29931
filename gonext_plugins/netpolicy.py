"""Which hosts and addresses a plugin's ``http.fetch`` may reach: the one home of that rule.

Layer 2 (no Django): the manifest check, the install dialog and ``http.fetch`` itself all ask
:func:`host_refusal` about a host as written and :func:`address_refusal` about every address a
name resolves to. Two classes of destination are refused:

- *never*: unspecified, link-local, cloud metadata, multicast, reserved and broadcast addresses
  (nothing on an intranet legitimately lives there, and the metadata services hand out the site's
  cloud credentials);
- *internal*: loopback, private (RFC 1918), shared (100.64/10), unique-local and site-local, local-use
  NAT64 and anything else not globally routable, plus IP-literal and ``localhost`` host names;
  allowed only when the site opts in with ``GONEXT_PLUGINS["HTTP_FETCH_ALLOW_PRIVATE"]``.

The tables are explicit rather than only ``ipaddress``'s ``is_global``, whose lists differ between
Python patch releases (3.11.7 calls ``64:ff9b::/96`` global). IPv4 embedded in IPv6 (mapped,
translated, 6to4, Teredo, NAT64) is judged as the IPv4 address it reaches, and the worse verdict wins.
"""

from __future__ import annotations

import ipaddress
import re
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NEVER, INTERNAL = "never", "internal"

# First match wins, so the specific entries come before the ranges that contain them.
_TABLE: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, str], ...] = tuple(
    (ipaddress.ip_network(network), verdict, reason) for network, verdict, reason in (
        ("0.0.0.0/8", NEVER, "the unspecified network (0.0.0.0 connects to this machine)"),
        ("169.254.0.0/16", NEVER, "link-local (cloud metadata lives at 169.254.169.254)"),
        ("100.100.100.200/32", NEVER, "a cloud metadata address (Alibaba Cloud)"),
        ("168.63.129.16/32", NEVER, "a cloud platform address (Azure WireServer)"),
        ("224.0.0.0/4", NEVER, "multicast"),
        ("240.0.0.0/4", NEVER, "reserved (240.0.0.0/4 and the broadcast address)"),
        ("127.0.0.0/8", INTERNAL, "loopback (this machine)"),
        ("10.0.0.0/8", INTERNAL, "private (RFC 1918)"),
        ("172.16.0.0/12", INTERNAL, "private (RFC 1918)"),
        ("192.168.0.0/16", INTERNAL, "private (RFC 1918)"),
        ("100.64.0.0/10", INTERNAL, "shared address space (carrier-grade NAT, 100.64.0.0/10)"),
        ("::/128", NEVER, "the unspecified address"),
        ("::1/128", INTERNAL, "loopback (this machine)"),
        ("fd00:ec2::254/128", NEVER, "a cloud metadata address (AWS)"),
        ("fe80::/10", NEVER, "link-local"),
        ("ff00::/8", NEVER, "multicast"),
        ("64:ff9b:1::/48", INTERNAL, "local-use NAT64 (64:ff9b:1::/48)"),
        ("::/8", NEVER, "reserved (::/8, including IPv4-compatible addresses)"),
        ("fc00::/7", INTERNAL, "unique-local"),
        ("fec0::/10", INTERNAL, "site-local"),
    )
)

_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 ::ffff:0:a.b.c.d
# Prefixes that carry an IPv4 address and nothing else (mapped, translated, well-known NAT64).
_TRANSPARENT = (ipaddress.ip_network("::ffff:0:0/96"), _IPV4_TRANSLATED, _NAT64_WELL_KNOWN)
# A host whose last label is a number (decimal, or 0x hex) is parsed as an IPv4 address by
# browsers (WHATWG URL) and by inet_aton; no real top-level domain is numeric.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$", re.IGNORECASE)


def _rfc6052_embedded(address: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address | None:
    """The IPv4 address an RFC 6052 IPv4-embedded IPv6 address carries after a /prefix_length
    prefix (bits 64-71 are the "u" octet and never carry address bits), or None when the suffix
    bits after it are not zero, so this address is not written in that layout."""
    bits = int(address)
    value = taken = 0
    position = prefix_length
    while taken < 32:
        if not 64 <= position <= 71:
            value = (value << 1) | ((bits >> (127 - position)) & 1)
            taken += 1
        position += 1
    position = max(position, 72)
    suffix = bits & ((1 << (128 - position)) - 1) if position < 128 else 0
    return ipaddress.IPv4Address(value) if suffix == 0 else None


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may lead to: mapped, translated, 6to4, Teredo (server
    and client) and NAT64 (the well-known /96 and every layout of the local-use /48)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_TRANSLATED or address in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        server, client = address.teredo
        found.extend((client, server))  # the client is where the packets go
    if address in _NAT64_LOCAL:
        layouts = (_rfc6052_embedded(address, length) for length in (48, 56, 64, 96))
        found.extend(inner for inner in layouts if inner is not None)
    return found


def _verdict(address: IPAddress) -> tuple[str, str] | None:
    """(NEVER or INTERNAL, why) for one address on its own, or None when it is globally routable."""
    for network, verdict, reason in _TABLE:
        if address.version == network.version and address in network:
            return verdict, reason
    if not address.is_global:
        return INTERNAL, "not globally routable"
    return None


def classify(address: IPAddress) -> tuple[str, str] | None:
    """The worst verdict over an address and every IPv4 address embedded in it."""
    verdicts: list[tuple[str, str]] = []
    embedded = embedded_ipv4(address)
    # Mapped, translated and well-known NAT64 addresses are only another way to reach the embedded
    # IPv4 address: judge that alone.
    transparent = any(address in network for network in _TRANSPARENT)
    own = None if transparent else _verdict(address)
    for inner in embedded:  # first: naming the embedded address says more than the IPv6 range
        verdict = _verdict(inner)
        if verdict is not None:
            verdicts.append((verdict[0], f"{verdict[1]}, as the IPv4 address {inner} embedded in {address}"))
    if own is not None:
        verdicts.append(own)
    if not verdicts:
        return None
    return next((v for v in verdicts if v[0] == NEVER), verdicts[0])


def address_refusal(address: str | IPAddress, *, allow_private: bool) -> str | None:
    """Why ``http.fetch`` may not connect to ``address`` (a string may carry an IPv6 %zone), or
    None when it may. ``allow_private`` is the site's opt-in: it lifts only the *internal* class."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])
    verdict = classify(address)
    if verdict is None or (verdict[0] == INTERNAL and allow_private):
        return None
    return f"{address} is {verdict[1]}"


def canonical_ipv4(host: str) -> str | None:
    """What inet_aton (and so the system resolver) makes of a numeric host such as ``127.1`` or
    ``0x7f000001``, or None when it is not an IPv4 address in any spelling."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def is_local_name(host: str) -> bool:
    """``localhost`` and its subdomains always mean this machine (RFC 6761)."""
    return host == "localhost" or host.endswith(".localhost")


def host_refusal(host: str, *, allow_private: bool) -> str | None:
    """Why a host name as written (lowercase, no port, no trailing dot) may not be a fetch target,
    or None. Obfuscated numeric spellings are refused always: they hide an address from the person
    reading the manifest. IP literals and ``localhost`` need the opt-in, and even then an address of
    the *never* class is refused."""
    host = host.rstrip(".").lower()
    try:
        address: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        if not allow_private:
            return (f"{host} is an IP address; list the host by its name (IP hosts are allowed only when "
                    "the site sets GONEXT_PLUGINS['HTTP_FETCH_ALLOW_PRIVATE'])")
        return address_refusal(address, allow_private=True)
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        meant = canonical_ipv4(host)
        shown = f"the IP address {meant} in an obfuscated spelling" if meant else \
            "read as an IP address by browsers and resolvers, since its last label is a number"
        return f"{host} is {shown}; a host must be a name such as api.example.com"
    if is_local_name(host) and not allow_private:
        return (f"{host} names this machine (loopback); it is allowed only when the site sets "
                "GONEXT_PLUGINS['HTTP_FETCH_ALLOW_PRIVATE']")
    return None


def split_host(entry: str) -> tuple[str, str]:
    """An ``http.allowedHosts`` entry as (host, port as written, '' when none): the one rule for
    ``name``, ``name:port``, a bracketed IPv6 literal with an optional port (``[::1]:8080``) and a
    bare IPv6 literal (``::1``, which has no port). The host comes back without brackets."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") > 1:
        return entry, ""
    host, _, port = entry.partition(":")
    return host, port


def is_ip_host(host: str) -> bool:
    """Whether a host as written is an IP literal or a name for this machine: what the install
    dialog flags, since such a host reaches the site's own network rather than a public service."""
    host = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return is_local_name(host) or bool(_NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]))
    return True
