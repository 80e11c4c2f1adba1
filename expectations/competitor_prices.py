"""Suite for ``competitor_prices``: one price per (date, product, competitor), positive."""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations

TABLE = "competitor_prices"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE)
