"""Web search providers behind one interface: SearXNG (JSON API) and Brave Search (API key).

Providers are configured by the operator, not chosen by the model, so their requests go through a
plain client (a self-hosted SearXNG usually lives on a private address the SSRF guard refuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from common.errors import InvalidInput, SuiteError
from servers.web_access.settings import Settings

MAX_TITLE = 300
MAX_SNIPPET = 1000


class SearchFailed(SuiteError):
    """The provider did not answer usefully; the message says what happened."""


@dataclass(frozen=True)
class Hit:
    title: str
    url: str
    snippet: str


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    def host(self) -> str: ...

    async def search(self, client: httpx.AsyncClient, query: str, limit: int, timeout_s: float) -> list[Hit]: ...


def _clean(text: Any, limit: int) -> str:
    return " ".join(str(text or "").split())[:limit]


def _hits(items: Any, snippet_key: str, limit: int) -> list[Hit]:
    if not isinstance(items, list):
        raise SearchFailed("The search provider's answer has no result list.")
    out: list[Hit] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        url = str(item.get("url") or "")
        if not url.startswith(("http://", "https://")) or url in seen or len(url) > 4000:
            continue
        seen.add(url)
        out.append(Hit(_clean(item.get("title"), MAX_TITLE) or url, url, _clean(item.get(snippet_key), MAX_SNIPPET)))
        if len(out) >= limit:
            break
    return out


async def _get_json(client: httpx.AsyncClient, name: str, url: str, timeout_s: float, **kw: Any) -> Any:
    try:
        response = await client.get(url, timeout=timeout_s, **kw)
    except httpx.TimeoutException:
        raise SearchFailed(f"{name} did not answer within {timeout_s:g} s; try again later.") from None
    except httpx.HTTPError as exc:
        raise SearchFailed(f"{name} could not be reached: {type(exc).__name__}.") from None
    if response.status_code == 429:
        raise SearchFailed(f"{name} is rate limiting (HTTP 429); wait and try again.")
    if response.status_code in (401, 403):
        raise SearchFailed(f"{name} refused the request (HTTP {response.status_code}); check its key or settings.")
    if response.status_code != 200:
        raise SearchFailed(f"{name} answered HTTP {response.status_code}.")
    try:
        return response.json()
    except ValueError:
        raise SearchFailed(
            f"{name} did not answer JSON (for SearXNG, enable the json format in settings.yml)."
        ) from None


@dataclass(frozen=True)
class Searxng:
    base_url: str
    name: str = "searxng"

    def host(self) -> str:
        return httpx.URL(self.base_url).host

    async def search(self, client: httpx.AsyncClient, query: str, limit: int, timeout_s: float) -> list[Hit]:
        url = self.base_url.rstrip("/") + "/search"
        data = await _get_json(client, "SearXNG", url, timeout_s, params={"q": query, "format": "json"})
        return _hits(data.get("results") if isinstance(data, dict) else None, "content", limit)


@dataclass(frozen=True)
class Brave:
    api_key: str
    url: str
    name: str = "brave"

    def host(self) -> str:
        return httpx.URL(self.url).host

    async def search(self, client: httpx.AsyncClient, query: str, limit: int, timeout_s: float) -> list[Hit]:
        headers = {"X-Subscription-Token": self.api_key, "Accept": "application/json"}
        params: dict[str, str | int] = {"q": query, "count": min(limit, 20)}
        data = await _get_json(client, "Brave Search", self.url, timeout_s, params=params, headers=headers)
        web = data.get("web") if isinstance(data, dict) else None
        return _hits(web.get("results") if isinstance(web, dict) else [], "description", limit)


NOT_CONFIGURED = (
    "No web search provider is configured. Set WEB_ACCESS_SEARXNG_URL to a SearXNG instance with the json "
    "format enabled, or WEB_ACCESS_BRAVE_API_KEY to a Brave Search API key, then restart the server."
)


def configured_provider(settings: Settings) -> Provider:
    """The provider the settings choose; InvalidInput saying how to configure one when none is."""
    searxng = Searxng(settings.searxng_url) if settings.searxng_url else None
    brave = Brave(settings.brave_api_key.get_secret_value(), settings.brave_url) if settings.brave_api_key else None
    if settings.search_provider == "searxng":
        if searxng is None:
            raise InvalidInput("WEB_ACCESS_SEARCH_PROVIDER is searxng but WEB_ACCESS_SEARXNG_URL is not set.")
        return searxng
    if settings.search_provider == "brave":
        if brave is None:
            raise InvalidInput("WEB_ACCESS_SEARCH_PROVIDER is brave but WEB_ACCESS_BRAVE_API_KEY is not set.")
        return brave
    chosen: Provider | None = searxng or brave
    if chosen is None:
        raise InvalidInput(NOT_CONFIGURED)
    return chosen
