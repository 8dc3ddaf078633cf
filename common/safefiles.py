"""Safe file access for every path a tool reads or writes: allowed roots, no-follow opens, size caps, globs.

A path from a caller is checked (NUL bytes, length, ``~``), normalised, resolved and kept inside one of
the allowed roots. Files are then opened by walking from the root one component at a time with
``O_NOFOLLOW`` relative to the parent's descriptor, so a symlink swapped in after the check is refused
instead of followed; only regular files are read, their size is checked before the first byte is read,
and reads stop at the cap. Writes go to a temp file in the same folder and are renamed over the target.
Globs are matched by a set-of-states simulation, so no pattern can make matching slow.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from common.errors import InvalidInput, NotFound, SuiteError
from common.logging import get_logger

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = get_logger(__name__)

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_SHOWN_CHARS = 80
MAX_PATTERN_CHARS = 500
MAX_PATTERNS = 100
MAX_SCAN_DEPTH = 100
READ_CHUNK = 1 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO swapped in after the type check returns at once instead of waiting for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Kind = Literal["file", "dir", "any"]

_WHY = {
    "folder": "is a folder, not a file",
    "symlink": "is a symbolic link; links are not followed",
    "fifo": "is a FIFO (named pipe), not a regular file",
    "socket": "is a socket, not a regular file",
    "device": "is a device, not a regular file",
    "special file": "is not a regular file",
}


def shown(raw: str) -> str:
    """A caller's path for a message: at most 80 characters, non-printables as '?', quoted."""
    head = "".join(c if c.isprintable() else "?" for c in raw[:MAX_SHOWN_CHARS])
    more = f"… ({len(raw)} characters)" if len(raw) > MAX_SHOWN_CHARS else ""
    return f"'{head}'{more}"


def kind_of(mode: int) -> str:
    """'file', 'folder', 'symlink', 'fifo', 'socket', 'device' or 'special file' for an ``st_mode``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _text_of(path: str | os.PathLike[str], setting: str) -> str:
    """The caller's path as text after the checks that need no file system: type, NUL, length, '~'."""
    raw = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(raw, str):
        raise InvalidInput(f"A path must be text; give a folder or file inside {setting}.")
    if "\x00" in raw:
        raise InvalidInput(f"Path {shown(raw)} contains a NUL byte; give a plain path inside {setting}.")
    if not raw.strip():
        raise InvalidInput(f"The path is empty; give a folder or file inside {setting}.")
    try:
        encoded = os.fsencode(raw)
    except UnicodeEncodeError:
        raise InvalidInput(f"Path {shown(raw)} is not valid text; give a plain path inside {setting}.") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidInput(f"Path {shown(raw)} is {len(encoded)} bytes long; the limit is {MAX_PATH_BYTES}.")
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise InvalidInput(f"Path {shown(raw)} has a name longer than {MAX_NAME_BYTES} bytes; shorten it.")
    if raw.startswith("~"):
        raise InvalidInput(
            f"Path {shown(raw)} starts with '~', which is not expanded; give the full path in {setting}."
        )
    return raw


def _normpath(path: str) -> str:
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


