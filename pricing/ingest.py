"""Validated ingestion: raw contract tables in, typed and validated Parquet snapshot out.

Steps per table (parents before children, see :data:`pricing.contract.TABLE_ORDER`):

1. :func:`read_table` – find and read the file (hard failure: missing required file, empty,
   unreadable, non-UTF-8, malformed CSV); drop personal-data columns and ignore extra columns.
2. :func:`coerce_table` – type every column as the contract says. A cell that does not parse is a
   row failure; a column where more than the tolerated share fails is a hard "wrong type" failure.
3. Great Expectations suite (``expectations/<table>.py``) on the typed frame: keys, ranges, allowed
   sets, not in the future, references to parent tables (:func:`validate_table`).
4. :func:`decide` – key failures stop the run; row and reference failures are quarantined with their
   reason when their share is within the configured tolerance, else the run stops.
5. :func:`write_snapshot` – typed tables, quarantine files and a summary, written atomically into
   ``<out>/snapshots/<fingerprint>/``. The fingerprint is a content hash of the raw input files plus
   the contract version and ingest settings, for lineage and caching.

Nothing here imports Prefect; the flow in ``flows/ingest.py`` wraps these functions as tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pricing.config import IngestConfig
from pricing.contract import (
    BUNDLE_ITEM_SEP,
    CONTRACT_VERSION,
    TABLE_ORDER,
    TABLES,
    Column,
    ContractError,
    is_pii_column,
)
from pricing.io import file_sha256, find_table_file, read_raw_table

log = logging.getLogger(__name__)

ROW_ID = "__row"  # positional id of a row in its source file (0-based, header excluded)
SNAPSHOT_SUMMARY = "summary.json"


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
@dataclass
class RuleCount:
    column: str | None
    rule: str
    kind: str
    rows: int


@dataclass
class TableReport:
    table: str
    source: str | None
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    pii_columns_dropped: list[str] = field(default_factory=list)
    extra_columns_ignored: list[str] = field(default_factory=list)
    failures: list[RuleCount] = field(default_factory=list)
    seconds: float = 0.0
    present: bool = True


@dataclass
class IngestSummary:
    data_dir: str
    fingerprint: str
    snapshot_dir: str | None
    tables: dict[str, TableReport]
    data_docs: str | None = None
    seconds: float = 0.0
    created_at: str = ""
    contract_version: str = CONTRACT_VERSION
    reused: bool = False  # an identical snapshot (same fingerprint) already existed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            "# Ingestion summary",
            "",
            f"- data: `{self.data_dir}`",
            f"- fingerprint: `{self.fingerprint}`" + (" (reused existing snapshot)" if self.reused else ""),
            f"- snapshot: `{self.snapshot_dir}`",
            f"- Data Docs: `{self.data_docs}`" if self.data_docs else "- Data Docs: not built",
            f"- time: {self.seconds:.1f} s",
            "",
            "| table | file | rows read | valid | quarantined | personal data dropped | extra ignored |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for name in TABLE_ORDER:
            r = self.tables.get(name)
            if r is None:
                continue
            if not r.present:
                lines.append(f"| {name} | (absent, optional) | 0 | 0 | 0 | | |")
                continue
            lines.append(
                f"| {name} | {Path(r.source).name if r.source else ''} | {r.rows_read:,} | {r.rows_valid:,} | "
                f"{r.rows_quarantined:,} | {', '.join(r.pii_columns_dropped)} | {', '.join(r.extra_columns_ignored)} |"
            )
        fails = [(n, f) for n, r in self.tables.items() for f in r.failures]
        if fails:
            lines += ["", "Quarantined rows by rule:", "", "| table | column | rule | rows |", "|---|---|---|---:|"]
            lines += [f"| {n} | {f.column or ''} | {f.rule} | {f.rows:,} |" for n, f in fails]
        return "\n".join(lines)


@dataclass
class PreparedTable:
    """A table read and typed, before the suite runs."""

    table: str
    source: Path
    raw: pd.DataFrame  # text as read (personal data already dropped), for the quarantine file
    typed: pd.DataFrame  # contract columns, typed, plus ROW_ID
    type_failures: dict[str, np.ndarray]  # column -> failing ROW_IDs
    report: TableReport


@dataclass
class ValidatedTable:
    table: str
    data: pd.DataFrame  # valid rows, contract columns only
    quarantine: pd.DataFrame  # raw text of failing rows + _line + _reason
    report: TableReport


class Validator(Protocol):
    """What the ingestion needs from the Great Expectations runner (``expectations.runner.SuiteRunner``)."""

    def validate(self, table: str, df: pd.DataFrame, parameters: dict[str, Any]) -> list[Any]: ...


# --------------------------------------------------------------------------------------------------
# 1. Read
# --------------------------------------------------------------------------------------------------
def read_table(data_dir: str | Path, table: str) -> tuple[Path, pd.DataFrame, TableReport] | None:
    """Read ``table`` from ``data_dir`` as text; None when an optional table is absent."""
    spec = TABLES[table]
    path = find_table_file(data_dir, table)
    if path is None:
        if spec.required:
            raise ContractError(
                table,
                "required file",
                f"no {table}.csv or {table}.parquet in {data_dir}: this table is required by the data contract",
            )
        return None
    raw = read_raw_table(path, table)
    report = TableReport(table=table, source=str(path), rows_read=len(raw))
    pii = [c for c in raw.columns if is_pii_column(c)]
    if pii:
        raw = raw.drop(columns=pii)
        report.pii_columns_dropped = pii
    known = set(spec.column_names)
    report.extra_columns_ignored = [c for c in raw.columns if c not in known]
    missing = [c.name for c in spec.columns if c.required and c.name not in raw.columns]
    if missing:
        raise ContractError(
            table,
            "required columns",
            f"{path.name} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, raw.columns))}",
            column=missing[0],
        )
    if len(raw) == 0:
        raise ContractError(table, "has rows", f"{path.name} has a header but no rows")
    raw = raw[[c for c in spec.column_names if c in raw.columns]].reset_index(drop=True)
    return path, raw, report


# --------------------------------------------------------------------------------------------------
# 2. Types
# --------------------------------------------------------------------------------------------------
def _coerce_column(s: pd.Series, col: Column) -> pd.Series:
    """Parse one column; cells that do not parse become null (the caller compares null masks)."""
    kind = col.kind
    if kind == "id":
        if pd.api.types.is_float_dtype(s) and s.dropna().mod(1).eq(0).all():
            s = s.astype("Int64")
        out = s.astype("string").str.strip()
        return out.mask(out == "")
    if kind == "string":
        out = s.astype("string")
        return out.mask(out.str.strip() == "")
    if kind in ("int", "float"):
        num = pd.to_numeric(s, errors="coerce") if not pd.api.types.is_numeric_dtype(s) else s
        num = num.astype("float64")
        if kind == "int":
            frac = num.notna() & (num.mod(1) != 0)
            num = num.mask(frac)
            return num.astype("Int64")
        return num
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(s):
            ts = s
            if getattr(ts.dt, "tz", None) is None:
                ts = ts.dt.tz_localize("UTC")
            return ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        return pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce").astype("datetime64[us, UTC]")
    if kind == "date":
        if pd.api.types.is_datetime64_any_dtype(s) or s.dtype == object and len(s) and hasattr(s.iloc[0], "year"):
            d = pd.to_datetime(s)
            if getattr(d.dt, "tz", None) is not None:
                d = d.dt.tz_convert("UTC").dt.tz_localize(None)
            return d.dt.normalize().astype("datetime64[us]")
        return pd.to_datetime(s, format="%Y-%m-%d", errors="coerce").astype("datetime64[us]")
    raise ValueError(f"unknown column kind {kind}")


def _null_template(col: Column, n: int) -> pd.Series:
    dtype = {
        "id": "string",
        "string": "string",
        "int": "Int64",
        "float": "float64",
        "timestamp": "datetime64[us, UTC]",
        "date": "datetime64[us]",
    }[col.kind]
    return pd.Series(pd.array([None] * n, dtype=dtype) if dtype in ("string", "Int64") else np.full(n, None), dtype=dtype)


def coerce_table(
    table: str, raw: pd.DataFrame, cfg: IngestConfig
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Type ``raw`` per the contract. Returns the typed frame (with ROW_ID) and type failures per column.

    Raises :class:`ContractError` ("wrong type") when a column's failing share exceeds the tolerance.
    """
    spec = TABLES[table]
    n = len(raw)
    cols: dict[str, pd.Series] = {}
    failures: dict[str, np.ndarray] = {}
    for col in spec.columns:
        if col.name not in raw.columns:
            cols[col.name] = _null_template(col, n)
            continue
        src = raw[col.name]
        typed = _coerce_column(src, col)
        was_set = src.notna().to_numpy(copy=True)
        if src.dtype == "string" or src.dtype == object:
            was_set &= (src.astype("string").str.strip() != "").fillna(False).to_numpy(dtype=bool)
        bad = was_set & typed.isna().to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)
            share = len(rows) / max(n, 1)
            if share > cfg.max_row_failure_share:
                examples = [
                    {"line": _line(i), col.name: str(src.iloc[i])} for i in rows[: cfg.examples_in_messages]
                ]
                raise ContractError(
                    table,
                    f"type {col.kind}",
                    f"{len(rows):,} of {n:,} values ({share:.1%}) are not a valid {_kind_text(col)} "
                    f"(tolerance {cfg.max_row_failure_share:.1%}): wrong type",
                    column=col.name,
                    examples=examples,
                )
            failures[col.name] = rows
        cols[col.name] = typed.reset_index(drop=True)
    typed_df = pd.DataFrame(cols)
    typed_df[ROW_ID] = np.arange(n, dtype=np.int64)
    return typed_df, failures


