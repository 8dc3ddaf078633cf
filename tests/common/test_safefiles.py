"""The safe-files kit (common.safefiles): roots, no-follow reads and writes, scans and globs."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from common import safefiles
from common.errors import InvalidInput, NotFound
from common.safefiles import (
    Glob,
    Roots,
    compile_globs,
    open_regular,
    read_bytes,
    read_text,
    scan,
    write_atomic,
)

CAP = 1 << 20
#: The setting an error message names as the place to add a folder.
SETTING = "EXAMPLE_ALLOWED_ROOTS"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Roots]:
    """An allowed root with a few files, and an outside folder holding a secret."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "docs" / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "a.md").write_text("alpha")
    (root / "docs" / "sub" / "b.md").write_text("beta")
    (root / "notes.txt").write_text("notes")
    (outside / "secret.txt").write_text("SECRET")
    return root, outside, Roots([root], setting=SETTING)


def _listing(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder`` with its content (files) or link target (links), to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full.is_symlink():
                out[str(full)] = "-> " + os.readlink(full)
            elif full.is_file():
                out[str(full)] = full.read_bytes()
    return out


# --- roots ---------------------------------------------------------------------------------------


def test_a_relative_path_is_read_relative_to_the_first_root(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    assert read_text("docs/a.md", roots, max_bytes=CAP) == "alpha"
    assert roots.resolve("docs/sub/../a.md", kind="file") == root.resolve() / "docs" / "a.md"
    assert roots.root_of(root / "docs") == root.resolve()
    assert Roots(str(root), setting=SETTING).paths == (root.resolve(),)  # one folder, not one root per character


def test_dot_dot_segments_that_leave_the_root_are_refused(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    for path in ("../outside/secret.txt", str(root / "docs" / ".." / ".." / "outside" / "secret.txt")):
        with pytest.raises(InvalidInput, match="outside the allowed folders") as err:
            read_bytes(path, roots, max_bytes=CAP)
        assert SETTING in str(err.value)


def test_absolute_paths_outside_the_roots_are_refused_for_reading_and_writing(tree: tuple[Path, Path, Roots]) -> None:
    _, outside, roots = tree
    before = _listing(outside)
    with pytest.raises(InvalidInput, match="outside"):
        read_bytes(outside / "secret.txt", roots, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="outside"):
        write_atomic(outside / "new.txt", roots, "x", max_bytes=CAP)
    with pytest.raises(InvalidInput, match="outside"):
        roots.root_of("/etc/passwd")
    assert _listing(outside) == before


def test_a_missing_path_inside_is_not_found_but_outside_it_says_outside(tree: tuple[Path, Path, Roots]) -> None:
    root, outside, roots = tree
    with pytest.raises(NotFound):
        read_bytes(root / "nope.md", roots, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="outside"):
        read_bytes(outside / "nope.md", roots, max_bytes=CAP)  # no oracle for what exists outside
    assert roots.resolve(root / "new" / "x.md", must_exist=False) == root.resolve() / "new" / "x.md"


def test_a_root_configured_through_a_link_accepts_paths_written_either_way(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.md").write_text("alpha")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    roots = Roots([tmp_path / "alias"], setting=SETTING)
    assert roots.paths == ((tmp_path / "real").resolve(),)
    assert read_text(tmp_path / "alias" / "a.md", roots, max_bytes=CAP) == "alpha"
    assert read_text(tmp_path / "real" / "a.md", roots, max_bytes=CAP) == "alpha"
    assert (
        write_atomic(tmp_path / "alias" / "b.md", roots, "b", max_bytes=CAP) == (tmp_path / "real" / "b.md").resolve()
    )


def test_missing_roots_are_dropped_and_an_empty_set_refuses_everything_naming_the_setting(tmp_path: Path) -> None:
    roots = Roots([tmp_path / "missing", "relative/dir"], setting="GRAPH_EXPORT_ROOTS")
    assert roots.paths == ()
    assert not roots
    with pytest.raises(InvalidInput, match="GRAPH_EXPORT_ROOTS"):
        roots.resolve(str(tmp_path))
    with pytest.raises(InvalidInput, match="GRAPH_EXPORT_ROOTS"):
        write_atomic(tmp_path / "x.txt", roots, "x", max_bytes=CAP)
    assert not (tmp_path / "x.txt").exists()


def test_nul_bytes_long_paths_long_names_and_tilde_are_refused_with_short_messages(
    tree: tuple[Path, Path, Roots],
) -> None:
    root, _, roots = tree
    bad = [
        str(root / "docs" / "a.md") + "\x00.txt",
        "\x00" * 5000,
        str(root) + "/" + "d/" * 2500,
        str(root) + "/" + "n" * 300,
        "~/docs/a.md",
        "~root/x",
        "",
    ]
    for path in bad:
        with pytest.raises(InvalidInput) as err:
            roots.resolve(path, must_exist=False)
        message = str(err.value)
        assert len(message) < 300, message
        assert SETTING in message or "limit" in message or "longer" in message
        assert "\x00" not in message
    with pytest.raises(InvalidInput):
        write_atomic("\x00", roots, "x", max_bytes=CAP)


def test_messages_show_at_most_eighty_characters_of_the_callers_path(tmp_path: Path) -> None:
    roots = Roots([tmp_path], setting=SETTING)
    long_outside = "/elsewhere/" + "x" * 200
    with pytest.raises(InvalidInput) as err:
        roots.resolve(long_outside)
    assert "x" * 81 not in str(err.value)
    assert "x" * 60 in str(err.value)


# --- links ---------------------------------------------------------------------------------------


def test_a_final_symlink_pointing_outside_is_refused_for_reading_and_writing(tree: tuple[Path, Path, Roots]) -> None:
    root, outside, roots = tree
    (root / "link.txt").symlink_to(outside / "secret.txt")
    before = _listing(outside)
    with pytest.raises(InvalidInput, match="outside"):
        read_bytes(root / "link.txt", roots, max_bytes=CAP)
    with pytest.raises(InvalidInput):
        write_atomic(root / "link.txt", roots, "overwritten", max_bytes=CAP)
    assert _listing(outside) == before
    assert (root / "link.txt").is_symlink()


def test_an_intermediate_symlinked_folder_pointing_outside_is_refused_for_reading_and_writing(
    tree: tuple[Path, Path, Roots],
) -> None:
    root, outside, roots = tree
    (root / "escape").symlink_to(outside, target_is_directory=True)
    before = _listing(outside)
    with pytest.raises(InvalidInput, match="outside"):
        read_text(root / "escape" / "secret.txt", roots, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="outside"):
        write_atomic(root / "escape" / "planted.txt", roots, "x", max_bytes=CAP)
    with pytest.raises(InvalidInput, match="outside"):
        scan(root / "escape", roots, include=["**"], max_files=10, max_bytes=CAP)
    assert _listing(outside) == before


def test_a_symlink_swapped_in_after_a_scan_is_not_followed(tree: tuple[Path, Path, Roots]) -> None:
    root, outside, roots = tree
    result = scan(root, roots, include=["**/*.md"], max_files=10, max_bytes=CAP)
    target = next(f for f in result.files if f.path == "docs/a.md")
    target.absolute.unlink()
    target.absolute.symlink_to(outside / "secret.txt")
    with pytest.raises(InvalidInput, match="outside"):
        read_bytes(target.absolute, roots, max_bytes=CAP)
    # the folder holding it swapped for a link, too
    sub = next(f for f in result.files if f.path == "docs/sub/b.md")
    (root / "docs" / "sub").rename(root / "moved")
    (root / "docs" / "sub").symlink_to(outside, target_is_directory=True)
    (outside / "b.md").write_text("OUTSIDE")
    with pytest.raises(InvalidInput, match="outside"):
        read_bytes(sub.absolute, roots, max_bytes=CAP)


class _SwapAfterResolve(Roots):
    """Roots whose resolve lets an 'attacker' swap a folder for a link right after the check, the race to close."""

    def __init__(self, root: Path, swap: Path, to: Path) -> None:
        super().__init__([root], setting=SETTING)
        self.swap, self.to = swap, to

    def resolve(self, path: str | os.PathLike[str], **kwargs: object) -> Path:
        real = super().resolve(path, **kwargs)  # type: ignore[arg-type]
        if not self.swap.is_symlink():
            self.swap.rename(self.swap.with_name(self.swap.name + ".moved"))
            self.swap.symlink_to(self.to, target_is_directory=True)
        return real


def test_a_folder_swapped_for_a_link_between_check_and_open_is_refused(tree: tuple[Path, Path, Roots]) -> None:
    root, outside, _ = tree
    (outside / "a.md").write_text("OUTSIDE")
    roots = _SwapAfterResolve(root, root / "docs", outside)
    with pytest.raises(InvalidInput, match="symbolic link"):
        read_bytes(root / "docs" / "a.md", roots, max_bytes=CAP)
    before = _listing(outside)
    roots = _SwapAfterResolve(root, root / "docs.moved", outside)
    with pytest.raises(InvalidInput, match="symbolic link"):
        write_atomic(root / "docs.moved" / "a.md", roots, "planted", max_bytes=CAP)
    assert _listing(outside) == before
    assert (root / "docs.moved.moved" / "a.md").read_text() == "alpha"


def test_a_symlink_inside_the_root_to_a_file_inside_is_read_through_its_real_path(
    tree: tuple[Path, Path, Roots],
) -> None:
    root, _, roots = tree
    (root / "alias.md").symlink_to(root / "docs" / "a.md")
    assert read_text(root / "alias.md", roots, max_bytes=CAP) == "alpha"
    assert roots.resolve(root / "alias.md") == (root / "docs" / "a.md").resolve()


# --- special files -------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_at_once_without_blocking(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    fifo = root / "pipe.md"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []

    def attempt() -> None:
        try:
            outcome.append(read_bytes(fifo, roots, max_bytes=CAP))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    try:
        assert not worker.is_alive(), "reading a FIFO blocked"
    finally:
        if worker.is_alive():  # release a reader stuck in open() so the test run can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert isinstance(outcome[0], InvalidInput)
    assert "FIFO" in str(outcome[0])
    with pytest.raises(InvalidInput, match="FIFO"):
        roots.resolve(fifo, kind="file")


def test_a_unix_socket_is_refused(tree: tuple[Path, Path, Roots], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, roots = tree
    monkeypatch.chdir(root)  # a relative name keeps the socket path under the 108-byte limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock.md")
        with pytest.raises(InvalidInput, match="socket"):
            read_bytes(root / "sock.md", roots, max_bytes=CAP)
        with pytest.raises(InvalidInput, match="socket"):
            write_atomic(root / "sock.md", roots, "x", max_bytes=CAP)
        assert stat.S_ISSOCK(os.lstat(root / "sock.md").st_mode)


def test_devices_are_refused_as_paths_and_through_links(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    for dev in ("/dev/zero", "/dev/null"):
        with pytest.raises(InvalidInput, match="device"):
            read_bytes(dev, Roots(["/dev"], setting=SETTING), max_bytes=CAP)
        (root / Path(dev).name).symlink_to(dev)
        with pytest.raises(InvalidInput, match="outside"):
            read_bytes(root / Path(dev).name, roots, max_bytes=CAP)
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    try:
        os.mknod(root / "zero.md", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("this container may not make device nodes")
    with pytest.raises(InvalidInput, match="device"):
        read_bytes(root / "zero.md", roots, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="device"):
        write_atomic(root / "zero.md", roots, "x", max_bytes=CAP)


def test_folders_are_refused_as_files(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    for path in (root, root / "docs"):
        with pytest.raises(InvalidInput, match="folder"):
            read_bytes(path, roots, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="folder"):
        write_atomic(root / "docs", roots, "x", max_bytes=CAP)
    with pytest.raises(InvalidInput, match="folder"):
        write_atomic(str(root) + "/", roots, "x", max_bytes=CAP)


# --- size caps -----------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_refused_and_one_at_the_cap_is_read(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    (root / "big.md").write_bytes(b"x" * 2048)
    with pytest.raises(InvalidInput, match=r"too large \(2048 bytes; limit 2047\)"):
        read_bytes(root / "big.md", roots, max_bytes=2047)
    with pytest.raises(InvalidInput, match="too large"), open_regular(root / "big.md", roots, max_bytes=100):
        pass
    assert read_bytes(root / "big.md", roots, max_bytes=2048) == b"x" * 2048
    with open_regular(root / "big.md", roots, max_bytes=2048) as f:
        assert f.read() == b"x" * 2048


def test_a_sparse_ten_gigabyte_file_is_refused_by_its_size_without_reading(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    with open(root / "huge.md", "wb") as f:
        f.truncate(10 * 1024**3)
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="too large"):
        read_bytes(root / "huge.md", roots, max_bytes=CAP)
    assert time.perf_counter() - started < 0.5
    result = scan(root, roots, include=["*.md"], max_files=10, max_bytes=CAP)
    assert ("huge.md", f"too large ({10 * 1024**3} bytes; limit {CAP})") in [(s.path, s.reason) for s in result.skipped]


def test_a_file_larger_than_its_stat_says_stops_at_the_cap(tmp_path: Path) -> None:
    # /proc files report size 0 yet have content: the same as a file that grows while it is read.
    roots = Roots(["/proc/self"], setting=SETTING)
    status = f"/proc/{os.getpid()}/status"
    assert os.stat(status).st_size == 0
    with pytest.raises(InvalidInput, match="grew past the limit of 16 bytes"):
        read_bytes(status, roots, max_bytes=16)
    with open_regular(status, roots, max_bytes=16) as f:
        assert f.read(16).startswith(b"Name:")
        with pytest.raises(InvalidInput, match="grew past"):
            f.read()
    assert read_text(status, roots, max_bytes=CAP).startswith("Name:")


# --- writing -------------------------------------------------------------------------------------


def test_write_atomic_writes_replaces_and_leaves_no_temp_files(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    written = write_atomic("export/../docs/graph.json", roots, '{"a": 1}', max_bytes=CAP)
    assert written == root.resolve() / "docs" / "graph.json"
    assert written.read_text() == '{"a": 1}'
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    write_atomic(written, roots, b"second", max_bytes=CAP, mode=0o644)
    assert written.read_bytes() == b"second"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert sorted(p.name for p in (root / "docs").iterdir()) == ["a.md", "graph.json", "sub"]


def test_write_atomic_refuses_to_replace_a_symlink_and_leaves_the_target_untouched(
    tree: tuple[Path, Path, Roots],
) -> None:
    root, _, roots = tree
    (root / "inner.md").symlink_to(root / "docs" / "a.md")  # even a link that stays inside
    with pytest.raises(InvalidInput, match="symbolic link; links are not followed; nothing was written"):
        write_atomic(root / "inner.md", roots, "overwritten", max_bytes=CAP)
    assert (root / "inner.md").is_symlink()
    assert (root / "docs" / "a.md").read_text() == "alpha"
    assert sorted(p.name for p in root.iterdir()) == ["docs", "inner.md", "notes.txt"]


def test_write_atomic_refuses_a_fifo_target_and_data_over_the_cap(tree: tuple[Path, Path, Roots]) -> None:
    root, _, roots = tree
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidInput, match="FIFO"):
        write_atomic(root / "pipe", roots, "x", max_bytes=CAP)
    with pytest.raises(InvalidInput, match="limit is 4"):
        write_atomic(root / "five.txt", roots, "12345", max_bytes=4)
    with pytest.raises(NotFound):
        write_atomic(root / "no" / "such" / "folder.txt", roots, "x", max_bytes=CAP)
    assert sorted(p.name for p in root.iterdir()) == ["docs", "notes.txt", "pipe"]


def test_write_atomic_removes_its_temp_file_when_the_rename_fails(
    tree: tuple[Path, Path, Roots], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, roots = tree

    def failing_replace(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_atomic(root / "notes.txt", roots, "new", max_bytes=CAP)
    monkeypatch.undo()
    assert (root / "notes.txt").read_text() == "notes"
    assert sorted(p.name for p in root.iterdir()) == ["docs", "notes.txt"]


# --- scanning ------------------------------------------------------------------------------------


def test_scan_lists_matching_files_sorted_and_skips_links_and_special_files_with_reasons(
    tree: tuple[Path, Path, Roots], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside, roots = tree
    (root / "docs" / "link.md").symlink_to(outside / "secret.txt")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    (outside / "hidden.md").write_text("x")
    os.mkfifo(root / "docs" / "pipe.md")
    monkeypatch.chdir(root)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("s.md")
    (root / "docs" / "big.md").write_bytes(b"x" * 100)
    (root / "docs" / "a-z.md").write_text("dash sorts before slash")
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "readme.md").write_text("x")
    (root / "docs" / "draft.md").write_text("x")
    try:
        result = scan(
            root, roots, include=["**/*.md"], exclude=["node_modules", "**/draft.md"], max_files=100, max_bytes=99
        )
    finally:
        sock.close()
    assert [f.path for f in result.files] == ["docs/a-z.md", "docs/a.md", "docs/sub/b.md"]
    assert result.files[1].absolute == root.resolve() / "docs" / "a.md"
    assert result.files[1].size == 5
    assert result.files[1].mtime_ns == os.stat(root / "docs" / "a.md").st_mtime_ns
    assert [s.as_dict() for s in result.skipped] == [
        {"path": "docs/big.md", "reason": "too large (100 bytes; limit 99)"},
        {"path": "docs/link.md", "reason": "symlink"},
        {"path": "docs/pipe.md", "reason": "fifo"},
        {"path": "linked_dir", "reason": "symlink"},
        {"path": "s.md", "reason": "socket"},
    ]
    assert result.excluded == 2  # the node_modules folder and draft.md
    assert not result.truncated


def test_scan_stops_at_max_files_in_path_order_and_says_it_was_truncated(tmp_path: Path) -> None:
    for name in ("c.md", "a/z.md", "a-b.md", "b/y.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    roots = Roots([tmp_path], setting=SETTING)
    first = scan(tmp_path, roots, include=["**/*.md"], max_files=1, max_bytes=CAP)
    assert [f.path for f in first.files] == ["a-b.md"]  # '-' sorts before '/', so before the folder a/
    assert first.truncated
    result = scan(tmp_path, roots, include=["**/*.md"], max_files=2, max_bytes=CAP)
    assert [f.path for f in result.files] == ["a-b.md", "a/z.md"]
    assert result.truncated
    full = scan(tmp_path, roots, include=["**/*.md"], max_files=4, max_bytes=CAP)
    assert [f.path for f in full.files] == ["a-b.md", "a/z.md", "b/y.md", "c.md"]
    assert not full.truncated


def test_scan_only_enters_folders_an_anchored_include_can_match(tmp_path: Path) -> None:
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "docs" / "deep" / "x.md").write_text("x")
    (tmp_path / "src" / "y.md").write_text("y")
    (tmp_path / "src" / "link").symlink_to("/etc")
    result = scan(tmp_path, Roots([tmp_path], setting=SETTING), include=["docs/**/*.md"], max_files=9, max_bytes=CAP)
    assert [f.path for f in result.files] == ["docs/deep/x.md"]
    assert result.skipped == []


def test_scan_does_not_descend_past_the_depth_limit(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * (safefiles.MAX_SCAN_DEPTH + 1))
    deep.mkdir(parents=True)
    (deep / "x.md").write_text("x")
    (deep.parent / "y.md").write_text("y")
    result = scan(tmp_path, Roots([tmp_path], setting=SETTING), include=["*.md"], max_files=9, max_bytes=CAP)
    assert [f.path for f in result.files] == ["d/" * safefiles.MAX_SCAN_DEPTH + "y.md"]
    assert [s.reason for s in result.skipped] == [f"too deep (more than {safefiles.MAX_SCAN_DEPTH} folders)"]


def test_read_text_drops_a_bom_and_replaces_invalid_bytes(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9 \xff")
    assert read_text(tmp_path / "t.txt", Roots([tmp_path], setting=SETTING), max_bytes=CAP) == "café \ufffd"
    with pytest.raises(UnicodeDecodeError):
        read_text(tmp_path / "t.txt", Roots([tmp_path], setting=SETTING), max_bytes=CAP, errors="strict")


def test_scan_refuses_a_root_outside_and_a_file_as_root(tree: tuple[Path, Path, Roots]) -> None:
    root, outside, roots = tree
    with pytest.raises(InvalidInput, match="outside"):
        scan(outside, roots, include=["**"], max_files=1, max_bytes=CAP)
    with pytest.raises(InvalidInput, match="not a folder"):
        scan(root / "notes.txt", roots, include=["**"], max_files=1, max_bytes=CAP)


# --- globs ---------------------------------------------------------------------------------------

GLOB_CASES = [
    ("*.md", "a.md", True),
    ("*.md", "x/y/a.md", True),  # no '/': the file name anywhere
    ("*.md", "a.markdown", False),
    ("**/*.md", "a.md", True),
    ("**/*.md", "x/y/a.md", True),
    ("docs/*.md", "docs/a.md", True),
    ("docs/*.md", "docs/sub/a.md", False),  # '*' does not cross '/'
    ("docs/*.md", "other/docs/a.md", False),  # a pattern with '/' is anchored
    ("docs/**", "docs/a/b/c.txt", True),
    ("docs/**", "docs", False),
    ("docs/", "docs/x.md", True),  # a trailing '/' means everything inside
    ("/docs/*.md", "docs/a.md", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**/b", "ab", False),
    ("**/node_modules/**", "x/node_modules/y/z.js", True),
    ("**/node_modules/**", "node_modules/z.js", True),
    ("?.md", "a.md", True),
    ("?.md", "ab.md", False),
    ("a?b", "a/b", False),  # '?' does not match '/'
    ("[abc].md", "b.md", True),
    ("[abc].md", "d.md", False),
    ("[!abc].md", "d.md", True),
    ("[!abc].md", "a.md", False),
    ("[a-c]x", "bx", True),
    ("[]]x", "]x", True),
    ("[x", "[x", True),  # an unclosed '[' is a literal
    ("\\*.md", "*.md", True),
    ("\\*.md", "a.md", False),
    ("**.md", "a/b.md", True),  # '**' inside a name is '*', and the pattern is unanchored
    ("*", ".hidden", True),
    ("README", "docs/README", True),
    ("docs/README", "README", False),
    ("**", "any/thing/at/all", True),
    ("./docs/*.md", "docs/a.md", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOB_CASES)
def test_globs_match_like_gitignore_style_globs(pattern: str, path: str, expected: bool) -> None:
    assert Glob(pattern).match(path) is expected


def test_a_glob_set_matches_when_any_pattern_does_and_knows_which_folders_it_covers() -> None:
    globs = compile_globs(["*.py", "build/**", "**/cache"])
    assert globs.match("src/x.py")
    assert not globs.match("src/x.pyc")
    assert globs.covers_dir("build")
    assert globs.covers_dir("a/b/cache")
    assert not globs.covers_dir("src")
    assert not compile_globs(["docs/*.md"]).could_match_under("src")
    assert compile_globs(["docs/*.md"]).could_match_under("docs")
    assert compile_globs("*.md").match("a.md")  # a single string is one pattern, not its characters


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("*a*a*a*a*a*a*a*a*a*b", "a" * 10_000),
        ("**/**/**/**/**/x", "a/" * 5_000 + "y"),
        ("a/**/" * 80 + "x", "a/" * 5_000),
        ("*a" * 250, "a" * 9_999 + "b"),
        ("[a-z]*" * 80 + "!", "ab" * 5_000),
    ],
)
def test_pathological_globs_finish_fast_on_long_paths(pattern: str, path: str) -> None:
    started = time.perf_counter()
    globs = compile_globs([pattern])
    globs.match(path)
    globs.could_match_under(path)
    globs.covers_dir(path)
    assert time.perf_counter() - started < 0.5


def test_too_many_or_too_long_or_empty_patterns_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at most 100"):
        compile_globs(["*.md"] * 101)
    with pytest.raises(InvalidInput, match="at most 500") as err:
        compile_globs(["a" * 501])
    assert len(str(err.value)) < 300
    for bad in ("", "a\x00b"):
        with pytest.raises(InvalidInput):
            compile_globs([bad])