class Roots:
    """The folders a server may read and write, from one setting; every caller's path goes through here."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], setting: str) -> None:
        self.setting = setting
        kept: list[Path] = []
        # one folder given alone is one root, not a list of one-character roots
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        for given in items:
            raw = os.fspath(given)
            reason = None
            try:
                expanded = os.path.expanduser(raw)
                real = os.path.realpath(expanded)
                if not os.path.isabs(expanded):
                    reason = "not an absolute path"
                elif not os.path.isdir(real):
                    reason = "does not exist or is not a folder"
            except (ValueError, OSError) as exc:
                reason = f"cannot be resolved: {exc}"
            if reason is not None:
                log.warning("allowed_root_dropped", setting=setting, root=raw, reason=reason)
                continue
            if Path(real) not in kept:
                kept.append(Path(real))
        self.paths: tuple[Path, ...] = tuple(kept)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __repr__(self) -> str:
        return f"Roots({[str(p) for p in self.paths]!r}, setting={self.setting!r})"

    def _listed(self) -> str:
        names = [str(p) for p in self.paths[:3]]
        return ", ".join(names) + (f" and {len(self.paths) - 3} more" if len(self.paths) > 3 else "")

    def _outside(self, raw: str, via_link: bool) -> InvalidInput:
        via = " (after resolving symbolic links)" if via_link else ""
        return InvalidInput(
            f"Path {shown(raw)} is outside the allowed folders{via} ({self._listed()}); add its folder to {self.setting}."
        )

    def normalise(self, path: str | os.PathLike[str]) -> str:
        """The caller's path checked, made absolute (relative to the first root) and ``..`` removed lexically."""
        raw = _text_of(path, self.setting)
        if not self.paths:
            raise InvalidInput(
                f"File access is disabled: set {self.setting} to a JSON list of folders this server may use, "
                'e.g. ["/home/me/docs"].'
            )
        return _normpath(raw if raw.startswith("/") else os.path.join(self.paths[0], raw))

    def _containing(self, path: str) -> Path | None:
        """The deepest root that holds the absolute, normalised ``path``, or None."""
        best: Path | None = None
        candidate = Path(path)
        for root in self.paths:
            if candidate.is_relative_to(root) and (best is None or len(root.parts) > len(best.parts)):
                best = root
        return best

    def resolve(self, path: str | os.PathLike[str], *, kind: Kind = "any", must_exist: bool = True) -> Path:
        """The real path (links resolved) of ``path``, which lies inside one root, or InvalidInput/NotFound.

        ``kind`` checks what exists there ('file' means a regular file); with ``must_exist=False`` a
        missing path is accepted (its existing part is still resolved and must stay inside a root).
        """
        lexical = self.normalise(path)
        raw = os.fspath(path)
        real = os.path.realpath(lexical)
        if self._containing(real) is None:
            raise self._outside(raw, via_link=self._containing(lexical) is not None)
        try:
            st: os.stat_result | None = os.stat(real)
        except FileNotFoundError:
            if must_exist:
                raise NotFound(f"{shown(raw)} does not exist; check the path (folders in {self.setting}).") from None
            st = None
        except OSError as exc:
            raise InvalidInput(f"{shown(raw)} cannot be resolved: {exc.strerror}.") from None
        if st is not None and kind == "file" and not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{shown(raw)} {_WHY[kind_of(st.st_mode)]}.")
        if st is not None and kind == "dir" and not stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"{shown(raw)} is not a folder.")
        return Path(real)

    def root_of(self, path: str | os.PathLike[str]) -> Path:
        """The (deepest) allowed root holding the absolute ``path``; InvalidInput when none does."""
        raw = os.fspath(path)
        found = self._containing(_normpath(raw)) if os.path.isabs(raw) else None
        if found is None:
            raise self._outside(raw, via_link=False)
        return found


# --- opening without following links -------------------------------------------------------------


