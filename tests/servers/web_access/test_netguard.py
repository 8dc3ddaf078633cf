"""SSRF guard: every trick URL and redirect is refused before any connection to the blocked address."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import httpcore
import httpx
import pytest

from common.errors import InvalidInput
from common.netguard import BlockedURL, NetPolicy, Resolver, blocked_reason, check_url, system_resolve
from servers.web_access.fetcher import FetchFailed, FetchResult, build_client, fetch
from servers.web_access.netguard import GuardedTransport
from tests.servers.web_access.conftest import LocalServer, LoopbackDial, redirect, text

NO_ALLOW = NetPolicy()


async def get(
    url: str,
    policy: NetPolicy = NO_ALLOW,
    *,
    dial: LoopbackDial | None = None,
    resolve: Resolver = system_resolve,
    **kwargs: Any,
) -> FetchResult:
    transport = GuardedTransport(policy, dial=dial or LoopbackDial(), resolve=resolve)
    async with build_client(policy, transport=transport) as client:
        return await fetch(url, client=client, policy=policy, timeout_s=5, **kwargs)


# {p} is the port of a server on 127.0.0.1 that must never see a connection.
TRICK_URLS = [
    "http://127.0.0.1:{p}/",
    "http://2130706433:{p}/",
    "http://0177.0.0.1:{p}/",
    "http://0x7f.0.0.1:{p}/",
    "http://0x7f000001:{p}/",
    "http://127.1:{p}/",
    "http://127.0.1:{p}/",
    "http://0177.1:{p}/",
    "http://127.000.000.001:{p}/",
    "http://127.0.0.1.:{p}/",
    "http://0:{p}/",
    "http://0.0.0.0:{p}/",
    "http://localhost:{p}/",
    "http://LOCALHOST:{p}/",
    "http://localhost.:{p}/",
    "http://app.localhost:{p}/",
    "http://[::1]:{p}/",
    "http://[0:0:0:0:0:0:0:1]:{p}/",
    "http://[::ffff:127.0.0.1]:{p}/",
    "http://[::ffff:7f00:1]:{p}/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/",
    "http://[::127.0.0.1]:{p}/",
    "http://[64:ff9b::127.0.0.1]:{p}/",
    "http://[2002:7f00:1::1]:{p}/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:{p}/",
    "http://[fe80::1%25lo]:{p}/",
    "http://[::]:{p}/",
    "http://user@127.0.0.1:{p}/",
    "http://user:pass@127.0.0.1:{p}/",
    "http://example.com@127.0.0.1:{p}/",
    "http://example.com:80@127.0.0.1:{p}/",
    "http://example.com%40127.0.0.1:{p}/",
    "http://%31%32%37.0.0.1:{p}/",
    "http://example.com\\@127.0.0.1:{p}/",
    "http://127.0.0.1:{p}\\@example.com/",
    "http://１２７.０.０.１:{p}/",
    "http://127。0。0。1:{p}/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:{p}/",
    "http://loc\u200balhost:{p}/",
    "http://127.0.0.1\t:{p}/",
    "http://127.0.0.\n1:{p}/",
    "http:/127.0.0.1:{p}/",
    "http:127.0.0.1:{p}/",
    "http:///127.0.0.1:{p}/",
    "//127.0.0.1:{p}/",
    "file:///etc/passwd",
    "file://127.0.0.1/etc/passwd",
    "gopher://127.0.0.1:{p}/_GET%20/",
    "ftp://127.0.0.1:{p}/",
    "dict://127.0.0.1:{p}/",
    "data:text/plain,secret",
    "javascript:fetch('http://127.0.0.1:{p}/')",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:{p}00000/",
]
# Private and special ranges that the test must never dial at all: the guard is trusted with them only
# through the recording dialer, which never opens a socket to a non-loopback address.
OFF_MACHINE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://[fc00::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://router.lan/",
    "http://printer.local/",
]


@pytest.mark.anyio
@pytest.mark.parametrize("template", TRICK_URLS)
async def test_trick_urls_are_refused_before_any_connection(template: str, serve: Callable[..., LocalServer]) -> None:
    server = serve({"/": text("secret")})
    dial = LoopbackDial()
    with pytest.raises(InvalidInput) as caught:
        await get(template.format(p=server.port), dial=dial)
    assert isinstance(caught.value, BlockedURL), caught.value
    assert "refused" in str(caught.value)
    assert server.connections == 0
    assert dial.dialed == []


@pytest.mark.anyio
@pytest.mark.parametrize("url", OFF_MACHINE_URLS)
async def test_private_and_metadata_addresses_are_refused_without_a_dial(url: str) -> None:
    dial = LoopbackDial()
    with pytest.raises(BlockedURL):
        await get(url, dial=dial)
    assert dial.dialed == []


@pytest.mark.parametrize(
    ("address", "phrase"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("198.19.0.1", "benchmarking"),
        ("203.0.113.9", "documentation"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd12:3456::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff05::1", "multicast"),
        ("::ffff:192.168.1.1", "private (RFC 1918) address inside"),
        ("::10.0.0.1", "IPv4-compatible"),
        ("64:ff9b::7f00:1", "loopback address inside"),
        ("2002:c0a8:0101::1", "private (RFC 1918) address inside"),
        ("2001:0:53aa:64c::1", "Teredo"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_blocked_addresses_are_named_by_kind(address: str, phrase: str) -> None:
    why = blocked_reason(ipaddress.ip_address(address))
    assert why is not None
    assert phrase in why


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_are_not_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM/a?b=1#frag", "https://example.com/a?b=1"),
        ("http://example.com", "http://example.com/"),
        ("http://bücher.de/x", "http://xn--bcher-kva.de/x"),
        ("http://[2606:4700:4700:0:0:0:0:1111]:8443/", "http://[2606:4700:4700::1111]:8443/"),
        ("  http://example.com/  ", "http://example.com/"),
    ],
)
def test_plain_public_urls_pass_and_come_back_canonical(url: str, canonical: str) -> None:
    assert str(check_url(url, NO_ALLOW).url) == canonical


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("template", "allow", "reaches"),
    [
        ("http://127.0.0.1:{p}/", ["127.0.0.1/32"], True),
        ("http://127.0.0.1:{p}/", ["127.0.0.0/8"], True),
        ("http://127.0.0.1:{p}/", ["127.0.0.2/32"], False),
        ("http://127.0.0.1:{p}/", ["localhost"], False),
        ("http://[::ffff:127.0.0.1]:{p}/", ["127.0.0.1/32"], True),
        ("http://localhost:{p}/", ["localhost"], True),
        ("http://localhost:{p}/", ["127.0.0.1/32"], False),
        ("http://2130706433:{p}/", ["127.0.0.1/32"], False),
        ("http://127.1:{p}/", ["127.0.0.0/8"], False),
        ("http://user@127.0.0.1:{p}/", ["127.0.0.1/32"], False),
        ("http://127.0.0.1.:{p}/", ["127.0.0.1/32"], False),
        ("gopher://127.0.0.1:{p}/", ["127.0.0.1/32"], False),
    ],
)
async def test_the_allow_list_opens_only_what_it_names(
    template: str, allow: list[str], reaches: bool, serve: Callable[..., LocalServer]
) -> None:
    server = serve({"/": text("hello")})
    policy = NetPolicy.from_entries(allow)
    url = template.format(p=server.port)
    if reaches:
        result = await get(url, policy)
        assert result.status == 200
        assert result.body == b"hello"
        assert server.connections >= 1
    else:
        with pytest.raises(BlockedURL):
            await get(url, policy)
        assert server.connections == 0


def test_a_bad_allow_list_entry_is_an_error_naming_it() -> None:
    with pytest.raises(InvalidInput, match="not-a host"):
        NetPolicy.from_entries(["not-a host!"])


REDIRECT_TARGETS = [
    "http://127.0.0.2:{q}/",
    "//127.0.0.2:{q}/",
    "http://[::ffff:127.0.0.2]:{q}/",
    "http://2130706434:{q}/",
    "http://127.0.0.2.:{q}/",
    "http://user@127.0.0.2:{q}/",
    "http://localhost:{q}/",
    "file:///etc/passwd",
    "gopher://127.0.0.2:{q}/",
    "http://169.254.169.254/latest/meta-data/",
]


@pytest.mark.anyio
@pytest.mark.parametrize("target", REDIRECT_TARGETS)
async def test_a_redirect_from_an_allowed_host_to_a_blocked_one_is_refused(
    target: str, serve: Callable[..., LocalServer]
) -> None:
    blocked = serve({"/": text("secret")}, host="127.0.0.2")
    allowed = serve({"/start": redirect(target.format(q=blocked.port))})
    policy = NetPolicy.from_entries(["127.0.0.1/32"])
    dial = LoopbackDial()
    with pytest.raises(BlockedURL) as caught:
        await get(allowed.url("/start"), policy, dial=dial)
    assert "refused" in str(caught.value)
    assert allowed.connections == 1
    assert blocked.connections == 0
    assert [host for host, _ in dial.dialed] == ["127.0.0.1"]


@pytest.mark.anyio
async def test_a_redirect_chain_through_allowed_hosts_is_followed_hop_by_hop(serve: Callable[..., LocalServer]) -> None:
    second = serve({"/b": redirect("/c", 301), "/c": text("done")}, host="127.0.0.2")
    first = serve({"/a": redirect(second.url("/b"), 307)})
    policy = NetPolicy.from_entries(["127.0.0.1/32", "127.0.0.2/32"])
    result = await get(first.url("/a"), policy)
    assert result.body == b"done"
    assert result.final_url == second.url("/c")
    assert [(hop.url, hop.status) for hop in result.redirects] == [(first.url("/a"), 307), (second.url("/b"), 301)]


def _dns(answers: dict[str, Sequence[Sequence[str]]]) -> tuple[Resolver, list[str]]:
    """A fake resolver: each look-up of a name returns its next answer (the last one repeats)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        seq = answers[host]
        return list(seq[min(calls.count(host), len(seq)) - 1])

    return resolve, calls


