"""Datasets: one file each, its format, how DuckDB scans it, its schema, size and fingerprint.

Paths arrive already resolved by the shared safe-files kit; this module never widens them.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from common.errors import InvalidInput, NotFound, shown

if TYPE_CHECKING:
    import pyarrow

    from servers.analytics.engine import Engine

Format = Literal["csv", "tsv", "parquet", "json", "ndjson", "excel"]

FORMATS: tuple[Format, ...] = ("csv", "tsv", "parquet", "json", "ndjson", "excel")
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".xlsx": "excel",
    ".xlsm": "excel",
}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Names DuckDB's own catalog answers to: a dataset may not shadow or pose as them.
_RESERVED_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_", "information_schema", "_")
_EDGE = 1 << 20  # the fingerprint hashes the first and last MiB
MAX_EXCEL_BYTES = 100 << 20


@dataclass(frozen=True)
class Dataset:
    """A registered file: ``name`` is the view a query uses, ``path`` the resolved absolute file."""

    name: str
    path: Path
    format: Format
    sheet: str | None = None


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str


@dataclass(frozen=True)
class SourceInfo:
    """What ``inspect`` learns about a dataset; ``fingerprint`` changes when the file does."""

    name: str
    path: str
    format: Format
    columns: list[ColumnInfo]
    row_count: int
    byte_size: int
    fingerprint: str
    sample: list[dict[str, Any]] = field(default_factory=list)


def check_name(name: str) -> str:
    """Return ``name`` if it can be a view name; raise ``InvalidInput`` saying the rule otherwise."""
    if not _NAME.fullmatch(name) or name.startswith(_RESERVED_PREFIXES):
        raise InvalidInput(
            f"dataset name {name[:40]!r} is not allowed: use 1-63 lowercase letters, digits or '_', "
            "starting with a letter and not with duckdb_, pragma_, sqlite_ or pg_"
        )
    return name


def detect_format(path: Path) -> Format:
    """The format from the suffix, or from the first bytes when the suffix says nothing."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    with path.open("rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "excel"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "ndjson"
    if b"\t" in head.split(b"\n", 1)[0]:
        return "tsv"
    return "csv"


def make_dataset(name: str, path: Path, fmt: Format | None = None, sheet: str | None = None) -> Dataset:
    """A ``Dataset`` for an existing regular file, its format detected unless given."""
    if not path.is_absolute():
        raise InvalidInput("the dataset path must be absolute; resolve it first")
    if not path.is_file():
        raise NotFound(f"no file at {str(path)[-80:]!r}; check the path")
    if "\x00" in str(path) or "\n" in str(path):
        raise InvalidInput("the dataset path contains a control character; rename the file")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
    return Dataset(name=check_name(name), path=path, format=fmt or detect_format(path), sheet=sheet)


def fingerprint(path: Path) -> str:
    """``size-mtime_ns-sha256(first MiB + last MiB)[:32]``: cheap on a 2 GB file, yet an in-place
    edit that keeps size and mtime (rare, but tools do it) is still caught at either end."""
    st = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(_EDGE))
        if st.st_size > _EDGE:
            fh.seek(max(_EDGE, st.st_size - _EDGE))
            digest.update(fh.read(_EDGE))
    return f"{st.st_size}-{st.st_mtime_ns}-{digest.hexdigest()[:32]}"