def _refusal(dir_fd: int, name: str, exc: OSError, show: str) -> SuiteError:
    """A clear error for a failed open of ``name`` under ``dir_fd``."""
    if exc.errno == errno.ENOENT:
        return NotFound(f"{show} does not exist.")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
        try:
            what = kind_of(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            what = "special file"
        if what == "symlink":
            return InvalidInput(f"{show} goes through a symbolic link, which is not followed; give the real path.")
        if what != "folder":
            return InvalidInput(f"{show}: a part of the path {_WHY.get(what, 'is not a regular file')}.")
    return InvalidInput(f"{show} cannot be opened: {exc.strerror}.")


def _open_dir_chain(root: Path, parts: Sequence[str], show: str) -> int:
    """A directory descriptor for ``root/parts...``, opened one name at a time without following links."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise InvalidInput(f"The allowed folder holding {show} cannot be opened: {exc.strerror}.") from None
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(fd, part, exc, show) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _too_large(show: str, size: int, limit: int) -> InvalidInput:
    return InvalidInput(f"{show} is too large ({size} bytes; limit {limit}).")


def _open_file_fd(path: str | os.PathLike[str], roots: Roots, max_bytes: int) -> tuple[int, str]:
    """A read-only descriptor of the regular file at ``path`` (size already under the cap), and its shown name."""
    real = roots.resolve(path, kind="any", must_exist=True)
    show = shown(os.fspath(path))
    root = roots.root_of(real)
    parts = real.relative_to(root).parts
    if not parts:
        raise InvalidInput(f"{show} {_WHY['folder']}.")
    dir_fd = _open_dir_chain(root, parts[:-1], show)
    try:
        name = parts[-1]
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _refusal(dir_fd, name, exc, show) from None
        # Checked before opening, because merely opening a device can have effects (a tape rewinds).
        if not stat.S_ISREG(before.st_mode):
            raise InvalidInput(f"{show} {_WHY[kind_of(before.st_mode)]}.")
        if before.st_size > max_bytes:
            raise _too_large(show, before.st_size, max_bytes)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise _refusal(dir_fd, name, exc, show) from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{show} {_WHY[kind_of(st.st_mode)]}.")
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise InvalidInput(f"{show} was replaced while being opened; try again.")
        if st.st_size > max_bytes:
            raise _too_large(show, st.st_size, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, show


def _grew(show: str, limit: int) -> InvalidInput:
    return InvalidInput(f"{show} grew past the limit of {limit} bytes while being read.")


class _CappedReader(io.RawIOBase):
    """Reads at most ``limit`` bytes of a descriptor; data beyond the cap raises instead of being returned."""

    def __init__(self, fd: int, limit: int, show: str) -> None:
        super().__init__()
        self._fd = fd
        self._left = limit
        self._limit = limit
        self._show = show

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._left <= 0:
            if os.read(self._fd, 1):
                raise _grew(self._show, self._limit)
            return 0
        data = os.read(self._fd, min(len(view), self._left))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str], roots: Roots, *, max_bytes: int) -> Iterator[BinaryIO]:
    """A binary reader of the regular file at ``path`` inside ``roots``, never through a link.

    FIFOs, sockets, devices, folders and links are refused with the reason; a file over ``max_bytes``
    is refused before anything is read, and reading past the cap (the file grew) raises InvalidInput.
    """
    fd, show = _open_file_fd(path, roots, max_bytes)
    reader = io.BufferedReader(_CappedReader(fd, max_bytes, show))
    try:
        yield reader
    finally:
        reader.close()


def read_bytes(path: str | os.PathLike[str], roots: Roots, *, max_bytes: int) -> bytes:
    """The content of the regular file at ``path`` (see ``open_regular`` for what is refused)."""
    fd, show = _open_file_fd(path, roots, max_bytes)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            # One byte past the cap is asked for, to tell "exactly at the cap" from "grew past it".
            block = os.read(fd, min(READ_CHUNK, max_bytes - total + 1))
            if not block:
                return b"".join(chunks)
            total += len(block)
            if total > max_bytes:
                raise _grew(show, max_bytes)
            chunks.append(block)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], roots: Roots, *, max_bytes: int, errors: str = "replace") -> str:
    """The file at ``path`` decoded as UTF-8 (a leading BOM dropped); ``errors`` as for ``bytes.decode``."""
    return read_bytes(path, roots, max_bytes=max_bytes).decode("utf-8-sig", errors=errors)


# --- writing -------------------------------------------------------------------------------------


def write_atomic(
    path: str | os.PathLike[str], roots: Roots, data: bytes | str, *, max_bytes: int, mode: int = 0o600
) -> Path:
    """Write ``data`` to ``path`` inside ``roots`` all at once (temp file, fsync, rename); the path written.

    The folder must exist inside a root and is reached without following links; an existing target
    that is not a regular file (link, folder, FIFO, device) is refused and nothing is written. A
    failure leaves the target as it was and no temp file behind.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    lexical = roots.normalise(path)
    show = shown(os.fspath(path))
    if len(payload) > max_bytes:
        raise InvalidInput(f"Refusing to write {len(payload)} bytes to {show}; the limit is {max_bytes}.")
    parent, name = posixpath.split(lexical)
    if name in ("", ".", ".."):
        raise InvalidInput(f"{show} names a folder; give a file name.")
    folder = roots.resolve(parent, kind="dir", must_exist=True)
    root = roots.root_of(folder)
    dir_fd = _open_dir_chain(root, folder.relative_to(root).parts, show)
    try:
        try:
            existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(existing.st_mode):
                raise InvalidInput(f"{show} exists and {_WHY[kind_of(existing.st_mode)]}; nothing was written.")
        tmp = f".{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _TMP_FLAGS, mode, dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, mode)  # the umask must not change the mode asked for
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            # rename replaces the directory entry itself: a link swapped in at ``name`` is replaced, not followed.
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)  # makes the rename itself survive a crash
    finally:
        os.close(dir_fd)
    return folder / name


