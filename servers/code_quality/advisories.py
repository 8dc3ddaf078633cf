"""Known-vulnerable dependencies: pinned versions from requirement and lock files, checked against an
OSV-compatible source the user points at.

The source is either an OSV export on disk (a folder or zip of OSV JSON records, e.g. the per-ecosystem
``all.zip`` of osv.dev) or the URL of an OSV ``/v1/query`` endpoint. Why not pip-audit: it reads only
requirements files (not poetry/uv/Pipfile/npm locks), has no offline export mode, and in its default
PyPI mode reports "No known vulnerabilities found" when it could not reach its data. Here a source that
cannot be read or reached yields status ``unreachable`` with the reason, never an empty, clean-looking
result; requirements that are not pinned to one version are listed as unchecked, not skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tomllib
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

import httpx
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from common.logging import get_logger
from servers.code_quality.files import FileListing
from servers.code_quality.models import VulnerabilityView

log = get_logger(__name__)

Ecosystem = Literal["PyPI", "npm"]
ReportStatus = Literal["ok", "unreachable", "no_source", "no_dependencies"]
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_DEPENDENCY_FILE_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 1_000_000
MAX_INCLUDE_DEPTH = 5
QUERY_CONCURRENCY = 8
QUERY_TIMEOUT_S = 20.0
MAX_PAGES = 20
_LOCK_NAMES = frozenset({"poetry.lock", "uv.lock", "Pipfile.lock", "package-lock.json"})
_REQ_NAME = re.compile(r"^requirements.*\.(txt|in)$|.*requirements\.txt$")


class SourceUnreachable(Exception):
    """The advisory source could not be read or reached; the message says why."""


@dataclass(frozen=True)
class Dependency:
    ecosystem: Ecosystem
    name: str
    version: str
    file: str
    line: int


@dataclass(frozen=True)
class Unchecked:
    name: str
    file: str
    line: int
    reason: str


@dataclass
class AdvisoryReport:
    status: ReportStatus
    source: str
    reason: str = ""
    checked: int = 0
    vulnerabilities: list[VulnerabilityView] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise_name(ecosystem: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if ecosystem == "PyPI" else name.lower()


def is_dependency_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name in _LOCK_NAMES or bool(_REQ_NAME.match(name)) or PurePosixPath(path).parent.name == "requirements"


def dependency_files(listing: FileListing) -> list[str]:
    """The dependency files of a listing, including lock files it skipped for code analysis as generated
    (poetry.lock says "@generated") or too large (a big package-lock.json)."""
    kept = [f.path for f in listing.files]
    skipped = [s.path for s in listing.skipped if s.reason in ("generated", "too_large")]
    return sorted(p for p in (*kept, *skipped) if is_dependency_file(p))


# --- reading dependency files ------------------------------------------------------------------


def _read_text(root: Path, rel: str) -> str:
    fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_DEPENDENCY_FILE_BYTES + 1)
    if len(data) > MAX_DEPENDENCY_FILE_BYTES:
        raise ValueError("dependency file too large")
    return data.decode(errors="replace")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buffer:
            start = number
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield start, buffer + line
        buffer = ""
    if buffer:
        yield start, buffer


def _requirements(
    root: Path, rel: str, deps: list[Dependency], unchecked: list[Unchecked], depth: int, seen: set[str]
) -> None:
    if rel in seen:
        return
    seen.add(rel)
    text = _read_text(root, rel)
    for number, line in _logical_lines(text):
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "-c ", "--constraint ")):
            target = PurePosixPath(rel).parent / line.split(None, 1)[1].strip()
            include = os.path.normpath(target.as_posix())
            if depth >= MAX_INCLUDE_DEPTH or include.startswith("..") or os.path.isabs(include):
                unchecked.append(Unchecked(include[:80], rel, number, "include outside the root or nested too deep"))
            elif (root / include).is_file():
                _requirements(root, include, deps, unchecked, depth + 1, seen)
            else:
                unchecked.append(Unchecked(include[:80], rel, number, "included file not found"))
            continue
        if re.match(r"^(-e\s+)?[a-z+]+://", line):
            egg = re.search(r"[#&]egg=([\w.-]+)", line)
            unchecked.append(
                Unchecked(egg.group(1) if egg else line[:80], rel, number, "installed from a URL, not an index version")
            )
            continue
        if line.startswith(("-e ", "--editable ", "./", "../", "/")):
            local = line.split(None, 1)[-1]
            unchecked.append(Unchecked(local[:80], rel, number, "a local path, not an index version"))
            continue
        if line.startswith("-"):
            continue  # pip options: --index-url, --hash on its own line
        try:
            req = Requirement(line.split(" --hash", 1)[0].strip())
        except InvalidRequirement:
            unchecked.append(Unchecked(line[:80], rel, number, "not a requirement this checker can read"))
            continue
        if req.url:
            unchecked.append(Unchecked(req.name, rel, number, "installed from a URL, not an index version"))
            continue
        pins = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(pins) != 1:
            unchecked.append(Unchecked(req.name, rel, number, "not pinned to one version (use ==, or a lock file)"))
            continue
        deps.append(Dependency("PyPI", req.name, pins[0].version, rel, number))


def _line_of(text: str, needle: str) -> int:
    idx = text.find(needle)
    return text.count("\n", 0, idx) + 1 if idx >= 0 else 0


def _toml_lock(root: Path, rel: str, deps: list[Dependency], unchecked: list[Unchecked]) -> None:
    text = _read_text(root, rel)
    data = tomllib.loads(text)
    for pkg in data.get("package", []):
        name, version = pkg.get("name"), pkg.get("version")
        if not name:
            continue
        line = _line_of(text, f'name = "{name}"')
        if version:
            deps.append(Dependency("PyPI", str(name), str(version), rel, line))
        else:
            unchecked.append(Unchecked(str(name), rel, line, "no version in the lock file"))


def _pipfile_lock(root: Path, rel: str, deps: list[Dependency], unchecked: list[Unchecked]) -> None:
    text = _read_text(root, rel)
    data = json.loads(text)
    for section in ("default", "develop"):
        for name, info in (data.get(section) or {}).items():
            version = str((info or {}).get("version", ""))
            line = _line_of(text, f'"{name}"')
            if version.startswith("=="):
                deps.append(Dependency("PyPI", name, version[2:], rel, line))
            else:
                unchecked.append(Unchecked(name, rel, line, "no pinned version in the lock file"))


def _npm_lock(root: Path, rel: str, deps: list[Dependency], unchecked: list[Unchecked]) -> None:
    text = _read_text(root, rel)
    data = json.loads(text)
    packages = data.get("packages")
    if isinstance(packages, dict):
        entries = [(key.rsplit("node_modules/", 1)[-1], info) for key, info in packages.items() if key]
    else:
        entries = list((data.get("dependencies") or {}).items())
    for name, info in entries:
        version = (info or {}).get("version")
        if version and not str(version).startswith(("file:", "git", "http", "link:")):
            deps.append(Dependency("npm", name, str(version), rel, _line_of(text, f'"node_modules/{name}"')))
        else:
            unchecked.append(Unchecked(name, rel, 0, "not an index version"))


def read_dependencies(root: Path, paths: Iterable[str]) -> tuple[list[Dependency], list[Unchecked]]:
    """Pinned dependencies of the dependency files among ``paths`` (root-relative) and what was not checkable."""
    deps: list[Dependency] = []
    unchecked: list[Unchecked] = []
    seen: set[str] = set()
    for rel in sorted(p for p in paths if is_dependency_file(p)):
        name = PurePosixPath(rel).name
        try:
            if name in ("poetry.lock", "uv.lock"):
                _toml_lock(root, rel, deps, unchecked)
            elif name == "Pipfile.lock":
                _pipfile_lock(root, rel, deps, unchecked)
            elif name == "package-lock.json":
                _npm_lock(root, rel, deps, unchecked)
            else:
                _requirements(root, rel, deps, unchecked, 0, seen)
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            unchecked.append(Unchecked(name, rel, 0, f"could not read the file: {type(exc).__name__}"))
    unique = {(d.ecosystem, normalise_name(d.ecosystem, d.name), d.version, d.file): d for d in deps}
    return list(unique.values()), unchecked


# --- matching OSV records ----------------------------------------------------------------------


def _semver_key(text: str) -> tuple[Any, ...] | None:
    match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?", text)
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    # A release sorts after its pre-releases.
    return (int(major), int(minor or 0), int(patch or 0), 0 if pre else 1, pre or "")


def _key(ecosystem: str, text: str) -> Any:
    if ecosystem == "PyPI":
        try:
            return Version(text)
        except InvalidVersion:
            return None
    return _semver_key(text)


def _affected_by_range(ecosystem: str, version: Any, events: Sequence[dict[str, str]]) -> bool:
    keyed = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in event:
                value = event[kind]
                k = None if value == "0" else _key(ecosystem, value)
                if value != "0" and k is None:
                    return False
                keyed.append((k, kind))
    keyed.sort(key=lambda item: (item[0] is not None, item[0] if item[0] is not None else 0))
    affected = False
    for k, kind in keyed:
        if kind == "introduced" and (k is None or version >= k):
            affected = True
        elif (
            (kind == "fixed" and version >= k)
            or (kind == "last_affected" and version > k)
            or (kind == "limit" and version >= k)
        ):
            affected = False
    return affected


def affects(record: dict[str, Any], dep: Dependency) -> tuple[bool, list[str]]:
    """Whether the OSV ``record`` covers ``dep``'s version, and the fixed versions it names."""
    wanted = normalise_name(dep.ecosystem, dep.name)
    version = _key(dep.ecosystem, dep.version)
    hit = False
    fixed: list[str] = []
    for affected in record.get("affected") or []:
        package = affected.get("package") or {}
        if (
            package.get("ecosystem") != dep.ecosystem
            or normalise_name(dep.ecosystem, package.get("name", "")) != wanted
        ):
            continue
        if dep.version in (affected.get("versions") or []):
            hit = True
        for rng in affected.get("ranges") or []:
            if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
                continue
            events = rng.get("events") or []
            fixed.extend(e["fixed"] for e in events if "fixed" in e)
            if version is not None and _affected_by_range(dep.ecosystem, version, events):
                hit = True
    return hit, sorted(set(fixed))


