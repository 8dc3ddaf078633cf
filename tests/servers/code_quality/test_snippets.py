"""Code given as text: names checked before anything is written, a private folder removed afterwards."""

from __future__ import annotations

import stat

import pytest

from common.errors import InvalidInput
from servers.code_quality.snippets import MAX_BYTES, MAX_FILES, encode_files, remove_scratch, write_scratch


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../up.py",
        "a/../../up.py",
        "a//b.py",
        "./a.py",
        "a/",
        "sp ace.py",
        "back\\slash.py",
        "x" * 201,
    ],
)
def test_a_name_that_is_not_a_plain_relative_path_is_refused_with_what_to_give(name: str) -> None:
    with pytest.raises(InvalidInput, match="relative path"):
        encode_files({name: "x = 1\n"})


def test_empty_too_many_too_large_and_file_folder_clashes_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        encode_files({})
    with pytest.raises(InvalidInput, match=f"at most {MAX_FILES}"):
        encode_files({f"f{i}.py": "" for i in range(MAX_FILES + 1)})
    with pytest.raises(InvalidInput, match="bytes"):
        encode_files({"a.py": "x" * (MAX_BYTES // 2), "b.py": "é" * (MAX_BYTES // 4 + 1)})
    with pytest.raises(InvalidInput, match="both a file and a folder"):
        encode_files({"pkg": "", "pkg/mod.py": ""})


def test_the_files_are_written_to_a_private_folder_that_is_removed_afterwards() -> None:
    encoded = encode_files({"app.py": "print('é')\n", "pkg/sub/mod.py": "x = 1\n"})
    root = write_scratch(encoded)
    try:
        assert (root / "app.py").read_bytes() == "print('é')\n".encode()
        assert (root / "pkg" / "sub" / "mod.py").read_text() == "x = 1\n"
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
    finally:
        remove_scratch(root)
    assert not root.exists()
