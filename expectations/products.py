"""Suite for ``products``: the contract's rules plus list price at least the unit cost."""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations, meta

TABLE = "products"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE) + [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="list_price", column_B="unit_cost", or_equal=True, meta=meta("row", "list_price >= unit_cost")
        ),
    ]
