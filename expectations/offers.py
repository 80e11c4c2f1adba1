"""Suite for ``offers``: the offer log, with known customers and bundles and a 0/1 outcome."""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations

TABLE = "offers"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE)
