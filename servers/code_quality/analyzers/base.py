"""What every analyzer shares: finding its executable, running it safely, and the parsing contract.

An analyzer runs as a child process (never a shell) in its own session, so a timeout or a cancelled
run kills the whole process group; its output is machine-readable (JSON, or CSV/lines where the tool
has no JSON) and anything it does not parse is an ``AnalyzerOutputError``, never an empty result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from servers.code_quality.files import SourceFile
from servers.code_quality.records import RESULT_FORMAT, FileMetrics, Finding, FunctionMetrics

VERSION_TIMEOUT_S = 15.0
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
STDERR_TAIL_BYTES = 64 * 1024
REAP_TIMEOUT_S = 5.0
#: Versions already asked, by the executable's path and stat: each run builds its analyzers anew and asking
#: starts a process of the tool; an upgraded tool is a new file (new stat), so it is asked again.
_VERSIONS: dict[tuple[str, int, int, int], str] = {}


class AnalyzerMissing(Exception):
    """The analyzer's executable does not exist or cannot be executed."""


class AnalyzerTimeout(Exception):
    """The analyzer ran past its time limit and was killed."""


class AnalyzerFailed(Exception):
    """The analyzer exited with an error code or printed output that is not what it promises."""


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    def stderr_tail(self, limit: int = 200) -> str:
        text = " ".join(self.stderr.decode(errors="replace").split())
        return text[-limit:]


@dataclass
class BatchOutput:
    """What one invocation produced; paths are root-relative POSIX paths."""

    findings: list[Finding] = field(default_factory=list)
    metrics: dict[str, FileMetrics] = field(default_factory=dict)
    functions: list[FunctionMetrics] = field(default_factory=list)
    # Files the tool could not analyse (e.g. a syntax error it reports instead of results), with why.
    failed: dict[str, str] = field(default_factory=dict)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _reap(proc: asyncio.subprocess.Process, streams: Sequence[asyncio.StreamReader]) -> None:
    _kill_group(proc)
    # asyncio's wait() returns only once the pipes reach EOF, so they are drained too; shielded so a second
    # cancellation cannot leave the child behind; bounded, as a grandchild that left the group may hold a pipe.
    with contextlib.suppress(ProcessLookupError, TimeoutError):
        await asyncio.wait_for(
            asyncio.shield(asyncio.gather(*(_drain(s) for s in streams), proc.wait())), REAP_TIMEOUT_S
        )


async def _read_capped(stream: asyncio.StreamReader, cap: int, keep_tail: bool) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            if not keep_tail:
                raise AnalyzerFailed(f"printed more than {cap // (1024 * 1024)} MiB of output")
            joined = b"".join(chunks)[-cap:]
            chunks, size = [joined], len(joined)
    return b"".join(chunks)