# --- globs ---------------------------------------------------------------------------------------

_CharTest = Callable[[str], bool]


def write_once(path: Path, data: bytes) -> bool:
    """Store ``data`` at ``path`` in a folder the server owns, unless a file is already there; True if written.

    For content-addressed files (the name is the data's hash, so an existing file is already right).
    """
    if path.exists():
        return False
    replace_file(path, data)
    return True


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in a folder the server owns (made if missing) through a temp file and a
    rename, so a concurrent reader sees the old file or the new one, never half of one, and a crash leaves
    no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    try:
        with open(tmp, "xb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _not_slash(c: str) -> bool:
    return c != "/"


def _any(c: str) -> bool:
    return True


def _literal(ch: str) -> _CharTest:
    return lambda c: c == ch


def _char_class(body: str, negated: bool) -> _CharTest:
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            ranges.append((body[i], body[i + 2]))
            i += 3
        else:
            ranges.append((body[i], body[i]))
            i += 1
    return lambda c: c != "/" and any(lo <= c <= hi for lo, hi in ranges) != negated


@dataclass
class _State:
    advance: _CharTest | None = None  # consumes one character and moves to the next state
    loop: _CharTest | None = None  # consumes one character and stays
    skips: tuple[int, ...] = ()  # moves 1 or 2 states ahead without consuming


def _segment_states(seg: str) -> list[_State]:
    states: list[_State] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            while i < len(seg) and seg[i] == "*":
                i += 1
            states.append(_State(loop=_not_slash, skips=(1,)))
            continue
        if c == "?":
            states.append(_State(advance=_not_slash))
        elif c == "[":
            start = i + 1
            negated = start < len(seg) and seg[start] in "!^"
            if negated:
                start += 1
            end = seg.find("]", start + 1)  # a ']' right after '[' or '[!' is a member
            if end == -1:
                states.append(_State(advance=_literal("[")))
            else:
                states.append(_State(advance=_char_class(seg[start:end], negated)))
                i = end
        elif c == "\\" and i + 1 < len(seg):
            i += 1
            states.append(_State(advance=_literal(seg[i])))
        else:
            states.append(_State(advance=_literal(c)))
        i += 1
    return states


class Glob:
    """One glob pattern: ``*`` and ``?`` and ``[...]`` within a name, ``**`` across folders.

    A pattern with no ``/`` matches the file name in any folder; one with ``/`` matches the whole
    relative path (a leading ``/`` only anchors it; a trailing ``/`` means everything in that folder).
    Matching simulates all states at once over bit masks: time grows with path length times pattern
    length, whatever the pattern.
    """

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise InvalidInput("A glob pattern must be text, e.g. '**/*.md'.")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInput(
                f"Glob pattern {shown(pattern)} is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}."
            )
        if not pattern or "\x00" in pattern:
            raise InvalidInput(f"Glob pattern {shown(pattern)} is empty or has a NUL byte; give one like '**/*.md'.")
        self.pattern = pattern
        self.anchored = "/" in pattern
        body = pattern.lstrip("/")
        while body.startswith("./"):
            body = body[2:]
        if body.endswith("/"):
            body += "**"
        segments: list[str] = []
        for seg in body.split("/"):
            if (seg == "" and segments) or (seg == "**" and segments and segments[-1] == "**"):
                continue  # 'a//b' is 'a/b'; '**/**' is '**'
            segments.append(seg)
        states: list[_State] = []
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            if i > 0 and segments[i - 1] != "**":
                states.append(_State(advance=_literal("/")))
            if seg == "**" and last:
                states.append(_State(loop=_any, skips=(1,)))
            elif seg == "**":
                # zero folders, or anything ending in '/': (.*/)?
                states.append(_State(skips=(1, 2)))
                states.append(_State(advance=_literal("/"), loop=_any))
            else:
                states.extend(_segment_states(seg))
        self._states = states
        self._accept = 1 << len(states)
        self._skip1 = sum(1 << s for s, st in enumerate(states) if 1 in st.skips)
        self._skip2 = sum(1 << s for s, st in enumerate(states) if 2 in st.skips)
        self._everything = sum(1 << s for s, st in enumerate(states) if st.loop is _any and st.skips == (1,))
        self._masks: dict[str, tuple[int, int]] = {}
        self._start = self._closure(1)

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def _closure(self, current: int) -> int:
        while True:
            grown = current | ((current & self._skip1) << 1) | ((current & self._skip2) << 2)
            if grown == current:
                return current
            current = grown

    def _masks_for(self, c: str) -> tuple[int, int]:
        masks = self._masks.get(c)
        if masks is None:
            advance = sum(1 << s for s, st in enumerate(self._states) if st.advance is not None and st.advance(c))
            loop = sum(1 << s for s, st in enumerate(self._states) if st.loop is not None and st.loop(c))
            masks = (advance, loop)
            if len(self._masks) < 4096:
                self._masks[c] = masks
        return masks

    def _run(self, text: str) -> int:
        current = self._start
        for c in text:
            advance, loop = self._masks_for(c)
            current = self._closure(((current & advance) << 1) | (current & loop))
            if not current:
                return 0
        return current

    def match(self, rel_path: str) -> bool:
        """Whether the relative POSIX path (no leading '/') matches."""
        target = rel_path if self.anchored else rel_path.rsplit("/", 1)[-1]
        return bool(self._run(target) & self._accept)

    def could_match_under(self, rel_dir: str) -> bool:
        """False only when no path inside the folder ``rel_dir`` can match, so a scan need not enter it."""
        return not self.anchored or bool(self._run(rel_dir + "/"))

    def covers_dir(self, rel_dir: str) -> bool:
        """Whether the folder itself matches, or every path inside it does ('build/**'): a scan skips it whole."""
        return self.match(rel_dir) or (self.anchored and bool(self._run(rel_dir + "/") & self._everything))


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    """A compiled ``Glob`` (cached: the same patterns come back on every call)."""
    return Glob(pattern)


class GlobSet:
    """Several globs; a path matches when any of them does."""

    def __init__(self, globs: Sequence[Glob]) -> None:
        self.globs = tuple(globs)

    def __bool__(self) -> bool:
        return bool(self.globs)

    def __repr__(self) -> str:
        return f"GlobSet({[g.pattern for g in self.globs]!r})"

    def match(self, rel_path: str) -> bool:
        """Whether any pattern matches the relative POSIX path."""
        return any(g.match(rel_path) for g in self.globs)

    def could_match_under(self, rel_dir: str) -> bool:
        """Whether some pattern might match a path inside the folder."""
        return any(g.could_match_under(rel_dir) for g in self.globs)

    def covers_dir(self, rel_dir: str) -> bool:
        """Whether some pattern matches the folder itself or everything inside it."""
        return any(g.covers_dir(rel_dir) for g in self.globs)


def compile_globs(patterns: Sequence[str] | str) -> GlobSet:
    """Patterns checked (at most 100, each at most 500 characters) and compiled; InvalidInput otherwise."""
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if len(items) > MAX_PATTERNS:
        raise InvalidInput(f"{len(items)} glob patterns given; at most {MAX_PATTERNS} are allowed.")
    if any(not isinstance(p, str) for p in items):
        raise InvalidInput("Glob patterns must be text, e.g. '**/*.md'.")
    return GlobSet([compile_glob(p) for p in items])


# --- scanning a folder ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScannedFile:
    """A regular file found by ``scan``: not opened, only looked at with lstat."""

    absolute: Path
    path: str  # relative to the scanned folder, POSIX separators
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    """A path a scan looked at and left out, with the reason ('symlink', 'fifo', 'too large (...)', ...)."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ScanResult:
    """What ``scan`` found under ``root``, sorted by relative path."""

    root: Path
    files: list[ScannedFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    excluded: int = 0  # files (and whole folders) left out by an exclude pattern
    truncated: bool = False  # max_files was reached; more files match


class _Scanner:
    def __init__(self, result: ScanResult, include: GlobSet, exclude: GlobSet, max_files: int, max_bytes: int) -> None:
        self.result = result
        self.include = include
        self.exclude = exclude
        self.max_files = max_files
        self.max_bytes = max_bytes

    def skip(self, path: str, reason: str) -> None:
        self.result.skipped.append(Skipped(path, reason))

    def folder(self, fd: int, prefix: str, depth: int) -> bool:
        """Scan one open folder; False once max_files is reached."""
        entries: list[tuple[str, str, os.stat_result]] = []
        with os.scandir(fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    if self.include.match(prefix + entry.name):
                        self.skip(prefix + entry.name, "unreadable")
                    continue
                # Sorting folders as 'name/' walks the tree in the order of the full relative paths.
                key = entry.name + "/" if stat.S_ISDIR(st.st_mode) else entry.name
                entries.append((key, entry.name, st))
        entries.sort()
        for _, name, st in entries:
            rel = prefix + name
            if stat.S_ISDIR(st.st_mode):
                if not self.subfolder(fd, name, rel, depth):
                    return False
            elif stat.S_ISLNK(st.st_mode):
                if self.exclude.covers_dir(rel):
                    self.result.excluded += 1
                elif self.include.match(rel) or self.include.could_match_under(rel):
                    self.skip(rel, "symlink")
            elif self.include.match(rel):
                if self.exclude.match(rel):
                    self.result.excluded += 1
                elif not stat.S_ISREG(st.st_mode):
                    self.skip(rel, kind_of(st.st_mode))
                elif st.st_size > self.max_bytes:
                    self.skip(rel, f"too large ({st.st_size} bytes; limit {self.max_bytes})")
                elif len(self.result.files) >= self.max_files:
                    self.result.truncated = True
                    return False
                else:
                    self.result.files.append(ScannedFile(self.result.root / rel, rel, st.st_size, st.st_mtime_ns))
        return True

    def subfolder(self, parent_fd: int, name: str, rel: str, depth: int) -> bool:
        if self.exclude.covers_dir(rel):
            self.result.excluded += 1
            return True
        if not self.include.could_match_under(rel):
            return True
        if depth >= MAX_SCAN_DEPTH:
            self.skip(rel + "/", f"too deep (more than {MAX_SCAN_DEPTH} folders)")
            return True
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            # ENOTDIR/ELOOP: the folder was replaced by a link (or a file) since it was listed.
            self.skip(rel + "/", "symlink" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else "unreadable")
            return True
        try:
            return self.folder(fd, rel + "/", depth + 1)
        finally:
            os.close(fd)


def scan(
    root: str | os.PathLike[str],
    roots: Roots,
    *,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    max_files: int,
    max_bytes: int,
) -> ScanResult:
    """Every regular file under ``root`` matching ``include`` and not ``exclude``, and what was left out why.

    Uses folder descriptors and lstat only: no link (to a file or a folder) is followed and no file
    is opened. Links, FIFOs, sockets, devices and files over ``max_bytes`` are listed in ``skipped``;
    excluded files are only counted; ``truncated`` says ``max_files`` was reached.
    """
    inc = compile_globs(include)
    exc = compile_globs(exclude)
    if not inc:
        raise InvalidInput("No include pattern given; give at least one, e.g. '**/*.md'.")
    folder = roots.resolve(root, kind="dir", must_exist=True)
    base = roots.root_of(folder)
    fd = _open_dir_chain(base, folder.relative_to(base).parts, shown(os.fspath(root)))
    result = ScanResult(root=folder)
    try:
        _Scanner(result, inc, exc, max_files, max_bytes).folder(fd, "", 0)
    finally:
        os.close(fd)
    result.files.sort(key=lambda f: f.path)
    result.skipped.sort(key=lambda s: s.path)
    return result
