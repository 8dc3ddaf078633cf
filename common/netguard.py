"""Which network destinations a server may reach: URL checks, address classification, an allow-list.

``check_url`` refuses URLs whose host could be read differently by different parsers (decimal,
octal, hex or short IPv4, percent-encoded or IDNA-mapped hosts, trailing dots, userinfo,
backslashes) and URLs that name a blocked address or an internal name outright.
``checked_addresses`` resolves a name and refuses it if *any* of its addresses is blocked.
A ``NetPolicy`` allow-list (host names and CIDR networks) opens named destinations, e.g. a local
test server. The servers that dial (web_access's transport, ui_testing's browser guard) build on these.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import anyio
import httpx
import idna

from common.errors import InvalidInput
from common.logging import get_logger

log = get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_CHARS = 8192
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_CANONICAL_IPV4 = re.compile(r"^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
# A last label of digits or 0x-hex makes WHATWG parsers read the whole host as an IPv4 number.
_NUMERIC_LABEL = re.compile(r"^(?:\d+|0x[0-9a-f]*)$")
_INTERNAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".intranet", ".lan")


def _nets(*specs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in specs)


_BLOCKED_V4 = _nets(
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private (RFC 1918) address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives here)"),
    ("172.16.0.0/12", "a private (RFC 1918) address"),
    ("192.0.0.0/24", "an IETF protocol-assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private (RFC 1918) address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("255.255.255.255/32", "the broadcast address"),
)
_BLOCKED_V6 = _nets(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address (deprecated)"),
    ("::ffff:0:0:0/96", "an IPv4-translated address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:10::/28", "an ORCHID address"),
    ("2001:20::/28", "an ORCHIDv2 address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment-routing address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


class BlockedURL(InvalidInput):
    """The URL, or an address its host resolves to, may not be fetched; the message says why."""


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64 or 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why connecting to ``ip`` is refused (a phrase like "a loopback address"), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = blocked_reason(inner)
            return f"{why} inside an IPv6 address" if why else None
        table = _BLOCKED_V6
    else:
        table = _BLOCKED_V4
    for net, why in table:
        if ip in net:
            return why
    if not ip.is_global:
        return "not a globally routable address"
    return None


def parse_ip(text: str) -> IPAddress | None:
    """An IP address written canonically (dotted quad, or IPv6 without brackets), else None."""
    if _CANONICAL_IPV4.match(text):
        return ipaddress.IPv4Address(text)
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class NetPolicy:
    """Which otherwise-blocked destinations are allowed: exact host names and CIDR networks."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> NetPolicy:
        """Build from setting entries such as ``127.0.0.1/32``, ``::1``, ``localhost``; a bad entry is an error."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if all(_LABEL.match(label) for label in entry.split(".")):
                hosts.add(entry)
            else:
                raise InvalidInput(
                    f"allow-list entry {_short(raw)!r} is neither a host name nor an IP network; "
                    "write e.g. 'localhost', '127.0.0.1/32' or 'fd00::/8'."
                )
        return cls(frozenset(hosts), tuple(networks))

    def host_allowed(self, host: str) -> bool:
        return host.lower() in self.allow_hosts

    def ip_allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in net for c in candidates for net in self.allow_networks if c.version == net.version)

    def address_refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why dialing ``ip`` for ``host`` is refused, or None when it is public or allow-listed."""
        if self.host_allowed(host) or self.ip_allowed(ip):
            return None
        return blocked_reason(ip)


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed ``check_url``: its canonical form and parts."""

    url: httpx.URL
    scheme: str
    host: str  # ASCII (punycode) host, IPv6 without brackets
    port: int
    ip: IPAddress | None = field(default=None)


def _refuse(url: str, why: str) -> BlockedURL:
    return BlockedURL(f"URL {_short(url)!r} is refused: {why}")


def _ascii_host(url: str, host: str) -> str:
    if host.isascii():
        ascii_host = host.lower()
        for label in ascii_host.split("."):
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except idna.IDNAError:
                    raise _refuse(url, "the host has an invalid punycode label.") from None
        return ascii_host
    try:
        mapped = idna.uts46_remap(host, std3_rules=True, transitional=False)
    except idna.IDNAError:
        raise _refuse(url, "the host has characters IDNA does not allow.") from None
    if mapped != host.lower() or mapped.isascii():
        raise _refuse(
            url, "the host changes under IDNA mapping (look-alike or full-width characters); write it plainly."
        )
    try:
        return idna.encode(mapped).decode("ascii")
    except idna.IDNAError:
        raise _refuse(url, "the host is not a valid internationalised domain name.") from None


def _split_authority(url: str, rest: str) -> tuple[str, str]:
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    return rest[:end], rest[end:]


def check_url(url: str, policy: NetPolicy) -> CheckedURL:
    """Refuse a URL that is ambiguous, not http(s), or names a blocked host; return its canonical form.

    Only a name's *resolved* addresses are not checked here: ``GuardedTransport`` checks them at connect.
    """
    url = url.strip()
    if not url:
        raise BlockedURL("The URL is empty; give an absolute http:// or https:// URL.")
    if len(url) > MAX_URL_CHARS:
        raise _refuse(url, f"it is longer than {MAX_URL_CHARS} characters.")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise _refuse(url, "it contains whitespace or control characters; percent-encode them.")
    if "\\" in url:
        raise _refuse(url, "it contains a backslash, which parsers read differently; percent-encode it as %5C.")
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ALLOWED_SCHEMES:
        raise _refuse(url, "only http:// and https:// URLs can be fetched.")
    if not rest.startswith("//"):
        raise _refuse(url, f"write it as {scheme}://host/path.")
    authority, tail = _split_authority(url, rest[2:])
    if "@" in authority:
        raise _refuse(url, "URLs with a user name or password (user@host) are not fetched; remove the part before '@'.")
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise _refuse(url, "the IPv6 address has no closing ']'.")
        raw_host, port_part = authority[1:close], authority[close + 1 :]
        if "%" in raw_host:
            raise _refuse(url, "IPv6 zone identifiers are not allowed.")
        try:
            ip6 = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise _refuse(url, "the bracketed host is not an IPv6 address.") from None
        host: str = ip6.compressed
        ip: IPAddress | None = ip6
    else:
        raw_host, colon, port_part = authority.partition(":")
        port_part = colon + port_part
        if not raw_host:
            raise _refuse(url, "it has no host.")
        if "%" in raw_host:
            raise _refuse(url, "the host is percent-encoded; write it plainly.")
        host = _ascii_host(url, raw_host)
        if host.endswith("."):
            raise _refuse(url, "the host ends with a dot; remove the trailing dot.")
        labels = host.split(".")
        if _NUMERIC_LABEL.match(labels[-1]):
            if not _CANONICAL_IPV4.match(host):
                raise _refuse(
                    url,
                    "the host is an IPv4 address in a non-standard notation (decimal, octal, hex or short form); "
                    "write it as four decimal numbers a.b.c.d.",
                )
            ip = ipaddress.IPv4Address(host)
        else:
            ip = None
            if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
                raise _refuse(url, "the host is not a valid host name.")
    if port_part:
        digits = port_part[1:]
        if not digits:
            port_part = ""
        elif not digits.isdigit() or len(digits) > 5 or not 0 < int(digits) < 65536:
            raise _refuse(url, "the port must be a number from 1 to 65535.")
    port = int(port_part[1:]) if port_part else (443 if scheme == "https" else 80)
    if ip is not None:
        if not policy.ip_allowed(ip) and not policy.host_allowed(host):
            why = blocked_reason(ip)
            if why:
                raise _refuse(url, f"{ip} is {why}.")
    elif not policy.host_allowed(host) and (host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES)):
        raise _refuse(url, f"{host!r} is an internal host name.")
    tail = tail.split("#", 1)[0]
    netloc = f"[{host}]" if isinstance(ip, ipaddress.IPv6Address) else host
    canonical = f"{scheme}://{netloc}{port_part}{tail or '/'}"
    try:
        parsed = httpx.URL(canonical)
    except httpx.InvalidURL as exc:
        raise _refuse(url, f"it is not a valid URL ({_short(str(exc))}).") from None
    if parsed.raw_host.decode("ascii") != host:
        raise _refuse(url, "its host is read differently by different URL parsers.")
    if (parsed.port or port) != port or parsed.userinfo:
        raise _refuse(url, "its port or user part is read differently by different URL parsers.")
    return CheckedURL(parsed, scheme, host, port, ip)


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its order, without duplicates."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


async def checked_addresses(
    host: str, port: int, policy: NetPolicy, resolve: Resolver = system_resolve
) -> list[IPAddress]:
    """Every address of ``host`` (an IP literal or a name to resolve), or BlockedURL if any one is blocked.

    A failed lookup, or one with no answers, raises OSError.
    """
    literal = host.strip("[]")
    ip = parse_ip(literal)
    if ip is not None:
        found: list[IPAddress] = [ip]
    else:
        answers = await resolve(host, port)
        found = []
        for answer in answers:
            try:
                found.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                raise BlockedURL(f"Host {_short(host)!r} resolved to something that is not an IP address.") from None
        if not found:
            raise OSError(f"host {_short(host)!r} has no addresses")
    for addr in found:
        why = policy.address_refusal(host, addr)
        if why:
            log.warning("netguard.blocked_address", host=_short(host), address=str(addr), reason=why)
            raise BlockedURL(f"Host {_short(host)!r} is refused: it resolves to {addr}, which is {why}.")
    return found
