"""The RFC 9111 rules of the page cache, without a network or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servers.web_access.freshness import cache_control, evaluate, merge_304, reusable

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DATE = "Sun, 06 Dec 2026 12:00:00 GMT"


def test_cache_control_directives_are_parsed_case_insensitively_with_quoted_arguments() -> None:
    assert cache_control('Max-Age=60, no-cache="Set-Cookie", PUBLIC') == {
        "max-age": "60",
        "no-cache": "Set-Cookie",
        "public": None,
    }
    assert cache_control(None) == {}


def test_max_age_wins_over_expires_and_age_counts_against_it() -> None:
    policy = evaluate(
        200, {"cache-control": "max-age=600", "expires": "Sun, 06 Dec 2026 13:00:00 GMT", "date": DATE}, NOW
    )
    assert policy.fresh_until == NOW + timedelta(seconds=600)
    aged = evaluate(200, {"cache-control": "max-age=600", "age": "100"}, NOW)
    assert aged.fresh_until == NOW + timedelta(seconds=500)
    assert evaluate(200, {"cache-control": "max-age=60", "age": "90"}, NOW).fresh_until is None


def test_expires_minus_date_gives_the_lifetime_and_an_invalid_expires_means_stale() -> None:
    fresh = evaluate(200, {"expires": "Sun, 06 Dec 2026 12:10:00 GMT", "date": DATE}, NOW)
    assert fresh.fresh_until == NOW + timedelta(minutes=10)
    assert evaluate(200, {"expires": "0", "date": DATE}, NOW).fresh_until is None


def test_last_modified_gives_a_heuristic_tenth_capped_at_a_day_for_allowed_statuses_only() -> None:
    ten_days = {"last-modified": "Thu, 26 Nov 2026 12:00:00 GMT", "date": DATE}
    assert evaluate(200, ten_days, NOW).fresh_until == NOW + timedelta(days=1)
    one_hour = {"last-modified": "Sun, 06 Dec 2026 11:00:00 GMT", "date": DATE}
    assert evaluate(200, one_hour, NOW).fresh_until == NOW + timedelta(minutes=6)
    assert evaluate(500, one_hour, NOW).fresh_until is None


def test_no_cache_always_revalidates_and_no_store_is_never_reused() -> None:
    no_cache = evaluate(200, {"cache-control": "no-cache, max-age=600", "etag": '"a"'}, NOW)
    assert no_cache.storable
    assert no_cache.fresh_until is None
    assert no_cache.etag == '"a"'
    no_store = evaluate(200, {"cache-control": "no-store", "last-modified": DATE}, NOW)
    assert not no_store.storable
    assert no_store.last_modified == DATE
    assert not reusable(fresh_until=None, checked_at=NOW, storable=False, now=NOW, max_age_s=3600)


def test_the_callers_max_age_overrides_the_response_freshness() -> None:
    checked = NOW - timedelta(seconds=30)
    until = NOW + timedelta(hours=1)
    assert reusable(fresh_until=until, checked_at=checked, storable=True, now=NOW, max_age_s=None)
    assert reusable(fresh_until=until, checked_at=checked, storable=True, now=NOW, max_age_s=60)
    assert not reusable(fresh_until=until, checked_at=checked, storable=True, now=NOW, max_age_s=0)
    later = NOW + timedelta(hours=2)
    assert not reusable(fresh_until=until, checked_at=checked, storable=True, now=later, max_age_s=None)
    assert reusable(fresh_until=None, checked_at=checked, storable=True, now=NOW, max_age_s=60)


def test_a_304_updates_the_stored_headers_except_the_content_ones() -> None:
    stored = {"etag": '"a"', "cache-control": "max-age=0", "content-type": "text/html", "date": DATE}
    merged = merge_304(stored, {"Cache-Control": "max-age=300", "Content-Type": "text/plain", "ETag": '"a"'})
    assert merged == {"etag": '"a"', "cache-control": "max-age=300", "content-type": "text/html", "date": DATE}
