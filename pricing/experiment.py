"""Experiment groups of a published price book: treatment, control and exploration.

Every customer falls in exactly one group, decided by a hash of ``(experiment.seed, customer_id)``
(SHA-256, first 8 bytes as a uniform number ``u`` in [0, 1)): ``control`` when
``u < control_share``, ``exploration`` when ``u < control_share + exploration_share``, else
``treatment``. The assignment is therefore stable across runs, processes and machines, and a
customer who was not known when the book was priced still gets a well-defined group.

What each group is shown (:func:`offer_prices`):

* ``treatment``: the book's price (personal offer, else the segment price; :func:`pricing.evaluation.price_lookup`);
* ``control``: the control price of the bundle written into the manifest by :func:`with_groups`:
  the list price (``control_policy: list``) or the previous price book's price of the bundle
  (``previous``: the median of its segment prices; the list price for a bundle the previous book lacks
  or when there is no previous book). Comparing treatment with control measures the lift of the book;
* ``exploration``: a random ladder price the per-price rules allow (margin floor, never above the list
  price, at most ``max_change`` away from the book's price of the bundle), drawn per offer, so price
  response stays learnable in the next training round.

:func:`with_groups` adds a ``group`` column to ``customer_segments`` and an ``experiment`` entry to
the manifest (shares, seed, control policy, control prices, group sizes).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from pricing.config import Config, ExperimentConfig, OptimizeConfig
from pricing.evaluation import price_lookup
from pricing.ladder import build_ladder
from pricing.pricebook import PriceBook

__all__ = [
    "CONTROL",
    "EXPLORATION",
    "GROUPS",
    "TREATMENT",
    "assign_groups",
    "control_prices",
    "experiment_of",
    "offer_prices",
    "with_groups",
]

TREATMENT = "treatment"
CONTROL = "control"
EXPLORATION = "exploration"
GROUPS: tuple[str, ...] = (TREATMENT, CONTROL, EXPLORATION)

_HASH_BYTES = 8  # 64-bit uniform from the SHA-256 digest
_HASH_SCALE = float(2**64)


def _unit_hash(customer_ids: Any, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per customer id, from SHA-256 of ``"<seed>:<customer_id>"``."""
    ids = np.asarray(customer_ids, dtype=object).astype(str)
    out = np.empty(len(ids), dtype=np.float64)
    prefix = f"{int(seed)}:".encode()
    for i, cid in enumerate(ids):
        digest = hashlib.sha256(prefix + cid.encode()).digest()
        out[i] = int.from_bytes(digest[:_HASH_BYTES], "big") / _HASH_SCALE
    return out


def assign_groups(customer_ids: Any, cfg: ExperimentConfig) -> np.ndarray:
    """The group of each customer id (``treatment`` / ``control`` / ``exploration``), deterministic."""
    u = _unit_hash(customer_ids, cfg.seed)
    groups = np.full(len(u), TREATMENT, dtype=object)
    groups[u < cfg.control_share + cfg.exploration_share] = EXPLORATION
    groups[u < cfg.control_share] = CONTROL
    return groups


def _bundle_catalog(book: PriceBook) -> pd.DataFrame:
    """One row per bundle of the book: ``bundle_id, list_price, unit_cost, book_price`` (min over segments)."""
    bp = book.bundle_prices
    missing = [c for c in ("bundle_id", "price", "list_price", "unit_cost") if c not in bp.columns]
    if missing:
        raise ValueError(f"the price book's bundle_prices lacks column(s) {', '.join(missing)}")
    bp = bp.astype({"bundle_id": str})
    return bp.groupby("bundle_id", sort=True).agg(
        list_price=("list_price", "first"), unit_cost=("unit_cost", "first"), book_price=("price", "min")
    ).reset_index()


def control_prices(book: PriceBook, cfg: ExperimentConfig, previous: PriceBook | None = None) -> dict[str, float]:
    """Control price of every bundle of ``book``: its list price, or the previous book's (median segment) price."""
    cat = _bundle_catalog(book)
    price = cat.set_index("bundle_id")["list_price"].astype(float)
    if cfg.control_policy == "previous" and previous is not None and len(previous.bundle_prices):
        prev = previous.bundle_prices.astype({"bundle_id": str}).groupby("bundle_id")["price"].median()
        price = prev.reindex(price.index).fillna(price)
    return {str(k): round(float(v), 2) for k, v in price.items()}


