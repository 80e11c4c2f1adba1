"""Building blocks shared by the per-table suites: expectations derived from the data contract.

Every expectation carries ``meta = {"kind": ..., "rule": ...}``:
- ``kind="key"``: key uniqueness / not-null. A failure is a hard failure of the run.
- ``kind="reference"``: a value must exist in a parent table. Failing rows are quarantined up to
  ``ingest.max_reference_failure_share``; above it the run stops.
- ``kind="row"``: any other row rule (ranges, allowed sets, not in the future, ...). Failing rows are
  quarantined up to ``ingest.max_row_failure_share``; above it the run stops.
The current time is a suite parameter (``{"$PARAMETER": "now"}``) and references are checked on
derived boolean columns (:func:`ref_column`), so the suites are static and built idempotently.
"""

from __future__ import annotations

from typing import Any

import great_expectations.expectations as gxe

from pricing.contract import TABLES, TableSpec

ROW_ID = "__row"  # positional row id added to every validated frame, used to locate failing rows


def now_param(spec: TableSpec) -> str:
    return "today" if spec.column(spec.time_column).kind == "date" else "now"


def ref_column(column: str) -> str:
    """Derived boolean column of the validation view: the value of ``column`` exists in its parent.

    References are checked on a derived column, not with the parent's keys as a value set: Great
    Expectations copies a value set through pydantic for every metric, which costs seconds per
    expectation with 200k keys.
    """
    return f"_ref_{column}"


def _meta(kind: str, rule: str) -> dict[str, Any]:
    return {"kind": kind, "rule": rule}


def contract_expectations(table: str) -> list[gxe.Expectation]:
    """The expectations every table gets from its contract spec."""
    spec = TABLES[table]
    out: list[gxe.Expectation] = []
    if len(spec.key) == 1:
        k = spec.key[0]
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=k, meta=_meta("key", "key not null")))
        out.append(gxe.ExpectColumnValuesToBeUnique(column=k, meta=_meta("key", "key unique")))
    elif spec.key:
        for k in spec.key:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=k, meta=_meta("key", "key not null")))
        out.append(
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=list(spec.key), meta=_meta("key", f"({', '.join(spec.key)}) unique")
            )
        )
    for col in spec.columns:
        if col.name in spec.key:
            continue
        if not col.nullable and col.required:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col.name, meta=_meta("row", "not null")))
        if col.min_value is not None:
            op = ">" if col.min_exclusive else ">="
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col.name,
                    min_value=col.min_value,
                    strict_min=col.min_exclusive,
                    meta=_meta("row", f"{op} {col.min_value:g}"),
                )
            )
        if col.allowed is not None:
            out.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col.name,
                    value_set=list(col.allowed),
                    meta=_meta("row", "in {" + ", ".join(map(str, col.allowed)) + "}"),
                )
            )
        if col.references:
            out.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=ref_column(col.name),
                    value_set=[True],
                    meta={**_meta("reference", f"exists in {col.references}"), "column": col.name},
                )
            )
    if spec.time_column:
        p = now_param(spec)
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=spec.time_column,
                max_value={"$PARAMETER": p},
                meta=_meta("row", "not in the future"),
            )
        )
    return out


def optional_columns(table: str) -> set[str]:
    return {c.name for c in TABLES[table].columns if not c.required}


def meta(kind: str, rule: str) -> dict[str, Any]:
    """Public alias for the per-table modules."""
    return _meta(kind, rule)