def _kind_text(col: Column) -> str:
    return {
        "id": "identifier",
        "string": "text",
        "int": "whole number",
        "float": "number",
        "timestamp": "ISO 8601 timestamp",
        "date": "date (YYYY-MM-DD)",
    }[col.kind]


def _line(row: int) -> int:
    """Row position -> line number in a CSV file (header is line 1)."""
    return int(row) + 2


def prepare_table(data_dir: str | Path, table: str, cfg: IngestConfig) -> PreparedTable | None:
    """Read and type one table (steps 1 and 2); None for an absent optional table."""
    t0 = time.perf_counter()
    got = read_table(data_dir, table)
    if got is None:
        return None
    path, raw, report = got
    typed, type_failures = coerce_table(table, raw, cfg)
    report.seconds = time.perf_counter() - t0
    return PreparedTable(table, path, raw, typed, type_failures, report)


# --------------------------------------------------------------------------------------------------
# 3. Suite
# --------------------------------------------------------------------------------------------------
def validation_view(prep: PreparedTable, parent_keys: dict[str, pd.Series]) -> pd.DataFrame:
    """The frame the suite sees: typed rows without type failures, plus derived columns.

    Derived columns: ``_ref_<column>`` (the value exists in the referenced parent's valid keys, or is
    null) for every reference, and for bundles ``_n_items``, ``_n_distinct_items``, ``_items_known``.
    """
    df = prep.typed
    if prep.type_failures:
        bad = np.unique(np.concatenate(list(prep.type_failures.values())))
        df = df[~df[ROW_ID].isin(bad)]
    derived: dict[str, Any] = {}
    for col in TABLES[prep.table].columns:
        if col.references:
            keys = parent_keys.get(col.references, pd.Series([], dtype="string"))
            s = df[col.name]
            derived[f"_ref_{col.name}"] = (s.isna() | s.isin(keys)).to_numpy(dtype=bool)
    if prep.table == "bundles":
        items = df["product_ids"].fillna("").str.split(BUNDLE_ITEM_SEP)
        items = items.map(lambda xs: [x.strip() for x in xs if x.strip()])
        known = set(parent_keys.get("products.product_id", pd.Series([], dtype="string")).tolist())
        derived["_n_items"] = items.map(len).astype("int64")
        derived["_n_distinct_items"] = items.map(lambda xs: len(set(xs))).astype("int64")
        derived["_items_known"] = items.map(lambda xs: all(x in known for x in xs)).astype(bool)
    return df.assign(**derived) if derived else df