def _severity(record: dict[str, Any]) -> str:
    specific = record.get("database_specific") or {}
    value = specific.get("severity")
    return str(value).lower() if value else "unknown"


def _vulnerability(record: dict[str, Any], dep: Dependency, fixed: list[str]) -> VulnerabilityView:
    summary = str(record.get("summary") or record.get("details") or "")
    summary = " ".join(summary.split())
    return VulnerabilityView(
        id=str(record.get("id", "?")),
        package=dep.name,
        version=dep.version,
        ecosystem=dep.ecosystem,
        file=dep.file,
        line=dep.line,
        summary=summary[:300],
        severity=_severity(record),
        aliases=[str(a) for a in (record.get("aliases") or [])][:10],
        fixed_versions=fixed[:10],
    )


# --- sources ------------------------------------------------------------------------------------


class AdvisorySource(Protocol):
    description: str
    # True when the source already matched versions (an API query with a version).
    prefiltered: bool

    async def records_for(self, deps: Sequence[Dependency]) -> dict[Dependency, list[dict[str, Any]]]:
        """Candidate OSV records per dependency; raises SourceUnreachable."""
        ...


class OsvExport:
    """OSV records from a folder (``*.json``, searched recursively) or a zip of them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"OSV export at {path.name}"
        self.prefiltered = False

    def _blobs(self) -> Iterator[bytes]:
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith(".json") and info.file_size <= MAX_RECORD_BYTES:
                        yield archive.read(info)
        elif self.path.is_dir():
            for dirpath, _dirs, names in os.walk(self.path):
                for name in sorted(names):
                    full = Path(dirpath) / name
                    if name.endswith(".json") and not full.is_symlink() and full.stat().st_size <= MAX_RECORD_BYTES:
                        yield full.read_bytes()
        else:
            raise SourceUnreachable("the OSV export path is neither a folder nor a zip file")

    def load(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        index: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        count = 0
        try:
            for blob in self._blobs():
                try:
                    data = json.loads(blob)
                except ValueError:
                    continue
                for record in data if isinstance(data, list) else [data]:
                    if not isinstance(record, dict) or "id" not in record:
                        continue
                    count += 1
                    for affected in record.get("affected") or []:
                        package = affected.get("package") or {}
                        eco, name = package.get("ecosystem"), package.get("name")
                        if eco and name:
                            index[(eco, normalise_name(eco, name))].append(record)
                    if count >= MAX_RECORDS:
                        break
        except (OSError, zipfile.BadZipFile) as exc:
            raise SourceUnreachable(f"cannot read the OSV export: {type(exc).__name__}") from exc
        if count == 0:
            raise SourceUnreachable("the OSV export holds no OSV records (expected JSON files with an 'id')")
        return index

    async def records_for(self, deps: Sequence[Dependency]) -> dict[Dependency, list[dict[str, Any]]]:
        index = await asyncio.to_thread(self.load)
        return {d: index.get((d.ecosystem, normalise_name(d.ecosystem, d.name)), []) for d in deps}


class OsvApi:
    """An OSV ``/v1/query`` endpoint (osv.dev or a mirror); one query per dependency, bounded concurrency."""

    def __init__(
        self, url: str, *, timeout_s: float = QUERY_TIMEOUT_S, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.url = url
        self.timeout_s = timeout_s
        self.transport = transport
        self.prefiltered = True
        self.description = f"OSV API at {httpx.URL(url).host}"

    async def _query(self, client: httpx.AsyncClient, dep: Dependency) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"package": {"name": dep.name, "ecosystem": dep.ecosystem}, "version": dep.version}
        records: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response = await client.post(self.url, json=body)
            if response.status_code != 200:
                raise SourceUnreachable(f"the OSV API answered HTTP {response.status_code}")
            data = response.json()
            if not isinstance(data, dict):
                raise SourceUnreachable("the OSV API answered something that is not an OSV query result")
            records.extend(v for v in data.get("vulns") or [] if isinstance(v, dict))
            token = data.get("next_page_token")
            if not token:
                break
            body["page_token"] = token
        return records

    async def records_for(self, deps: Sequence[Dependency]) -> dict[Dependency, list[dict[str, Any]]]:
        slots = asyncio.Semaphore(QUERY_CONCURRENCY)
        out: dict[Dependency, list[dict[str, Any]]] = {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport) as client:

                async def one(dep: Dependency) -> None:
                    async with slots:
                        out[dep] = await self._query(client, dep)

                async with asyncio.TaskGroup() as group:
                    for dep in deps:
                        group.create_task(one(dep))
        except* (httpx.HTTPError, ValueError) as group_exc:
            first = group_exc.exceptions[0]
            raise SourceUnreachable(f"the OSV API could not be reached: {type(first).__name__}") from first
        except* SourceUnreachable as group_exc:
            raise group_exc.exceptions[0] from None
        return out


def source_from(spec: str | None) -> AdvisorySource | None:
    """An advisory source from a setting: an ``http(s)://`` query URL or a path to an OSV export."""
    if not spec:
        return None
    if spec.startswith(("http://", "https://")):
        return OsvApi(spec)
    return OsvExport(Path(spec))