PUBLIC = "93.184.215.14"


@pytest.mark.anyio
async def test_a_rebinding_name_never_reaches_loopback(serve: Callable[..., LocalServer]) -> None:
    blocked = serve({"/": text("secret")})
    internet = serve({"/": text("public page")})
    resolve, calls = _dns({"rebind.example": [[PUBLIC], ["127.0.0.1"]]})
    dial = LoopbackDial(remap={PUBLIC: ("127.0.0.1", internet.port)})
    url = f"http://rebind.example:{blocked.port}/"

    first = await get(url, dial=dial, resolve=resolve)
    assert first.body == b"public page"
    with pytest.raises(BlockedURL, match=r"resolves to 127\.0\.0\.1, which is a loopback address"):
        await get(url, dial=dial, resolve=resolve)

    assert calls == ["rebind.example", "rebind.example"], "one look-up per connection, none to 'check' first"
    assert dial.dialed == [(PUBLIC, blocked.port)], "the checked IP literal is dialed, never the name"
    assert blocked.connections == 0
    assert internet.seen[0].headers["host"] == f"rebind.example:{blocked.port}", "Host keeps the name"


@pytest.mark.anyio
async def test_a_name_with_any_blocked_address_is_refused_even_if_another_is_public(
    serve: Callable[..., LocalServer],
) -> None:
    blocked = serve({"/": text("secret")})
    resolve, _ = _dns({"mixed.example": [[PUBLIC, "127.0.0.1"]], "inside.example": [["10.0.0.5"]]})
    dial = LoopbackDial(remap={PUBLIC: ("127.0.0.1", blocked.port)})
    with pytest.raises(BlockedURL, match=r"127\.0\.0\.1"):
        await get(f"http://mixed.example:{blocked.port}/", dial=dial, resolve=resolve)
    with pytest.raises(BlockedURL, match="private"):
        await get("http://inside.example/", dial=dial, resolve=resolve)
    assert dial.dialed == []
    assert blocked.connections == 0


