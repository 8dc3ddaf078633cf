"""Which addresses the browser may reach: every request it makes passes through ``NetGuard``.

The rules are ``common.netguard``'s (the ones web_access fetches by): http(s) only, no ambiguous
hosts, and no loopback, private, link-local (cloud metadata) or other non-public address unless the
``UI_TESTING_ALLOW_HOSTS`` allow-list names it. Chromium resolves names itself after the check, so a
name that answers differently on a second lookup (DNS rebinding) is the known gap; IP literals and
names with stable answers are held to the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from common.errors import InvalidInput
from common.logging import get_logger
from common.netguard import BlockedURL, NetPolicy, Resolver, check_url, checked_addresses, system_resolve

if TYPE_CHECKING:
    from playwright.async_api import Route

log = get_logger(__name__)

SETTING = "UI_TESTING_ALLOW_HOSTS"
#: Schemes whose requests never leave the browser.
LOCAL_SCHEMES = ("data:", "about:", "blob:")

#: Decides whether a page may load a ``file:`` URL (the server checks it against its allowed roots).
FileGuard = Callable[[str], bool]


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NetGuard:
    """Checks URLs against a ``NetPolicy``, resolving names with ``resolve`` (injectable for tests)."""

    def __init__(self, policy: NetPolicy | None = None, *, resolve: Resolver = system_resolve) -> None:
        self.policy = policy or NetPolicy()
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
                f"{why} Loopback, private and link-local addresses are opened only when {SETTING} lists them "
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
                    log.info("ui_testing.file_refused", url=url[:200])
                    await route.abort("accessdenied")
                return
            why = await self.refusal(url) if lower.startswith(("http://", "https://")) else "not an http(s) URL"
            if why is None:
                await route.continue_()
                return
            log.warning("ui_testing.request_refused", url=url[:200], reason=why[:300])
            await route.abort("blockedbyclient")

        return handle
