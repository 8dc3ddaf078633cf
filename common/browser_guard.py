"""Which addresses a headless browser may reach: every connection it opens passes through ``NetGuard``.

The rules are ``common.netguard``'s (the ones web_access fetches by): http(s) only, no ambiguous
hosts, and no loopback, private, link-local (cloud metadata) or other non-public address unless the
server's allow-list setting names it. The browser is launched with ``NetGuard.launch_options``: all
its traffic (http, https, ws, wss, redirect hops, sub-resources, loopback included) goes through
the guard's local SOCKS5 proxy (``common.browser_proxy``), which resolves each name once, checks
every address and connects to a checked address itself, so a name that answers differently on a
later lookup (DNS rebinding) reaches nothing the check did not see. What the proxy cannot see,
``file:`` URLs of pages opened from a file, goes through ``router`` and the server's allowed roots.
WebRTC is held to proxied connections (no direct UDP).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from common.browser_proxy import BrowserProxy, last_failure
from common.errors import InvalidInput
from common.logging import get_logger
from common.netguard import BlockedURL, NetPolicy, Resolver, check_url, checked_addresses, system_resolve

if TYPE_CHECKING:
    from playwright.async_api import Route

log = get_logger(__name__)

#: Decides whether a page may load a ``file:`` URL (the server checks it against its allowed roots).
FileGuard = Callable[[str], bool]

#: The URLs ``router`` handles (Playwright matches the pattern itself, so other requests cost nothing).
FILE_URLS = re.compile(r"^file:", re.IGNORECASE)

#: Chromium flags of a guarded browser: WebRTC may not open UDP around the proxy.
GUARD_ARGS = ("--webrtc-ip-handling-policy=disable_non_proxied_udp",)

_PROXY_FAILURE = "net::ERR_SOCKS_CONNECTION_FAILED"
# A redirect hop or another host the page asked for: the proxy's record is under that host, not this URL's.
_UNKNOWN_FAILURE = (
    "net::ERR_BLOCKED_BY_CLIENT or unreachable (the network guard refused or could not open a connection, "
    "e.g. a redirect to a blocked address; the server log says which)"
)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_reason(url: str, reason: str) -> str:
    """``reason`` (a Playwright error naming a net:: code) with the proxy's account of why ``url`` failed.

    Every connection goes through the proxy, so Chromium reports any refused or failed connection as
    ``net::ERR_SOCKS_CONNECTION_FAILED``; the proxy remembers the real cause (the guard's refusal,
    ``net::ERR_CONNECTION_REFUSED``, ...) by host and port.
    """
    if _PROXY_FAILURE not in reason:
        return reason
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() in ("https", "wss") else 80)
    except ValueError:
        return reason
    why = last_failure(parts.hostname or "", port) or _UNKNOWN_FAILURE
    return reason.replace(_PROXY_FAILURE, why)


class NetGuard:
    """Checks URLs against a ``NetPolicy``, resolving names with ``resolve`` (injectable for tests)."""

    def __init__(
        self, policy: NetPolicy | None = None, *, setting: str = "ALLOW_HOSTS", resolve: Resolver = system_resolve
    ) -> None:
        """``setting`` names the allow-list setting in error messages (e.g. ``UI_TESTING_ALLOW_HOSTS``)."""
        self.policy = policy or NetPolicy()
        self.setting = setting
        self._resolve = resolve
        self.proxy = BrowserProxy(self.policy, resolve=resolve)

    async def launch_options(self) -> dict[str, Any]:
        """Playwright launch options that send all of the browser's traffic through the guard (starts the proxy)."""
        await self.proxy.start()
        return {"proxy": self.proxy.launch_option()}

    async def close(self) -> None:
        """Stop the proxy (after the browser closed); a later ``launch_options`` starts it again."""
        await self.proxy.close()

    async def refusal(self, url: str) -> str | None:
        """Why the browser may not request the http(s) ``url`` (the URL or any address of its host is blocked)."""
        try:
            checked = check_url(url, self.policy)
            await checked_addresses(checked.host, checked.port, self.policy, self._resolve)
        except BlockedURL as exc:
            return str(exc)
        except OSError as exc:
            return f"Could not resolve the host of {_short(url)!r} ({_short(str(exc))})."
        return None

    async def check(self, url: str) -> None:
        """Before a navigation: ``InvalidInput`` naming the allow-list setting if an http(s) ``url`` is refused."""
        if not url.lower().startswith(("http://", "https://")):
            return
        why = await self.refusal(url)
        if why is not None:
            raise InvalidInput(
                f"{why} Loopback, private and link-local addresses are opened only when {self.setting} lists them "
                '(JSON list of hosts or CIDR networks, e.g. ["127.0.0.1/32"]).'
            )

    def router(self, file_guard: FileGuard) -> Callable[[Route], object]:
        """A Playwright route handler for :data:`FILE_URLS`: a ``file:`` request loads only if ``file_guard`` allows it."""

        async def handle(route: Route) -> None:
            url = route.request.url
            if file_guard(url):
                await route.continue_()
            else:
                log.info("browser_guard.file_refused", url=url[:200])
                await route.abort("accessdenied")

        return handle
