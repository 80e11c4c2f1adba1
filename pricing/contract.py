"""Data contract v1: the tables a shop hands over, their columns and rules.

This module is the single source of truth for the contract. The README's contract table, the
readers in :mod:`pricing.io`, the Great Expectations suites in ``expectations/`` and the simulator
all derive from the specs below, so a change here is a change of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CONTRACT_VERSION = "1"

ColumnKind = Literal["id", "string", "int", "float", "timestamp", "date"]

#: Column names treated as personal data: dropped at ingestion and never written anywhere.
#: Matching is case-insensitive on the normalised name (lower case, spaces/dashes -> underscores),
#: and also catches names that *contain* one of the stems in :data:`PII_STEMS`.
PII_COLUMNS: frozenset[str] = frozenset(
    {
        "email",
        "e_mail",
        "phone",
        "phone_number",
        "mobile",
        "name",
        "first_name",
        "last_name",
        "full_name",
        "surname",
        "address",
        "street",
        "street_address",
        "postcode",
        "zip",
        "zip_code",
        "birth_date",
        "date_of_birth",
        "dob",
        "ip",
        "ip_address",
        "iban",
        "credit_card",
        "card_number",
        "ssn",
    }
)
PII_STEMS: tuple[str, ...] = ("email", "phone", "address", "first_name", "last_name", "full_name", "card_number")

#: Separator of ``bundles.product_ids``.
BUNDLE_ITEM_SEP = "|"

EVENT_TYPES: tuple[str, ...] = ("view", "search", "add_to_cart")


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: ColumnKind
    required: bool = True  # the column must be present in the file
    nullable: bool = False  # empty cells allowed
    description: str = ""
    min_value: float | None = None  # inclusive lower bound
    min_exclusive: bool = False  # when true, the bound is strict (> instead of >=)
    allowed: tuple[str | int, ...] | None = None  # allowed set of values
    references: str | None = None  # "table.column" that non-null values must exist in


@dataclass(frozen=True)
class TableSpec:
    """A contract table: its columns, keys and whether the shop must provide it."""

    name: str
    required: bool
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # unique, not-null key (single or compound)
    description: str = ""
    time_column: str | None = None  # the column that must not lie in the future

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="products",
            required=True,
            key=("product_id",),
            description="The catalog: one row per product.",
            columns=(
                Column("product_id", "id", description="unique product id"),
                Column("category", "string", description="product category"),
                Column("unit_cost", "float", min_value=0.0, min_exclusive=True, description="cost per unit, > 0"),
                Column("list_price", "float", min_value=0.0, min_exclusive=True, description="list price, >= unit_cost"),
                Column(
                    "inventory",
                    "int",
                    required=False,
                    nullable=True,
                    min_value=0,
                    description="units in stock, >= 0; empty means not limited",
                ),
            ),
        ),
        TableSpec(
            name="customers",
            required=True,
            key=("customer_id",),
            description="Customers: one row per customer (no personal data).",
            columns=(
                Column("customer_id", "id", description="unique customer id"),
                Column("signup_date", "date", required=False, nullable=True, description="YYYY-MM-DD"),
                Column("region", "string", required=False, nullable=True, description="free-text region"),
            ),
        ),
        TableSpec(
            name="orders",
            required=True,
            time_column="order_time",
            description="Order lines: one row per (order, product).",
            columns=(
                Column("order_id", "id", description="order id (repeats across the order's lines)"),
                Column("order_time", "timestamp", description="ISO 8601; naive means UTC"),
                Column("customer_id", "id", references="customers.customer_id"),
                Column("product_id", "id", references="products.product_id"),
                Column("quantity", "int", min_value=1, description="units, >= 1"),
                Column("unit_price", "float", min_value=0.0, description="price paid per unit, >= 0"),
                Column(
                    "bundle_id",
                    "id",
                    required=False,
                    nullable=True,
                    references="bundles.bundle_id",
                    description="set when the line was sold as part of a bundle",
                ),
            ),
        ),
        TableSpec(
            name="events",
            required=False,
            time_column="event_time",
            description="Behaviour events: views (with browse time), searches, add-to-cart.",
            columns=(
                Column("event_time", "timestamp"),
                Column("customer_id", "id", references="customers.customer_id"),
                Column(
                    "product_id",
                    "id",
                    nullable=True,
                    references="products.product_id",
                    description="needed for view and add_to_cart",
                ),
                Column("event_type", "string", allowed=EVENT_TYPES),
                Column("duration_s", "float", required=False, nullable=True, min_value=0.0, description="browse seconds"),
                Column("query", "string", required=False, nullable=True, description="search text, needed for search"),
            ),
        ),
        TableSpec(
            name="competitor_prices",
            required=False,
            key=("date", "product_id", "competitor"),
            time_column="date",
            description="Competitors' prices of our products by day.",
            columns=(
                Column("date", "date"),
                Column("product_id", "id", references="products.product_id"),
                Column("competitor", "string"),
                Column("price", "float", min_value=0.0, min_exclusive=True),
            ),
        ),
        TableSpec(
            name="bundles",
            required=False,
            key=("bundle_id",),
            description="Bundles the shop sells; mined from co-purchases when absent.",
            columns=(
                Column("bundle_id", "id"),
                Column(
                    "product_ids",
                    "string",
                    description="two or more distinct product ids joined by '|'",
                ),
            ),
        ),
        TableSpec(
            name="offers",
            required=False,
            key=("offer_id",),
            time_column="offer_time",
            description="Log of bundle offers shown: the price shown and whether it was taken.",
            columns=(
                Column("offer_id", "id"),
                Column("offer_time", "timestamp"),
                Column("customer_id", "id", references="customers.customer_id"),
                Column("bundle_id", "id", references="bundles.bundle_id"),
                Column("offered_price", "float", min_value=0.0, min_exclusive=True),
                Column("accepted", "int", allowed=(0, 1)),
            ),
        ),
    )
}

#: Order in which tables are ingested: parents before the tables that reference them.
TABLE_ORDER: tuple[str, ...] = (
    "products",
    "customers",
    "bundles",
    "orders",
    "events",
    "competitor_prices",
    "offers",
)


def normalise_column_name(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def is_pii_column(name: str) -> bool:
    """True when a column name looks like personal data (see :data:`PII_COLUMNS`)."""
    n = normalise_column_name(name)
    return n in PII_COLUMNS or any(stem in n for stem in PII_STEMS)


@dataclass
class ContractError(Exception):
    """A hard failure of the data contract: the flow stops and nothing downstream is written."""

    table: str
    rule: str
    message: str
    column: str | None = None
    examples: list[dict] = field(default_factory=list)

    def __str__(self) -> str:  # one readable paragraph: table, column, rule, a few offending rows
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"[{where}] {self.rule}: {self.message}"
        if self.examples:
            shown = "; ".join(str(e) for e in self.examples[:5])
            text += f" | e.g. {shown}"
        return text


def contract_markdown() -> str:
    """The contract as a markdown table (used by the README and `bundle-pricing contract`)."""
    lines = ["| table | needed | key | columns |", "|---|---|---|---|"]
    for name in TABLE_ORDER:
        spec = TABLES[name]
        cols = []
        for c in spec.columns:
            bits = [c.kind]
            if not c.required:
                bits.append("optional column")
            if c.nullable:
                bits.append("nullable")
            if c.min_value is not None:
                bits.append(("> " if c.min_exclusive else ">= ") + f"{c.min_value:g}")
            if c.allowed is not None:
                bits.append("in {" + ", ".join(map(str, c.allowed)) + "}")
            if c.references:
                bits.append(f"in {c.references}")
            cols.append(f"{c.name} ({', '.join(bits)})")
        needed = "yes" if spec.required else "no"
        lines.append(f"| {name} | {needed} | {', '.join(spec.key) or '-'} | {'; '.join(cols)} |")
    return "\n".join(lines)