async def check_advisories(root: Path, paths: Iterable[str], source: AdvisorySource | None) -> AdvisoryReport:
    """Vulnerabilities of the pinned dependencies declared under ``root`` (``paths``: the listed files)."""
    deps, unchecked = await asyncio.to_thread(read_dependencies, root, list(paths))
    if source is None:
        return AdvisoryReport(
            "no_source",
            "",
            "no advisory source configured: point the setting at an OSV export (folder or zip) or an OSV query URL",
            unchecked=unchecked,
        )
    if not deps:
        return AdvisoryReport(
            "no_dependencies", source.description, "no pinned dependencies found", unchecked=unchecked
        )
    try:
        candidates = await source.records_for(deps)
    except SourceUnreachable as exc:
        log.warning("advisory_source_unreachable", source=source.description, reason=str(exc))
        return AdvisoryReport(
            "unreachable",
            source.description,
            f"no advisory source reachable, nothing was checked: {exc}",
            unchecked=unchecked,
        )
    report = AdvisoryReport("ok", source.description, checked=len(deps), unchecked=unchecked)
    for dep in deps:
        seen: set[str] = set()
        for record in candidates.get(dep, []):
            hit, fixed = affects(record, dep)
            if (hit or source.prefiltered) and record.get("id") not in seen and not record.get("withdrawn"):
                seen.add(str(record.get("id")))
                report.vulnerabilities.append(_vulnerability(record, dep, fixed))
    report.vulnerabilities.sort(key=lambda v: (v.file, v.line, v.package, v.id))
    return report
