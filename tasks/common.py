"""Shared pieces for Prefect tasks: retry policy, logging helpers."""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from pricing.contract import ContractError


def no_retry_on_contract_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures (I/O hiccups), never a broken data contract: it would fail again."""
    try:
        state.result()
    except ContractError:
        return False
    except Exception:  # noqa: BLE001 -- any other failure may be transient: retry it
        return True
    return True


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run, the module logger outside (plain library use, tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("bundle_pricing")