def suite_parameters(now: pd.Timestamp) -> dict[str, Any]:
    """Run-time parameters of the suites: the limit of the "not in the future" rule."""
    return {"now": now, "today": now.tz_convert("UTC").tz_localize(None).normalize()}


def validate_table(
    prep: PreparedTable,
    validator: Validator,
    parent_keys: dict[str, pd.Series],
    now: pd.Timestamp,
) -> list[Any]:
    """Run the table's Great Expectations suite; returns rule outcomes (see expectations.runner)."""
    view = validation_view(prep, parent_keys)
    return validator.validate(prep.table, view, suite_parameters(now))


# --------------------------------------------------------------------------------------------------
# 4. Decide: hard failure or quarantine
# --------------------------------------------------------------------------------------------------
def decide(prep: PreparedTable, outcomes: list[Any], cfg: IngestConfig) -> ValidatedTable:
    """Apply the failure policy. Raises :class:`ContractError` on a hard failure."""
    t0 = time.perf_counter()
    table, n = prep.table, len(prep.typed)
    raw = prep.raw
    for o in outcomes:
        if o.error:
            raise ContractError(table, o.rule, f"the check could not run: {o.error}", column=o.column)
    # keys: any failure is hard
    for o in outcomes:
        if o.kind == "key" and not o.success:
            raise ContractError(
                table,
                o.rule,
                f"{o.unexpected_count:,} rows break the key rule; keys must be unique and set",
                column=o.column,
                examples=_examples(raw, o.rows, o.column, cfg),
            )
    reasons: dict[int, list[str]] = {}
    counts: list[RuleCount] = []
    for col, rows in prep.type_failures.items():
        kind = TABLES[table].column(col).kind
        counts.append(RuleCount(col, f"type {kind}", "row", len(rows)))
        for r in rows:
            reasons.setdefault(int(r), []).append(f"{col}: not a valid {kind}")
    for kind, tol in (("row", cfg.max_row_failure_share), ("reference", cfg.max_reference_failure_share)):
        for o in outcomes:
            if o.kind != kind or o.success:
                continue
            share = o.unexpected_count / max(n, 1)
            if share > tol:
                what = "unknown references" if kind == "reference" else "rows break this rule"
                raise ContractError(
                    table,
                    o.rule,
                    f"{o.unexpected_count:,} of {n:,} rows ({share:.1%}): {what}; "
                    f"at most {tol:.1%} can be quarantined",
                    column=o.column,
                    examples=_examples(raw, o.rows, o.column, cfg),
                )
            counts.append(RuleCount(o.column, o.rule, kind, o.unexpected_count))
            for r in o.rows:
                reasons.setdefault(int(r), []).append(f"{o.column}: {o.rule}" if o.column else o.rule)
    bad_rows = np.array(sorted(reasons), dtype=np.int64)
    share = len(bad_rows) / max(n, 1)
    tol_all = max(cfg.max_row_failure_share, cfg.max_reference_failure_share)
    if share > tol_all:
        raise ContractError(
            table,
            "rows quarantined",
            f"{len(bad_rows):,} of {n:,} rows ({share:.1%}) fail some rule; at most {tol_all:.1%} can be quarantined",
            examples=[{"line": _line(r), "reasons": "; ".join(reasons[int(r)])} for r in bad_rows[: cfg.examples_in_messages]],
        )
    keep = ~prep.typed[ROW_ID].isin(bad_rows)
    data = prep.typed.loc[keep, TABLES[table].column_names].reset_index(drop=True)
    quarantine = raw.iloc[bad_rows].copy() if len(bad_rows) else raw.iloc[0:0].copy()
    quarantine.insert(0, "_line", [_line(r) for r in bad_rows])
    quarantine["_reason"] = ["; ".join(reasons[int(r)]) for r in bad_rows]
    report = prep.report
    report.rows_valid = len(data)
    report.rows_quarantined = len(bad_rows)
    report.failures = counts
    report.seconds += time.perf_counter() - t0
    return ValidatedTable(table, data, quarantine.reset_index(drop=True), report)


