"""MEMORY_FILE_PATH: the reference server's file imported on start (once) and mirrored after changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from common.testing import wait_until
from servers.inference_enhancement import mirror
from servers.inference_enhancement.models import EntityIn, ObservationsIn, RelationKey
from servers.inference_enhancement.service import GraphService
from servers.inference_enhancement.settings import Settings
from tests.servers.inference_enhancement.conftest import OpenGraph

pytestmark = pytest.mark.anyio

ORIGINAL = "\n".join(
    [
        '{"type":"entity","name":"Ada","entityType":"person","observations":["Prefers tea","Says \\"hi\\"\\nthen leaves"]}',
        '{"type":"entity","name":"Zoë 東京","entityType":"place","observations":[]}',
        '{"type":"relation","from":"Ada","to":"Zoë 東京","relationType":"visits"}',
    ]
)


def with_file(settings: Settings, path: Path | str, **more: Any) -> Settings:
    return settings.model_copy(update={"memory_file_path": str(path), "mirror_delay_ms": 50, **more})


async def counts(svc: GraphService) -> tuple[int, int, int]:
    s = await svc.summary()
    return s["entities"], s["observations"], s["relations"]


async def exported(svc: GraphService) -> str:
    content = (await svc.export_jsonl()).content
    assert content is not None
    return content


async def test_the_file_is_imported_on_start_once_and_a_changed_file_adds_what_is_new(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    memory.write_text(ORIGINAL, encoding="utf-8")
    s = with_file(settings, memory, mirror=False)
    async with open_graph(s) as svc:
        assert await counts(svc) == (2, 2, 1)
        assert await exported(svc) == ORIGINAL
    async with open_graph(s) as svc:  # the same file again: nothing new, nothing doubled
        assert await counts(svc) == (2, 2, 1)
        await svc.delete_entities(["Zoë 東京"])
    async with open_graph(s) as svc:  # unchanged since it was imported: the deletion here stands
        assert await counts(svc) == (1, 2, 0)
    memory.write_text(
        ORIGINAL
        + "\n"
        + '{"type":"entity","name":"Ada","entityType":"person","observations":["Prefers tea","Joined in 2021"]}\n'
        + '{"type":"entity","name":"Grace","entityType":"person","observations":["Reviews migrations"]}\n'
        + '{"type":"relation","from":"Grace","to":"Ada","relationType":"mentors"}\n',
        encoding="utf-8",
    )
    async with open_graph(s) as svc:  # a changed file is merged: what is new is added, the rest kept once
        assert await counts(svc) == (3, 4, 2)
        ada = (await svc.open_nodes(["Ada"])).entities[0]
        assert ada.observations == ["Prefers tea", 'Says "hi"\nthen leaves', "Joined in 2021"]
    assert memory.read_text(encoding="utf-8").startswith(ORIGINAL)  # the mirror was off: file untouched


async def test_with_the_mirror_on_the_file_follows_every_change(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    memory.write_text(ORIGINAL, encoding="utf-8")
    os.chmod(memory, 0o644)
    before = memory.stat().st_mtime_ns
    s = with_file(settings, memory)
    async with open_graph(s) as svc:
        assert memory.stat().st_mtime_ns == before  # the graph already says what the file says: not rewritten
        await svc.create_entities([EntityIn(name="Grace", entityType="person", observations=["Line\tone"])])
        await svc.add_observations([ObservationsIn(entityName="Ada", contents=["Joined in 2021"])])
        await svc.delete_relations(
            [RelationKey.model_validate({"from": "Ada", "to": "Zoë 東京", "relationType": "visits"})]
        )
        expected = await exported(svc)
        await wait_until(lambda: memory.read_text(encoding="utf-8") == expected, timeout_s=10, what="the mirror file")
        await svc.delete_entities(["Grace"])
        # Written at exit at the latest (the delay may not have passed yet).
    text = memory.read_text(encoding="utf-8")
    assert '"Grace"' not in text
    assert text.count('"type":"entity"') == 2
    assert oct(memory.stat().st_mode & 0o777) == oct(0o644)  # the user's permissions are kept
    # No temp file left behind (the suite's data folder, with its secrets file, may sit beside it).
    assert sorted(set(os.listdir(tmp_path)) - {settings.data_dir.name}) == ["memory.jsonl"]


async def test_with_the_mirror_off_the_file_is_never_written(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    memory = tmp_path / "absent.jsonl"
    async with open_graph(with_file(settings, memory, mirror=False)) as svc:
        await svc.create_entities([EntityIn(name="Ada", entityType="person", observations=["x"])])
        await svc.mirror_idle()
    assert not memory.exists()
    async with open_graph(with_file(settings, memory)) as svc:  # mirror on: the graph appears in the file
        await svc.mirror_idle()
        assert memory.read_text(encoding="utf-8") == await exported(svc)


async def test_a_relative_path_is_taken_in_the_data_folder_and_a_link_is_followed(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    assert mirror.resolve("graphs/m.jsonl", tmp_path) == tmp_path / "graphs" / "m.jsonl"
    real = tmp_path / "real.jsonl"
    real.write_text(ORIGINAL, encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    async with open_graph(with_file(settings, link)) as svc:
        assert svc.memory_file == real
        await svc.create_entities([EntityIn(name="Grace", entityType="person", observations=[])])
        await svc.mirror_idle()
    assert link.is_symlink()  # the link stays; the file it names is rewritten
    assert '"Grace"' in real.read_text(encoding="utf-8")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_graph(with_file(settings, "relative.jsonl")) as svc:
        await svc.mirror_idle()
        expected = await exported(svc)
    assert (settings.data_dir / "relative.jsonl").read_text(encoding="utf-8") == expected
    assert '"Grace"' in expected


async def test_a_file_that_cannot_be_imported_is_left_alone_and_the_server_still_works(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.jsonl"
    broken = ORIGINAL + "\n{not json"
    memory.write_text(broken, encoding="utf-8")
    async with open_graph(with_file(settings, memory)) as svc:
        assert svc.mirror_broken is not None
        assert "line 4" in svc.mirror_broken
        await svc.create_entities([EntityIn(name="Grace", entityType="person", observations=[])])
        await svc.mirror_idle()
        assert (await svc.open_nodes(["Grace"])).entities
    assert memory.read_text(encoding="utf-8") == broken  # never overwritten: what is in it would be lost


async def test_a_file_in_a_missing_folder_is_reported_and_the_server_still_works(
    open_graph: OpenGraph, settings: Settings, tmp_path: Path
) -> None:
    async with open_graph(with_file(settings, tmp_path / "missing" / "memory.jsonl")) as svc:
        assert svc.mirror_broken is not None
        assert "does not exist" in svc.mirror_broken
        await svc.create_entities([EntityIn(name="Grace", entityType="person", observations=[])])
        await svc.mirror_idle()
    assert not (tmp_path / "missing").exists()