class Fingerprints:
    """``fingerprint`` of files seen before, reused while their status is unchanged.

    Every write and every change of the modification time moves a file's ctime, which no tool can
    set back, so an unchanged (device, inode, size, mtime, ctime) means unchanged contents. Only a
    change within the same clock tick as the last one could hide, so, as git does with its index, a
    fingerprint taken less than ``settle_s`` after the file's ctime is not reused.
    """

    def __init__(self, max_entries: int = 256, settle_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.settle_s = settle_s
        self.clock = clock
        self.hashed = 0
        self._known: OrderedDict[str, tuple[tuple[int, ...], float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def _lookup(self, path: Path) -> tuple[str | None, tuple[int, ...]]:
        st = os.stat(path)
        status = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            known = self._known.get(str(path))
            if known is not None and known[0] == status and known[1] - st.st_ctime_ns / 1e9 > self.settle_s:
                self._known.move_to_end(str(path))
                return known[2], status
        return None, status

    def cached(self, path: Path) -> str | None:
        """The known fingerprint of ``path`` if it may be reused (one ``stat``), else None."""
        known, _ = self._lookup(path)
        return known

    def get(self, path: Path) -> str:
        """The fingerprint of ``path``: the known one if it may be reused, else hashed now."""
        known, status = self._lookup(path)
        if known is not None:
            return known
        key = str(path)
        taken = self.clock()
        fp = fingerprint(path)
        with self._lock:
            self.hashed += 1
            self._known[key] = (status, taken, fp)
            self._known.move_to_end(key)
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        return fp


def sql_string(text: str) -> str:
    """A SQL string literal (quotes doubled); only for resolved paths this module produced."""
    return "'" + text.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def scan_sql(dataset: Dataset) -> str:
    """The DuckDB table expression that streams the file (Excel is registered as Arrow instead)."""
    p = sql_string(str(dataset.path))
    match dataset.format:
        case "csv":
            return f"read_csv({p}, auto_detect = true)"
        case "tsv":
            return f"read_csv({p}, auto_detect = true, delim = '\\t')"
        case "parquet":
            return f"read_parquet({p})"
        case "json":
            return f"read_json({p}, format = 'auto')"
        case "ndjson":
            return f"read_json({p}, format = 'newline_delimited')"
        case "excel":
            raise InvalidInput("Excel files are read through openpyxl, not scanned by DuckDB")


def read_excel(dataset: Dataset) -> pyarrow.Table:
    """The sheet (first unless named) as an Arrow table: first row the header, mixed columns as text.

    Unlike the other formats this loads the sheet into memory, hence ``MAX_EXCEL_BYTES``.
    """
    import openpyxl  # heavy: only when an Excel file is used
    import pyarrow as pa

    if dataset.path.stat().st_size > MAX_EXCEL_BYTES:
        raise InvalidInput(
            f"{dataset.name} is over {MAX_EXCEL_BYTES >> 20} MiB; Excel is read row by row in Python, "
            "so save it as CSV or Parquet and register that instead"
        )

    try:
        book = openpyxl.load_workbook(dataset.path, read_only=True, data_only=True)
    except Exception as exc:
        raise InvalidInput(f"could not open {dataset.name} as an Excel workbook: {str(exc)[:120]}") from exc
    try:
        if dataset.sheet is not None and dataset.sheet not in book.sheetnames:
            raise NotFound(f"sheet {dataset.sheet[:40]!r} not in the workbook; sheets: {book.sheetnames[:20]}")
        ws = book[dataset.sheet] if dataset.sheet else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise InvalidInput(f"the sheet of {shown(dataset.name)} is empty")
        names = [str(h) if h not in (None, "") else f"column{i + 1}" for i, h in enumerate(header)]
        cols: list[list[Any]] = [[] for _ in names]
        for row in rows:
            for i in range(len(names)):
                cols[i].append(row[i] if i < len(row) else None)
    finally:
        book.close()
    arrays = []
    for values in cols:
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], type=pa.string()))
    return pa.table(arrays, names=names)


def inspect(engine: Engine, name: str, sample_rows: int = 5) -> SourceInfo:
    """Schema, row count, size, fingerprint and a few rows of a dataset registered in ``engine``.

    DuckDB scans the file (count and describe stream), so a file larger than memory is fine.
    """
    dataset = engine.dataset(name)
    size = dataset.path.stat().st_size
    with engine.trusted() as run:
        described = run(f"DESCRIBE SELECT * FROM {quote_ident(dataset.name)}")
        count = run(f"SELECT count(*) FROM {quote_ident(dataset.name)}").rows[0][0]
        sample = run(f"SELECT * FROM {quote_ident(dataset.name)} LIMIT {int(sample_rows)}")
    columns = [ColumnInfo(name=str(r[0]), type=str(r[1])) for r in described.rows]
    names = [c.name for c in sample.columns]
    return SourceInfo(
        name=dataset.name,
        path=str(dataset.path),
        format=dataset.format,
        columns=columns,
        row_count=int(str(count)),
        byte_size=size,
        fingerprint=fingerprint(dataset.path),
        sample=[dict(zip(names, row, strict=True)) for row in sample.rows],
    )