def _examples(raw: pd.DataFrame, rows: np.ndarray, column: str | None, cfg: IngestConfig) -> list[dict]:
    out = []
    cols = [c for c in (column or "").split(",") if c in raw.columns]
    for r in np.asarray(rows)[: cfg.examples_in_messages]:
        rec: dict[str, Any] = {"line": _line(r)}
        for c in cols or list(raw.columns)[:4]:
            v = raw.iloc[int(r)][c]
            rec[c] = None if pd.isna(v) else str(v)
        out.append(rec)
    return out


def parent_keys_of(table: ValidatedTable) -> dict[str, pd.Series]:
    """Keys that child tables may reference, taken from the *valid* rows only."""
    spec = TABLES[table.table]
    if len(spec.key) != 1:
        return {}
    k = spec.key[0]
    return {f"{table.table}.{k}": table.data[k]}


# --------------------------------------------------------------------------------------------------
# 5. Fingerprint and snapshot
# --------------------------------------------------------------------------------------------------
def input_fingerprint(data_dir: str | Path, cfg: IngestConfig) -> str:
    """Content hash of the raw table files (those the contract knows) + contract version + settings."""
    h = hashlib.sha256()
    h.update(f"contract={CONTRACT_VERSION}".encode())
    h.update(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    for table in TABLE_ORDER:
        p = find_table_file(data_dir, table)
        if p is not None:
            h.update(f"{table}:{p.suffix}:{file_sha256(p)}".encode())
    return h.hexdigest()[:20]


def snapshot_path(out_dir: str | Path, fingerprint: str) -> Path:
    return Path(out_dir) / "snapshots" / fingerprint


def write_snapshot(
    tables: dict[str, ValidatedTable], out_dir: str | Path, summary: IngestSummary
) -> Path:
    """Write typed tables, quarantine files and the summary atomically; return the snapshot folder."""
    final = snapshot_path(out_dir, summary.fingerprint)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "quarantine").mkdir()
    for name, vt in tables.items():
        vt.data.to_parquet(tmp / f"{name}.parquet", index=False)
        if len(vt.quarantine):
            vt.quarantine.astype("string").to_csv(tmp / "quarantine" / f"{name}.csv", index=False)
    summary.snapshot_dir = str(final.resolve())
    (tmp / SNAPSHOT_SUMMARY).write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    latest = Path(out_dir) / "LATEST"
    latest.write_text(summary.fingerprint + "\n")
    return final


def load_snapshot(snapshot_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read a snapshot's typed tables (absent optional tables are simply missing from the dict)."""
    d = Path(snapshot_dir)
    if not (d / SNAPSHOT_SUMMARY).exists():
        raise FileNotFoundError(f"{d} is not an ingestion snapshot (no {SNAPSHOT_SUMMARY})")
    return {t: pd.read_parquet(d / f"{t}.parquet") for t in TABLE_ORDER if (d / f"{t}.parquet").exists()}


def latest_snapshot(out_dir: str | Path) -> Path | None:
    p = Path(out_dir) / "LATEST"
    if not p.exists():
        return None
    snap = snapshot_path(out_dir, p.read_text().strip())
    return snap if snap.exists() else None


# --------------------------------------------------------------------------------------------------
# Time limit for the "not in the future" rule
# --------------------------------------------------------------------------------------------------
def now_limit(cfg: IngestConfig, now: pd.Timestamp | None = None) -> pd.Timestamp:
    base = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if base.tzinfo is None:
        base = base.tz_localize("UTC")
    return base + pd.Timedelta(minutes=cfg.future_tolerance_minutes)