async def run_process(argv: Sequence[str], *, cwd: Path, timeout_s: float) -> ProcessResult:
    """Run ``argv`` in ``cwd`` (no shell, own session); kill its process group on timeout or cancellation.

    Raises ``AnalyzerMissing`` when the executable cannot be started, ``AnalyzerTimeout`` on timeout and
    ``AnalyzerFailed`` when it prints more than ``MAX_OUTPUT_BYTES``.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise AnalyzerMissing(f"cannot execute {Path(argv[0]).name}: {exc.strerror or exc}") from exc
    except OSError as exc:
        # E2BIG (too many files for one command line) and other start-up failures.
        raise AnalyzerFailed(f"cannot start {Path(argv[0]).name}: {exc.strerror or exc}") from exc
    out_stream, err_stream = proc.stdout, proc.stderr
    if out_stream is None or err_stream is None:  # pragma: no cover - both are pipes above
        await _reap(proc, [])
        raise AnalyzerFailed("no output pipes")
    streams = [out_stream, err_stream]

    async def collect() -> tuple[bytes, bytes, int]:
        readers = [
            asyncio.ensure_future(_read_capped(out_stream, MAX_OUTPUT_BYTES, keep_tail=False)),
            asyncio.ensure_future(_read_capped(err_stream, STDERR_TAIL_BYTES, keep_tail=True)),
        ]
        try:
            out, err = await asyncio.gather(*readers)
        except BaseException:
            for reader in readers:
                reader.cancel()
            # The streams get drained next; no reader may still be waiting on them.
            await asyncio.wait(readers)
            raise
        return out, err, await proc.wait()

    try:
        stdout, stderr, code = await asyncio.wait_for(collect(), timeout_s)
    except TimeoutError as exc:
        await _reap(proc, streams)
        raise AnalyzerTimeout(f"killed after {timeout_s:g} s") from exc
    except BaseException:
        # Cancelled, or too much output: the child must not outlive the run that started it.
        await _reap(proc, streams)
        raise
    return ProcessResult(code, stdout, stderr)


def resolve_executable(default_name: str, configured: str | None) -> str | None:
    """The executable to run: the configured path or name, else the one next to this Python, else PATH."""
    if configured:
        if os.sep in configured:
            return configured
        return shutil.which(configured)
    beside = Path(sys.executable).parent / default_name
    if beside.exists():
        return str(beside)
    return shutil.which(default_name)


def relative_path(root: Path, reported: str) -> str | None:
    """A path an analyzer printed, as a root-relative POSIX path; None when it is outside the root."""
    # String operations: this runs once per reported row (tens of thousands per run), pathlib is slow.
    base = os.fspath(root)
    normal = os.path.normpath(os.path.join(base, reported))
    if normal == base:
        return "."
    prefix = base if base.endswith(os.sep) else base + os.sep
    if not normal.startswith(prefix):
        return None
    return normal[len(prefix) :].replace(os.sep, "/")


def load_json(result: ProcessResult, tool: str) -> object:
    try:
        return json.loads(result.stdout)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalyzerFailed(f"{tool} printed output that is not JSON (exit {result.returncode}): {exc}") from exc


class Analyzer(ABC):
    """One external analyzer. Subclasses say how to call it and how to read its output."""

    name: ClassVar[str]
    executable_name: ClassVar[str]
    languages: ClassVar[frozenset[str] | None] = None
    whole_program: ClassVar[bool] = False
    default_batch_size: ClassVar[int] = 100
    #: True when one process of the tool uses every core (the runner then splits files only by batch size).
    threaded: ClassVar[bool] = False
    ok_returncodes: ClassVar[frozenset[int]] = frozenset({0})

    def __init__(
        self, *, executable: str | None = None, timeout_s: float = 300.0, batch_size: int | None = None
    ) -> None:
        self.executable = resolve_executable(self.executable_name, executable)
        self.timeout_s = timeout_s
        self.batch_size = batch_size or self.default_batch_size
        self._version: str | None = None

    def applies_to(self, file: SourceFile) -> bool:
        return self.languages is None or file.language in self.languages

    def options(self) -> list[str]:
        """The arguments that shape the results; they make the config hash."""
        return []

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps([RESULT_FORMAT, self.name, self.options()]).encode()).hexdigest()[:16]

    def _require_executable(self) -> str:
        if not self.executable:
            raise AnalyzerMissing(f"{self.executable_name} is not installed or not on PATH")
        if not os.access(self.executable, os.X_OK):
            raise AnalyzerMissing(f"{self.executable_name} not found or not executable at the configured path")
        return self.executable

    async def version(self, cwd: Path) -> str:
        """The tool's version (part of the cache key); raises AnalyzerMissing/Timeout/Failed."""
        if self._version is None:
            exe = self._require_executable()
            try:
                st = os.stat(exe)
            except OSError as exc:
                raise AnalyzerMissing(f"cannot execute {Path(exe).name}: {exc.strerror or exc}") from exc
            stamp = (exe, st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp not in _VERSIONS:
                argv = [exe, "--version"]
                result = await run_process(argv, cwd=cwd, timeout_s=min(VERSION_TIMEOUT_S, self.timeout_s))
                text = (result.stdout or result.stderr).decode(errors="replace").strip()
                if result.returncode != 0 or not text:
                    raise AnalyzerFailed(f"'--version' exited {result.returncode}: {result.stderr_tail()}")
                _VERSIONS[stamp] = " ".join(text.splitlines()[0].split())[:80]
            self._version = _VERSIONS[stamp]
        return self._version

    @abstractmethod
    def command(self, executable: str, paths: Sequence[str]) -> list[str]:
        """The argv for analysing ``paths`` (absolute paths, so none can look like an option)."""

    @abstractmethod
    def parse(self, result: ProcessResult, root: Path, paths: Sequence[str]) -> BatchOutput:
        """Read one invocation's output; ``paths`` are the root-relative files it was given."""

    async def analyze(self, root: Path, paths: Sequence[str]) -> BatchOutput:
        """Run the analyzer over ``paths`` (root-relative) and parse what it printed."""
        exe = self._require_executable()
        base = os.fspath(root)
        argv = self.command(exe, [os.path.join(base, p) for p in paths])
        result = await run_process(argv, cwd=root, timeout_s=self.timeout_s)
        if result.returncode not in self.ok_returncodes:
            raise AnalyzerFailed(f"exited with code {result.returncode}: {result.stderr_tail() or 'no message'}")
        # Parsing takes a while on a large output: in a thread, the event loop keeps reading the other
        # analyzers' pipes meanwhile (an unread pipe stalls the tool writing to it).
        return await asyncio.to_thread(self.parse, result, root, paths)


class JsonAnalyzer(Analyzer):
    """An analyzer that prints one JSON document; output that is not JSON fails the batch."""

    def parse(self, result: ProcessResult, root: Path, paths: Sequence[str]) -> BatchOutput:
        return self.parse_json(load_json(result, self.name), root, paths)

    @abstractmethod
    def parse_json(self, data: object, root: Path, paths: Sequence[str]) -> BatchOutput:
        """Read the decoded output; ``paths`` are the root-relative files the tool was given."""
