"""Image retention of ui_testing on a real database and Chromium: what the prune keeps and what it deletes."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from common.runtime import open_deps
from common.testing import create_database, drop_database
from servers.ui_testing.images import encode_png, store_png
from servers.ui_testing.service import UiTestingService
from servers.ui_testing.settings import Settings
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

VIEW = "400x300"


def tiny_png(rgb: tuple[int, int, int]) -> bytes:
    """A 1x1 PNG, written straight to disk as an image no row knows."""
    from PIL import Image

    return encode_png(Image.new("RGB", (1, 1), rgb))


@pytest.fixture(scope="module")
def settings(pg_cluster: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = create_database(pg_cluster)
    base = tmp_path_factory.mktemp("uit-retention")
    try:
        yield Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=SecretStr(url),
            redis_url=SecretStr(redis_url),
            redis_prefix=f"t{base.name[-8:].replace('-', '')}",
            data_dir=base / "data",
            log_level="WARNING",
            embedding_model="hash-384",
            allow_hosts=["127.0.0.1/32"],
            keep_captures=2,
            keep_runs=1,
            check_wait_s=30,
        )
    finally:
        drop_database(pg_cluster, url)


@pytest.fixture(scope="module")
async def svc(settings: Settings) -> AsyncIterator[UiTestingService]:
    async with open_deps("ui_testing", settings) as deps, UiTestingService.open(deps, settings) as service:
        yield service


def exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


def age_s(path: str) -> float:
    return time.time() - Path(path).stat().st_mtime


def word(w: str) -> str:
    return page(f"<h1>Retention</h1><p>The word is <b>{w}</b>.</p><button id='go'>Go</button>")


async def capture_ids(svc: UiTestingService) -> set[int]:
    return {r["id"] for r in await svc.db.fetch("SELECT id FROM ui_testing.captures")}


async def test_prune_keeps_baselines_the_newest_captures_and_the_kept_runs_and_deletes_the_rest(
    svc: UiTestingService, site: Site
) -> None:
    # Page captures: four versions of one page, the first one the baseline; three comparisons.
    caps = []
    for w in ("one", "two", "three", "four"):
        url = site.put("/r", word(w))
        caps.append(await svc.capture(url, page_key="r", viewport=VIEW, thumbnail=True))
    await svc.set_baseline(capture_id=caps[0].id, page_key=None, viewport=None, approve=False)
    diffs = [await svc.compare(capture_id=c.id) for c in caps[1:]]
    assert all(exists(d.diff_path) for d in diffs)

    # A check run three times: passes twice, then fails after its capture step.
    scenario = {
        "viewport": {"width": 400, "height": 300},
        "steps": [
            {"action": "goto", "url": site.base + "/flow-r"},
            {"action": "capture", "name": "page"},
            {"action": "assert_text", "selector": "b", "text": "alpha"},
        ],
    }
    await svc.save_check("retention", scenario)
    runs: list[Any] = []
    for w in ("alpha", "alpha", "beta"):
        site.put("/flow-r", word(w) + f"<p>{len(runs)}</p>")
        runs.append(await svc.run_check("retention"))
    assert [r.status for r in runs] == ["passed", "passed", "failed"]
    run_caps = {
        r.id: {x["id"] for x in await svc.db.fetch("SELECT id FROM ui_testing.captures WHERE run_id = $1", r.id)}
        for r in runs
    }
    assert all(len(v) == 1 for v in run_caps.values())

    # Files no row knows: one old, one just written.
    old_orphan = store_png(tiny_png((1, 2, 3)), svc.root)
    stale = time.time() - 7200
    os.utime(old_orphan.path, (stale, stale))
    new_orphan = store_png(tiny_png((4, 5, 6)), svc.root)

    before = await capture_ids(svc)
    # Within the grace period nothing goes but the old orphan file.
    assert await svc.prune_images() == (0, 0, 1)
    assert not exists(old_orphan.path)
    assert await capture_ids(svc) == before

    captures, pruned_diffs, files = await svc.prune_images(grace_s=0)

    after = await capture_ids(svc)
    gone = before - after
    # Page key "r": capture 2 (not the baseline, not among the newest two) goes; 1 (baseline), 3, 4 stay.
    assert caps[1].id in gone
    assert {caps[0].id, caps[2].id, caps[3].id} <= after
    # Check runs: the newest (failed) and the last passing run keep their captures; the first loses it.
    assert run_caps[runs[0].id] <= gone
    assert run_caps[runs[1].id] | run_caps[runs[2].id] <= after
    assert captures == len(gone) == 2
    # The oldest comparison's diff image is dropped from its run and from the disk.
    assert pruned_diffs == 1
    assert not await svc.db.fetchval("SELECT details ? 'diff_path' FROM ui_testing.runs WHERE id = $1", diffs[0].run_id)
    assert diffs[0].diff_path is not None
    assert not exists(diffs[0].diff_path)
    assert all(exists(d.diff_path) for d in diffs[1:])
    # Kept rows still point at files; the removed capture's image and thumbnail are gone; orphans too.
    for row in await svc.db.fetch("SELECT path, thumb_path FROM ui_testing.captures"):
        assert exists(row["path"])
        assert row["thumb_path"] is None or exists(row["thumb_path"])
    assert not exists(caps[1].path)
    assert not exists(new_orphan.path)
    assert files >= 3
    # Nothing is left to do, and comparing with the baseline still works.
    assert await svc.prune_images(grace_s=0) == (0, 0, 0)
    assert (await svc.compare(capture_id=caps[3].id)).capture_id == caps[3].id


async def test_an_image_reused_by_a_new_capture_is_fresh_again(svc: UiTestingService, site: Site) -> None:
    url = site.put("/reuse", word("same"))
    first = await svc.capture(url, page_key="reuse", viewport=VIEW)
    stale = time.time() - 7200
    os.utime(first.path, (stale, stale))
    await svc.capture(url, page_key="reuse", viewport=VIEW)
    assert age_s(first.path) < 600
