"""Run the per-table suites with Great Expectations and turn results into plain rule outcomes.

Suites are (re)built idempotently from code every run: an existing suite with the same name is
replaced, so the stored JSON always matches the code. Great Expectations is imported lazily by the
caller (importing this module imports it: 4-7 s on 2 cores), never at CLI start-up.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd

from expectations.common import ROW_ID
from pricing.contract import TABLES

log = logging.getLogger(__name__)

SOURCE_NAME = "bundle_pricing"


@dataclass
class RuleOutcome:
    """The result of one expectation on one table."""

    table: str
    column: str | None
    rule: str
    kind: str  # key | reference | row
    expectation: str
    success: bool
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # positional row ids that failed
    unexpected_count: int = 0
    error: str | None = None  # set when the expectation itself raised


def suite_expectations(table: str) -> list[Any]:
    """The expectations of ``table``'s suite (from ``expectations/<table>.py``)."""
    module = importlib.import_module(f"expectations.{table}")
    return module.expectations()


def _quiet(ctx: Any) -> None:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)


class SuiteRunner:
    """Holds a Great Expectations context (a file context under ``project_dir``, or ephemeral)."""

    def __init__(self, project_dir: str | Path | None = None):
        if project_dir is None:
            self.ctx = gx.get_context(mode="ephemeral")
        else:
            Path(project_dir).mkdir(parents=True, exist_ok=True)
            self.ctx = gx.get_context(mode="file", project_root_dir=str(project_dir))
        _quiet(self.ctx)
        try:
            self.source = self.ctx.data_sources.get(SOURCE_NAME)
        except (KeyError, ValueError, LookupError):
            self.source = self.ctx.data_sources.add_pandas(SOURCE_NAME)
        except Exception:  # noqa: BLE001 -- gx raises its own DataContextError subclasses across versions
            self.source = self.ctx.data_sources.add_pandas(SOURCE_NAME)
        self._validation_defs: dict[str, Any] = {}

    # -- suites ---------------------------------------------------------------------------------
    def build_suite(self, table: str) -> Any:
        """Get-or-replace the suite for ``table`` so it always equals the code (idempotent)."""
        name = f"{table}_suite"
        try:
            self.ctx.suites.delete(name)
        except Exception:  # noqa: BLE001, S110 -- absent on first use; gx's error classes vary by version
            pass
        suite = self.ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in suite_expectations(table):
            suite.add_expectation(exp)
        return suite

    def _validation_definition(self, table: str) -> Any:
        if table in self._validation_defs:
            return self._validation_defs[table]
        try:
            asset = self.source.get_asset(table)
        except Exception:  # noqa: BLE001 -- absent on first use; gx's error classes vary by version
            asset = self.source.add_dataframe_asset(table)
        try:
            bd = asset.get_batch_definition("whole")
        except Exception:  # noqa: BLE001 -- absent on first use; gx's error classes vary by version
            bd = asset.add_batch_definition_whole_dataframe("whole")
        suite = self.build_suite(table)
        name = f"{table}_validation"
        try:
            self.ctx.validation_definitions.delete(name)
        except Exception:  # noqa: BLE001, S110 -- absent on first use; gx's error classes vary by version
            pass
        vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=suite))
        self._validation_defs[table] = vd
        return vd

    # -- running --------------------------------------------------------------------------------
    def validate(self, table: str, df: pd.DataFrame, parameters: dict[str, Any]) -> list[RuleOutcome]:
        """Validate ``df`` (which must hold a ``__row`` column) against the table's suite."""
        if table not in TABLES:
            raise KeyError(f"no suite for table {table!r}")
        vd = self._validation_definition(table)
        res = vd.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=parameters,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]},
        )
        outcomes: list[RuleOutcome] = []
        for r in res.results:
            cfg = r.expectation_config
            kwargs = cfg.kwargs
            meta = cfg.meta or {}
            column = (
                meta.get("column")
                or kwargs.get("column")
                or kwargs.get("column_A")
                or ",".join(kwargs.get("column_list") or [])
                or None
            )
            err = None
            if r.exception_info and r.exception_info.get("raised_exception"):
                err = str(r.exception_info.get("exception_message"))
            rows = np.empty(0, dtype=np.int64)
            result = r.result or {}
            idx = result.get("unexpected_index_list") or []
            if idx:
                rows = np.fromiter((int(d[ROW_ID]) for d in idx), dtype=np.int64, count=len(idx))
            outcomes.append(
                RuleOutcome(
                    table=table,
                    column=column,
                    rule=str(meta.get("rule", cfg.type)),
                    kind=str(meta.get("kind", "row")),
                    expectation=cfg.type,
                    success=bool(r.success),
                    rows=rows,
                    unexpected_count=int(result.get("unexpected_count") or 0),
                    error=err,
                )
            )
        return outcomes

    def build_data_docs(self) -> Path | None:
        """Build the HTML Data Docs and return the path of their index page (None when ephemeral)."""
        try:
            sites = self.ctx.build_data_docs()
        except Exception as exc:  # noqa: BLE001 -- docs are a convenience: never fail a run on them
            log.warning("could not build Data Docs: %s", exc)
            return None
        for url in sites.values():
            if url.startswith("file://"):
                return Path(url[len("file://") :])
        return None