@pytest.mark.anyio
async def test_a_name_that_resolves_to_loopback_is_refused_at_connect_and_allowed_by_network(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve({"/": text("hi")})
    resolve, _ = _dns({"api.example": [["127.0.0.1"]]})
    with pytest.raises(BlockedURL, match="loopback"):
        await get(f"http://api.example:{server.port}/", resolve=resolve)
    assert server.connections == 0
    allowed = await get(f"http://api.example:{server.port}/", NetPolicy.from_entries(["127.0.0.1/32"]), resolve=resolve)
    assert allowed.body == b"hi"


@pytest.mark.anyio
async def test_the_transport_alone_refuses_a_request_that_skips_the_url_check(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve({"/": text("secret")})
    transport = GuardedTransport(NO_ALLOW, dial=LoopbackDial())
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        with pytest.raises(BlockedURL):
            await client.get(f"http://2130706433:{server.port}/")
        with pytest.raises(BlockedURL):
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert server.connections == 0


@pytest.mark.anyio
async def test_the_backend_resolves_a_numeric_name_and_still_refuses_it(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/": text("secret")})
    backend = GuardedTransport(NO_ALLOW).backend
    with pytest.raises(BlockedURL, match="loopback"):
        await backend.connect_tcp("2130706433", server.port, timeout=2)
    with pytest.raises(BlockedURL, match="loopback"):
        await backend.connect_tcp("localhost", server.port, timeout=2)
    assert server.connections == 0


@pytest.mark.anyio
async def test_a_name_that_does_not_resolve_is_a_clear_fetch_error() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchFailed, match=r"could not resolve host 'nowhere\.example'"):
        await get("http://nowhere.example/", resolve=nxdomain)


@pytest.mark.anyio
async def test_every_checked_address_is_tried_in_order_until_one_answers(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/": text("second address")})
    resolve, _ = _dns({"dual.example": [["::1", "127.0.0.1"]]})
    dial = LoopbackDial()
    result = await get(f"http://dual.example:{server.port}/", NetPolicy.from_entries(["dual.example"]), dial=dial, resolve=resolve)  # fmt: skip
    assert result.body == b"second address"
    assert dial.dialed == [("::1", server.port), ("127.0.0.1", server.port)]


class _SniProbe(httpcore.AsyncNetworkStream):
    """Wraps a dialed stream and records the name TLS would be started with, then stops there."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, names: list[str | None]) -> None:
        self._inner = inner
        self._names = names

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self._names.append(server_hostname)
        await self._inner.aclose()  # a real backend closes the socket when the handshake fails
        raise httpcore.ConnectError("the test stops before the TLS handshake")


class _SniDial(LoopbackDial):
    def __init__(self, remap: dict[str, tuple[str, int]]) -> None:
        super().__init__(remap)
        self.sni: list[str | None] = []

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _SniProbe(await super().connect_tcp(*args, **kwargs), self.sni)


@pytest.mark.anyio
async def test_tls_is_started_with_the_host_name_while_the_checked_ip_is_dialed(
    serve: Callable[..., LocalServer],
) -> None:
    stand_in = serve({})
    resolve, _ = _dns({"tls.example": [[PUBLIC]]})
    dial = _SniDial(remap={PUBLIC: ("127.0.0.1", stand_in.port)})
    with pytest.raises(FetchFailed):
        await get("https://tls.example/", dial=dial, resolve=resolve)
    assert dial.dialed == [(PUBLIC, 443)]
    assert dial.sni == ["tls.example"]


@pytest.mark.anyio
async def test_an_ipv6_loopback_server_is_reached_only_when_allow_listed(serve: Callable[..., LocalServer]) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    server = serve({"/": text("v6")}, host="::1")
    with pytest.raises(BlockedURL, match="loopback"):
        await get(server.url("/"))
    assert server.connections == 0
    result = await get(server.url("/"), NetPolicy.from_entries(["::1/128"]))
    assert result.body == b"v6"
