"""Suite for ``events``: a product for views and add-to-cart, a query for searches."""

import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from expectations.common import contract_expectations, meta

TABLE = "events"


def expectations() -> list[gxe.Expectation]:
    return contract_expectations(TABLE) + [
        gxe.ExpectColumnValuesToNotBeNull(
            column="product_id",
            row_condition=Column("event_type").is_in(["view", "add_to_cart"]),
            meta=meta("row", "product_id needed for view and add_to_cart"),
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="query",
            row_condition=Column("event_type") == "search",
            meta=meta("row", "query needed for search"),
        ),
    ]
