"""Which addresses a headless browser may reach: every request it makes passes through ``NetGuard``.

The rules are ``common.netguard``'s (the ones web_access fetches by): http(s) only, no ambiguous
hosts, and no loopback, private, link-local (cloud metadata) or other non-public address unless the
server's allow-list setting names it. Allowed requests are then made by Playwright (one
redirect hop at a time, since Chromium follows redirects without asking the route) and web sockets
by Chromium; both resolve the name again themselves, so a name that answers differently on the
second lookup (DNS rebinding) is the known gap. IP literals and stable names are held to the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from common.errors import InvalidInput
from common.logging import get_logger
from common.netguard import BlockedURL, NetPolicy, Resolver, check_url, checked_addresses, system_resolve

if TYPE_CHECKING:
    from playwright.async_api import Route, WebSocketRoute

log = get_logger(__name__)

#: Schemes whose requests never leave the browser.
LOCAL_SCHEMES = ("data:", "about:", "blob:")
MAX_REDIRECTS = 10

#: Decides whether a page may load a ``file:`` URL (the server checks it against its allowed roots).
FileGuard = Callable[[str], bool]


# Playwright's fetch reports Node's socket errors; the page sees Chromium's matching net:: error.
_ABORT_CODES = (
    ("ECONNREFUSED", "connectionrefused"),
    ("ECONNRESET", "connectionreset"),
    ("ENOTFOUND", "namenotresolved"),
    ("EAI_AGAIN", "namenotresolved"),
    ("ETIMEDOUT", "timedout"),
    ("Timeout", "timedout"),
    ("EHOSTUNREACH", "addressunreachable"),
    ("ENETUNREACH", "internetdisconnected"),
)


def _abort_code(message: str) -> str:
    return next((code for marker, code in _ABORT_CODES if marker in message), "failed")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NetGuard:
    """Checks URLs against a ``NetPolicy``, resolving names with ``resolve`` (injectable for tests)."""

    def __init__(
        self, policy: NetPolicy | None = None, *, setting: str = "ALLOW_HOSTS", resolve: Resolver = system_resolve
    ) -> None:
        """``setting`` names the allow-list setting in error messages (e.g. ``UI_TESTING_ALLOW_HOSTS``)."""
        self.policy = policy or NetPolicy()
        self.setting = setting
        self._resolve = resolve

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

    def router(self, file_guard: FileGuard | None) -> Callable[[Route], object]:
        """A Playwright route handler: http(s) requests pass the rules, ``file:`` ones ``file_guard``, others abort."""

        async def handle(route: Route) -> None:
            url = route.request.url
            lower = url[:8].lower()
            if lower.startswith(LOCAL_SCHEMES):
                await route.continue_()
                return
            if lower.startswith("file:"):
                if file_guard is None or file_guard(url):
                    await route.continue_()
                else:
                    log.info("browser_guard.file_refused", url=url[:200])
                    await route.abort("accessdenied")
                return
            if not lower.startswith(("http://", "https://")):
                log.warning("browser_guard.request_refused", url=url[:200], reason="not an http(s) URL")
                await route.abort("blockedbyclient")
                return
            await self._fetch(route, url)

        return handle

    async def web_socket(self, ws: WebSocketRoute) -> None:
        """A Playwright web-socket route handler: connects only when the http(s) form of its URL passes."""
        url = ws.url
        as_http = "http" + url[2:] if url[:3].lower() == "ws:" else "https" + url[3:]
        why = await self.refusal(as_http)
        if why is None:
            ws.connect_to_server()
            return
        log.warning("browser_guard.request_refused", url=url[:200], reason=why[:300])
        await ws.close(code=1008, reason="blocked by the network guard")

    async def _fetch(self, route: Route, url: str) -> None:
        """Make the request here, one redirect hop at a time, checking every hop before it is dialed.

        Chromium follows redirects of a request it was allowed to make without asking the route again,
        so the browser is never handed a 3xx: the final answer is fulfilled at the first URL.
        """
        # Heavy: playwright loads on first browser use only.
        from playwright.async_api import Error as PWError

        for _hop in range(MAX_REDIRECTS + 1):
            why = await self.refusal(url)
            if why is not None:
                log.warning("browser_guard.request_refused", url=url[:200], reason=why[:300])
                await route.abort("blockedbyclient")
                return
            try:
                response = await route.fetch(url=url, max_redirects=0)
            except PWError as exc:
                log.info("browser_guard.request_failed", url=url[:200], error=str(exc)[:200])
                await route.abort(_abort_code(str(exc)))
                return
            location = response.headers.get("location")
            if not (300 <= response.status < 400 and location):
                await route.fulfill(response=response)
                return
            url = urljoin(url, location)
        log.info("browser_guard.too_many_redirects", url=url[:200])
        await route.abort("failed")