def with_groups(book: PriceBook, config: Config, previous: PriceBook | None = None) -> PriceBook:
    """A copy of ``book`` whose ``customer_segments`` carry a ``group`` column and whose manifest has an
    ``experiment`` entry (shares, seed, control policy, control price per bundle, group sizes)."""
    cfg = config.experiment
    seg = book.customer_segments.copy()
    if "customer_id" not in seg.columns:
        raise ValueError("the price book's customer_segments lacks the customer_id column")
    seg["group"] = assign_groups(seg["customer_id"].to_numpy(), cfg)
    counts = seg["group"].value_counts()
    used_previous = cfg.control_policy == "previous" and previous is not None
    manifest = {
        **book.manifest,
        "experiment": {
            "control_share": cfg.control_share,
            "exploration_share": cfg.exploration_share,
            "control_policy": cfg.control_policy,
            "control_source": "previous price book" if used_previous else "list price",
            "seed": cfg.seed,
            "assignment": "sha256(seed:customer_id) -> u in [0,1): control < control_share <= exploration "
            "< control_share + exploration_share <= treatment",
            "customers": {g: int(counts.get(g, 0)) for g in GROUPS},
            "control_prices": control_prices(book, cfg, previous),
        },
    }
    return replace(book, customer_segments=seg, manifest=manifest)


def experiment_of(book: PriceBook) -> ExperimentConfig | None:
    """The experiment settings recorded in the book's manifest (None: a book published without groups)."""
    exp = book.manifest.get("experiment")
    if not exp:
        return None
    return ExperimentConfig(
        control_share=exp["control_share"],
        exploration_share=exp["exploration_share"],
        control_policy=exp["control_policy"],
        seed=exp["seed"],
    )


def offer_prices(
    book: PriceBook,
    previous: PriceBook | None,
    customer_ids: Any,
    bundle_ids: Any,
    optimize: OptimizeConfig,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The price each shown offer actually gets, and the customer's group (see the module docstring).

    ``book`` must carry its experiment (:func:`with_groups`); a book without one prices every offer as
    treatment. ``previous`` is used for control prices only when the manifest lists none.
    ``seed`` draws the exploration prices (deterministic for a seed).
    """
    cust = np.asarray(customer_ids, dtype=object).astype(str)
    bund = np.asarray(bundle_ids, dtype=object).astype(str)
    if cust.shape != bund.shape:
        raise ValueError(f"{len(cust)} customer ids but {len(bund)} bundle ids")
    price = np.array(price_lookup(book, cust, bund), dtype=np.float64)  # a writable copy
    cfg = experiment_of(book)
    if cfg is None:
        return price, np.full(len(cust), TREATMENT, dtype=object)
    group = assign_groups(cust, cfg)

    is_control = group == CONTROL
    if is_control.any():
        listed = book.manifest["experiment"].get("control_prices") or control_prices(book, cfg, previous)
        ctrl = pd.Series(bund[is_control]).map(listed)
        if ctrl.isna().any():
            unknown = sorted(set(bund[is_control][ctrl.isna().to_numpy()]))[:5]
            raise ValueError(f"no control price for bundles {unknown}: they are not in the price book")
        price[is_control] = ctrl.to_numpy(dtype=np.float64)

    is_expl = group == EXPLORATION
    if is_expl.any():
        cat = _bundle_catalog(book)
        ladder = build_ladder(
            cat["list_price"].to_numpy(dtype=np.float64),
            cat["unit_cost"].to_numpy(dtype=np.float64),
            optimize,
            current_price=cat["book_price"].to_numpy(dtype=np.float64),
            bundle_ids=cat["bundle_id"].tolist(),
        )
        b = pd.Index(cat["bundle_id"]).get_indexer(bund[is_expl])
        if (b < 0).any():
            unknown = sorted(set(bund[is_expl][b < 0]))[:5]
            raise ValueError(f"no ladder for bundles {unknown}: they are not in the price book")
        rng = np.random.default_rng([int(seed), int(cfg.seed)])
        allowed = ladder.allowed[b]  # [n, L]
        u = np.where(allowed, rng.random(allowed.shape), -1.0)
        price[is_expl] = ladder.prices[b, np.argmax(u, axis=1)]
    return price, group
