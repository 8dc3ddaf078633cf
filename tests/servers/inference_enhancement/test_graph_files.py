"""import/export of memory.jsonl only inside INFERENCE_ENHANCEMENT_FILE_ROOTS, through the safe-files kit."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from common.errors import InvalidInput, SuiteError
from common.testing import call_fails as fail
from servers.inference_enhancement.server import build
from servers.inference_enhancement.service import GraphService
from servers.inference_enhancement.settings import Settings
from tests.servers.inference_enhancement.conftest import OpenGraph

pytestmark = pytest.mark.anyio

LINES = [
    '{"type":"entity","name":"Ada","entityType":"person","observations":["Prefers tea"]}',
    '{"type":"entity","name":"Billing","entityType":"team","observations":[]}',
    '{"type":"relation","from":"Ada","to":"Billing","relationType":"leads"}',
]
SECRET = "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "shadow").write_text(SECRET, encoding="utf-8")
    return folder


@pytest.fixture
async def svc(open_graph: OpenGraph, settings: Settings, root: Path) -> AsyncIterator[GraphService]:
    """The service allowed to use ``root`` only."""
    async with open_graph(settings.model_copy(update={"file_roots": [root]})) as opened:
        yield opened


async def _refused(call: object, *expected: str) -> str:
    """The message of the SuiteError the awaitable raises, which must contain every ``expected`` part."""
    with anyio.fail_after(10):  # a FIFO opened for writing would block forever
        with pytest.raises(SuiteError) as caught:
            await call  # type: ignore[misc]
    text = str(caught.value)
    for part in expected:
        assert part in text, text
    assert "hashhash" not in text, text
    assert "Prefers tea" not in text, text
    return text


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_without_file_roots_the_tools_refuse_paths_naming_the_setting_and_content_still_works(
    settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "out.jsonl"
    async with Client(build(settings)) as c:
        await fail(c, "export_memory_jsonl", {"path": str(target)}, "INFERENCE_ENHANCEMENT_FILE_ROOTS")
        await fail(c, "import_memory_jsonl", {"path": "/etc/shadow"}, "INFERENCE_ENHANCEMENT_FILE_ROOTS")
        imported = await c.call_tool("import_memory_jsonl", {"content": "\n".join(LINES)})
        assert not imported.is_error
        exported = await c.call_tool("export_memory_jsonl", {})
        assert exported.structured_content is not None
        assert exported.structured_content["content"] == "\n".join(LINES)
    assert not target.exists()


async def test_an_export_outside_the_roots_is_refused_and_writes_nothing(
    svc: GraphService, root: Path, outside: Path
) -> None:
    victim = outside / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    for path in (str(victim), f"{root}/../outside/victim.txt", str(outside / "new.jsonl")):
        await _refused(svc.export_jsonl(path=path), "outside the allowed folders", "INFERENCE_ENHANCEMENT_FILE_ROOTS")
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert _listing(outside) == ["shadow", "victim.txt"]


@pytest.mark.parametrize("where", ["inside", "outside"])
async def test_an_export_onto_a_symlink_is_refused_and_its_target_is_untouched(
    svc: GraphService, root: Path, outside: Path, where: str
) -> None:
    target = (root if where == "inside" else outside) / "target.jsonl"
    target.write_text("original", encoding="utf-8")
    link = root / "memory.jsonl"
    link.symlink_to(target)
    await svc.import_jsonl(content="\n".join(LINES))
    await _refused(svc.export_jsonl(path=str(link)))
    assert link.is_symlink()
    assert target.read_text(encoding="utf-8") == "original"
    assert [p for p in _listing(root) if p.endswith(".tmp")] == []


async def test_an_export_onto_a_fifo_or_a_device_is_refused_without_blocking(svc: GraphService, root: Path) -> None:
    fifo = root / "pipe.jsonl"
    os.mkfifo(fifo)
    await _refused(svc.export_jsonl(path=str(fifo)), "FIFO", "nothing was written")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    await _refused(svc.import_jsonl(path=str(fifo)), "FIFO")
    if os.geteuid() == 0:  # only root may make a device node
        device = root / "null.jsonl"
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        await _refused(svc.export_jsonl(path=str(device)), "device", "nothing was written")
        assert stat.S_ISCHR(device.lstat().st_mode)
    folder = root / "folder.jsonl"
    folder.mkdir()
    await _refused(svc.export_jsonl(path=str(folder)), "folder")
    assert [p for p in _listing(root) if p.endswith(".tmp")] == []


async def test_an_export_inside_a_root_replaces_the_file_atomically_in_the_reference_layout(
    svc: GraphService, root: Path
) -> None:
    await svc.import_jsonl(content="\n".join(LINES))
    (root / "sub").mkdir()
    target = root / "sub" / "memory.jsonl"
    target.write_text("old export", encoding="utf-8")
    exported = await svc.export_jsonl(path=str(target))
    assert exported.path == str(target.resolve())
    assert target.read_bytes() == "\n".join(LINES).encode("utf-8")
    assert _listing(root / "sub") == ["memory.jsonl"]  # no temp file left behind
    relative = await svc.export_jsonl(path="relative.jsonl")  # relative to the first root
    assert relative.path == str((root / "relative.jsonl").resolve())
    assert _listing(root) == ["relative.jsonl", "sub"]


async def test_an_import_outside_the_roots_is_refused_without_reading_it(
    svc: GraphService, root: Path, outside: Path
) -> None:
    for path in ("/etc/shadow", str(outside / "shadow"), f"{root}/../outside/shadow"):
        text = await _refused(svc.import_jsonl(path=path), "outside the allowed folders")
        assert "line 1" not in text, text  # the file was never parsed
        assert "JSON" not in text, text
    assert (await svc.read_graph()).entities == []


async def test_an_import_through_a_symlink_to_outside_is_refused(svc: GraphService, root: Path, outside: Path) -> None:
    (root / "memory.jsonl").symlink_to(outside / "shadow")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    for path in (root / "memory.jsonl", root / "linked" / "shadow"):
        text = await _refused(svc.import_jsonl(path=str(path)), "outside the allowed folders")
        assert "symbolic links" in text, text
        assert "line 1" not in text, text
    assert (await svc.read_graph()).entities == []


async def test_files_over_the_size_limit_are_neither_imported_nor_exported(
    open_graph: OpenGraph, settings: Settings, root: Path
) -> None:
    small = settings.model_copy(update={"file_roots": [root], "import_max_bytes": 1_024})
    big = root / "big.jsonl"
    big.write_text("\n".join([LINES[0]] * 30), encoding="utf-8")
    async with open_graph(small) as svc:
        await _refused(svc.import_jsonl(path=str(big)), "too large", "INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES")
        assert (await svc.read_graph()).entities == []
        await svc.import_jsonl(
            content="\n".join(f'{{"type":"entity","name":"e{i}","entityType":"t"}}' for i in range(40))
        )
        await _refused(
            svc.export_jsonl(path=str(root / "out.jsonl")), "limit", "INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES"
        )
    assert _listing(root) == ["big.jsonl"]


async def test_a_long_path_is_shown_as_an_80_character_prefix(svc: GraphService, outside: Path) -> None:
    long = str(outside / ("x" * 200) / "memory.jsonl")
    text = await _refused(svc.export_jsonl(path=long))
    assert long[:80] in text, text
    assert long[:81] not in text, text
    with pytest.raises(InvalidInput) as caught:
        await svc.import_jsonl(path=long)
    assert long[:81] not in str(caught.value)
