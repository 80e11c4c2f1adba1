"""Suite for ``bundles``: two or more distinct, known products per bundle.

``product_ids`` is one text cell ("p1|p2"); the validation view adds two derived columns so the rules
can be stated as expectations: ``_n_distinct_items`` and ``_items_known`` (every item in products).
"""

import great_expectations.expectations as gxe

from expectations.common import contract_expectations, meta

TABLE = "bundles"
DERIVED = ("_n_distinct_items", "_n_items", "_items_known")


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE) + [
        gxe.ExpectColumnValuesToBeBetween(
            column="_n_distinct_items", min_value=2, meta=meta("row", "two or more distinct items")
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="_n_items", column_B="_n_distinct_items", meta=meta("row", "items distinct")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="_items_known", value_set=[True], meta=meta("reference", "every item exists in products.product_id")
        ),
    ]
