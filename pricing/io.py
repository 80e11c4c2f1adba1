"""Reading and writing contract tables (CSV or Parquet). I/O lives here, at the edge.

Readers never modify the raw input. CSV cells are read as text and typed later by
:func:`pricing.ingest.coerce_table`, so a single bad cell can be reported (and quarantined) instead of
failing the whole file, while a malformed or non-UTF-8 file fails with a message naming the table.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pricing.contract import TABLES, ContractError

FORMATS = ("csv", "parquet")


def find_table_file(data_dir: str | Path, table: str) -> Path | None:
    """The file holding ``table`` in ``data_dir`` (``<table>.csv`` or ``<table>.parquet``), or None."""
    d = Path(data_dir)
    found = [d / f"{table}.{ext}" for ext in FORMATS if (d / f"{table}.{ext}").exists()]
    if len(found) > 1:
        raise ContractError(table, "one file per table", f"both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def _to_arrow_for_csv(df: pd.DataFrame) -> pa.Table:
    """Timestamps as ISO 8601 in UTC without offset, dates as YYYY-MM-DD, as the contract says."""
    tbl = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(tbl.schema):
        if pa.types.is_timestamp(field.type):
            col = tbl.column(i)
            if field.type.tz is not None:
                col = col.cast(pa.timestamp(field.type.unit, tz="UTC")).cast(pa.timestamp(field.type.unit))
            if _kind_of(field.name) == "date":
                col = col.cast(pa.date32())
            else:
                col = col.cast(pa.timestamp("s"), safe=False)
            tbl = tbl.set_column(i, field.name, col)
    return tbl


def _kind_of(column: str) -> str | None:
    for spec in TABLES.values():
        for c in spec.columns:
            if c.name == column:
                return c.kind
    return None


def write_table(df: pd.DataFrame, data_dir: str | Path, table: str, fmt: str = "csv") -> Path:
    """Write one contract table as ``<data_dir>/<table>.<fmt>`` (atomically: temp file then rename)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{table}.{fmt}"
    tmp = d / f".{table}.{fmt}.tmp"
    if fmt == "csv":
        pacsv.write_csv(_to_arrow_for_csv(df), tmp, pacsv.WriteOptions(quoting_style="needed"))
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(path)
    other = d / f"{table}.{'parquet' if fmt == 'csv' else 'csv'}"
    if other.exists():  # keep the one-file-per-table rule when a directory is rewritten in another format
        other.unlink()
    return path


def read_raw_table(path: str | Path, table: str) -> pd.DataFrame:
    """Read a table file without interpreting values: CSV cells come back as text (empty -> null).

    Raises :class:`ContractError` for empty, unreadable, non-UTF-8 or malformed files.
    """
    p = Path(path)
    if p.stat().st_size == 0:
        raise ContractError(table, "file not empty", f"{p.name} is empty (0 bytes): expected a header row and data")
    if p.suffix == ".parquet":
        try:
            return pq.read_table(p).to_pandas()
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ContractError(table, "readable file", f"cannot read {p.name} as Parquet: {exc}") from exc
    return _read_csv_as_text(p, table)


def _read_csv_as_text(p: Path, table: str) -> pd.DataFrame:
    try:
        with p.open("r", encoding="utf-8", newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as exc:
        raise ContractError(
            table, "UTF-8 encoding", f"{p.name} is not valid UTF-8 (byte {exc.start} of the header): save it as UTF-8"
        ) from exc
    if not header or all(not h.strip() for h in header):
        raise ContractError(table, "header row", f"{p.name} has no header row")
    try:
        tbl = pacsv.read_csv(
            p,
            read_options=pacsv.ReadOptions(block_size=64 << 20),
            parse_options=pacsv.ParseOptions(delimiter=","),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "UTF8" in msg or "utf8" in msg.lower():
            raise ContractError(
                table, "UTF-8 encoding", f"{p.name} contains bytes that are not valid UTF-8: {msg}"
            ) from exc
        raise ContractError(table, "well-formed CSV", f"{p.name} is malformed: {msg}") from exc
    df = tbl.to_pandas(types_mapper=lambda t: pd.StringDtype() if t == pa.string() else None)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
