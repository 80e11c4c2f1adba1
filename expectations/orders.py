"""Suite for ``orders``: order lines with known customers, products and (when set) bundles."""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations

TABLE = "orders"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE)
