"""Suite for ``customers``: unique, non-null ids (signup date and region are optional)."""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations

TABLE = "customers"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE)
