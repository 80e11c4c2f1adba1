"""A seeded synthetic shop with a KNOWN ground truth (the demo, tests and benchmarks run on it).

:func:`generate_market` draws the latent world (a :class:`Market`): customers with hidden types,
products, complementary bundles, competitors' price paths and seasonality. :func:`generate_tables`
turns it into the seven contract-v1 tables (see :mod:`pricing.contract`); :func:`simulate` also writes
them with :func:`pricing.io.write_table` and stores the truth in ``<out_dir>/_truth``. Everything is
vectorized numpy/pandas and deterministic for a seed: every component draws from its own generator
``np.random.default_rng([seed, component])``, so tables are reproducible one by one.

Acceptance model (the truth every price is judged against)
-----------------------------------------------------------
Customer ``i`` is shown bundle ``b`` on day ``t`` at price ``p``; it is accepted with probability ::

    P(accept) = sigmoid(u),
    u = alpha_i + s(t) + kappa * aff_ib + eta_i * log(V_ib / p) + lambda_i * log(C_bt / p)
      = A_ibt - (eta_i + lambda_i) * log(p)

* ``V_ib = w_i * (1 + comp_b) * sum_{j in b} list_price_j * vf_j`` -- the customer's value of the
  bundle: ``w_i`` a willingness-to-pay multiplier (type level x lognormal noise), ``vf_j`` a hidden
  per-product value factor (lognormal around 1), ``comp_b`` the complementarity bonus (0.10-0.35 for
  complementary bundles, -0.10-0.05 for random ones).
* ``C_bt = sum_{j in b} min_k competitor_price_{j,k,t}`` -- what the items cost at the cheapest
  competitor that day (the list price when no competitor carries an item). ``lambda_i`` is the
  customer's competitor sensitivity: acceptance falls when our price is high relative to them.
* ``aff_ib = mean_{j in b} clip(log(n_categories * pi_{i,cat(j)}), -2.5, 2.5)`` -- interest of the
  customer in the bundle's categories (``pi_i`` is the customer's category-interest distribution,
  the same one that drives their views, carts, searches and purchases); ``kappa = 0.35``.
* ``s(t)`` -- acceptance seasonality: weekday effect + yearly cosine peaking mid-December + holiday
  bumps (new-year sale, summer sale, back to school, black-friday week, pre-Christmas).
* ``alpha_i`` -- type intercept + N(0, 0.35) noise; ``w_i``, ``eta_i``, ``lambda_i`` -- type level x
  lognormal noise (sd 0.25, 0.30, 0.25), always > 0, so P is smooth and STRICTLY decreasing in price.

Because ``u`` is linear in ``log p`` the expected profit ``(p - c_b) * P`` is log-concave in
``log p`` and has a single maximum, found exactly by :func:`clairvoyant_prices` from the first-order
condition ``p / (p - c_b) = H (1 - P)`` with ``H = eta_i + lambda_i``.

Latent customer types (never written to the tables; they show only through behaviour):

================  =====  =====  ======  =====  ===============================================
type              w      eta    lambda  alpha  behaviour
================  =====  =====  ======  =====  ===============================================
bargain_hunter    0.75   8.0    4.0     -4.4   many searches with "cheap/deal/sale" words, buys
                                               cheap products, short views
premium_loyal     1.25   3.2    0.6     -4.2   few views, frequent purchases, "premium/best"
casual            0.95   4.5    1.0     -5.0   little activity, broad interests, "gift/idea"
enthusiast        1.10   4.0    2.0     -4.0   many long views, focused category interest,
                                               "review/specs/compare" searches
================  =====  =====  ======  =====  ===============================================

Regions are weakly correlated with the type. Historical offers are a price experiment: the price is
drawn uniformly from an 11-point grid between ``1.05 * sum(unit_cost)`` and ``sum(list_price)``.

Calibration (default market, seed 7; see :func:`personalization_gain`): ~16 % of experimental offers
are accepted (37 % at the lowest grid price, 4 % at list; by type 19 / 15 / 9 / 21 %); ~98 % of the
clairvoyant optima lie strictly inside ``(1.05 * cost, list)``; the optimum sits on average at 25 %
(bargain hunters), 38 % (casual), 43 % (enthusiasts) and 65 % (premium) of the way from cost to
list; per-customer clairvoyant pricing earns ~15 % more expected profit per offer than the best
single price per bundle, and ~2x the profit of list prices.

Other tables: regular orders (customer by type x individual purchase rate, day by traffic
seasonality, category by interest, product by popularity x the type's price preference; the
complementary partners of the first product join the order with probability 0.2 (each partner
then with 0.75), a random extra
product with 0.12) plus one order per accepted offer (a line per bundle item, ``unit_price``
allocating the offered price in proportion to list prices). Events: views (``duration_s`` lognormal
by type), searches (``query`` = type-dependent modifier + category noun) and add-to-cart.
Inventory (products table): 15 % of products are not limited; the others hold a negative-binomial
stock (mean ~100), never less than two peak weeks of their expected bundle sales at list price (a shop
stocks what sells), so the inventory rule can bind but can always be met.
Competitor prices: 2-3 competitors, each carries ~85 % of products at an AR(1) log-price random walk
around ``list_price * exp(level_k + product offset)``; paths continue ``future_days`` after
``end_date`` so future offers (:func:`play_forward`) can be judged. The table is written every
``competitor_step_days`` days (1 = daily for all sizes shipped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.signal import lfilter
from scipy.special import expit

from pricing.contract import BUNDLE_ITEM_SEP, TABLE_ORDER, TABLES
from pricing.io import write_table

__all__ = [
    "SIZES",
    "TYPE_NAMES",
    "Market",
    "MarketSize",
    "bundle_index",
    "clairvoyant_prices",
    "customer_index",
    "expected_units",
    "generate_market",
    "generate_tables",
    "load_market",
    "period_offers",
    "period_start",
    "personalization_gain",
    "play_forward",
    "play_price_book",
    "sample_traffic",
    "save_market",
    "shift_market",
    "simulate",
    "true_accept_prob",
]

TRUTH_DIR = "_truth"
_TRUTH_VERSION = 1


# --------------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MarketSize:
    """How big the simulated shop is."""

    name: str
    n_customers: int
    n_products: int
    n_categories: int
    n_bundles: int
    n_events: int
    n_offers: int
    n_orders: int  # regular (non-bundle) orders; an order has 1+ lines
    n_days: int  # days of history, ending at end_date (inclusive)
    n_competitors: int = 3
    competitor_step_days: int = 1  # competitor_prices table: every k-th day
    future_days: int = 365  # latent competitor paths after end_date (for play_forward)


SIZES: dict[str, MarketSize] = {
    "tiny": MarketSize("tiny", 300, 60, 6, 25, 20_000, 6_000, 3_000, 120, n_competitors=2),
    "default": MarketSize("default", 20_000, 500, 12, 200, 1_000_000, 300_000, 120_000, 180),
    "bench": MarketSize("bench", 200_000, 5_000, 24, 2_000, 10_000_000, 3_000_000, 1_200_000, 180),
}

# --------------------------------------------------------------------------------------------------
# fixed model constants
# --------------------------------------------------------------------------------------------------
TYPE_NAMES: tuple[str, ...] = ("bargain_hunter", "premium_loyal", "casual", "enthusiast")
_TYPE_SHARE = np.array([0.30, 0.20, 0.35, 0.15])
_TYPE_ALPHA = np.array([-4.4, -4.2, -5.0, -4.0])
_TYPE_ETA = np.array([8.0, 3.2, 4.5, 4.0])
_TYPE_LAMBDA = np.array([4.0, 0.6, 1.0, 2.0])
_TYPE_WTP = np.array([0.75, 1.25, 0.95, 1.10])
_TYPE_EVENT_RATE = np.array([1.3, 0.6, 0.7, 2.2])
_TYPE_ORDER_RATE = np.array([0.9, 1.6, 0.5, 1.3])
_TYPE_DURATION_S = np.array([22.0, 45.0, 14.0, 85.0])  # median view seconds
_TYPE_EVENT_MIX = np.array(  # view, search, add_to_cart
    [[0.55, 0.33, 0.12], [0.70, 0.12, 0.18], [0.72, 0.18, 0.10], [0.68, 0.20, 0.12]]
)
_TYPE_CAT_CONC = np.array([1.5, 1.0, 3.0, 0.25])  # Dirichlet concentration per category (low = focused)
_TYPE_PRICE_PREF = np.array([2.5, -0.5, 0.8, 0.2])  # product choice ~ (price / category median)^-gamma
_TYPE_REGION_TILT = np.array(
    [[1.2, 1.0, 0.9, 1.0, 0.9, 1.1], [0.8, 1.1, 1.2, 1.0, 1.1, 0.9], [1.0, 1.0, 1.0, 1.1, 1.0, 1.0],
     [1.0, 0.9, 1.0, 0.9, 1.2, 1.0]]
)
_KAPPA = 0.35
_AFF_CLIP = 2.5
_NOISE = {"alpha": 0.35, "wtp": 0.25, "eta": 0.30, "lambda": 0.25, "rate": 0.5, "duration": 0.25}

REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central", "islands")
_REGION_BASE = np.array([0.22, 0.20, 0.18, 0.16, 0.14, 0.10])

COMPETITORS: tuple[str, ...] = ("shopmax", "valuemart", "primeplace")
_COMP_LEVEL = np.array([-0.05, -0.01, 0.03])  # log price level vs our list price
_COMP_CARRY = 0.85
_COMP_PHI = 0.97
_COMP_STEP_SD = 0.012
_COMP_PRODUCT_SD = 0.04

# (name, median list price, search nouns)
_CATEGORIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("electronics", 60.0, ("headphones", "charger", "speaker", "cable")),
    ("home", 35.0, ("lamp", "cushion", "rug", "curtain")),
    ("kitchen", 30.0, ("pan", "knife", "blender", "kettle")),
    ("garden", 25.0, ("hose", "shovel", "planter", "seeds")),
    ("sports", 40.0, ("dumbbell", "yoga mat", "racket", "ball")),
    ("outdoor", 70.0, ("tent", "backpack", "lantern", "sleeping bag")),
    ("toys", 20.0, ("puzzle", "building blocks", "doll", "kite")),
    ("books", 15.0, ("novel", "cookbook", "atlas", "comic")),
    ("beauty", 22.0, ("serum", "lipstick", "shampoo", "perfume")),
    ("fashion", 45.0, ("jacket", "sneakers", "scarf", "belt")),
    ("office", 12.0, ("notebook", "pen", "desk lamp", "stapler")),
    ("pets", 18.0, ("leash", "cat food", "dog bed", "aquarium")),
    ("music", 80.0, ("guitar", "strings", "vinyl", "microphone")),
    ("gaming", 55.0, ("controller", "headset", "keyboard", "mouse")),
    ("health", 25.0, ("vitamins", "thermometer", "massager", "scale")),
    ("baby", 30.0, ("stroller", "diapers", "bottle", "onesie")),
    ("automotive", 28.0, ("wiper", "car charger", "seat cover", "tire gauge")),
    ("tools", 45.0, ("drill", "screwdriver", "wrench", "tape measure")),
    ("crafts", 15.0, ("yarn", "paint", "brushes", "glue gun")),
    ("grocery", 10.0, ("coffee", "tea", "olive oil", "chocolate")),
    ("photo", 120.0, ("camera", "lens", "tripod", "memory card")),
    ("travel", 50.0, ("suitcase", "neck pillow", "adapter", "luggage tag")),
    ("bikes", 65.0, ("helmet", "bike light", "pump", "lock")),
    ("watches", 90.0, ("smartwatch", "watch strap", "chronograph", "watch box")),
)

# query modifiers: (word, group, before the noun?) ; groups 0 bargain, 1 premium, 2 casual, 3 enthusiast
_MODIFIERS: tuple[tuple[str, int, bool], ...] = (
    ("cheap", 0, True), ("deal", 0, False), ("sale", 0, False), ("discount", 0, True),
    ("budget", 0, True), ("clearance", 0, False), ("coupon", 0, False), ("bargain", 0, True),
    ("premium", 1, True), ("best", 1, True), ("luxury", 1, True), ("pro", 1, False),
    ("original", 1, True), ("high quality", 1, True), ("designer", 1, True),
    ("gift", 2, False), ("ideas", 2, False), ("new", 2, True), ("popular", 2, True), ("cute", 2, True),
    ("review", 3, False), ("specs", 3, False), ("compare", 3, True), ("vs", 3, False),
    ("upgrade", 3, False), ("advanced", 3, True), ("2026 model", 3, False),
)
_TYPE_MODIFIER_GROUP = np.array(  # P(group 0..3, no modifier) per type
    [[0.60, 0.04, 0.10, 0.06, 0.20], [0.04, 0.52, 0.10, 0.09, 0.25], [0.14, 0.08, 0.36, 0.06, 0.36],
     [0.08, 0.14, 0.05, 0.53, 0.20]]
)

_WEEKLY_TRAFFIC = np.array([0.95, 0.92, 0.94, 0.98, 1.05, 1.12, 1.04])  # Monday..Sunday
_WEEKLY_ACCEPT = np.array([0.0, -0.05, -0.05, 0.0, 0.05, 0.12, 0.08])
# (month, first day, last day, traffic multiplier, acceptance bonus on the logit)
_HOLIDAYS: tuple[tuple[int, int, int, float, float], ...] = (
    (1, 2, 8, 1.25, 0.20),  # new-year sales
    (7, 1, 10, 1.30, 0.25),  # summer sale
    (8, 25, 31, 1.15, 0.10),  # back to school
    (9, 1, 5, 1.15, 0.10),
    (11, 24, 30, 1.70, 0.40),  # black-friday week
    (12, 10, 23, 1.35, 0.25),  # before Christmas
)
_HOUR_W = np.array(
    [0.8, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 2.0, 2.6, 3.0, 3.3,
     3.8, 3.6, 3.2, 3.1, 3.2, 3.6, 4.2, 5.0, 5.4, 5.0, 3.6, 1.8]
)
_HOUR_CDF = np.cumsum(_HOUR_W) / _HOUR_W.sum()

_PRICE_GRID_POINTS = 11  # price experiment: 11 levels between 1.05 * cost and list
_CO_PURCHASE_P = 0.20
_CO_MEMBER_P = 0.75
_EXTRA_ITEM_P = 0.12

# seeds of the components (np.random.default_rng([seed, component]))
_RNG_MARKET, _RNG_EVENTS, _RNG_ORDERS, _RNG_OFFERS, _RNG_ACCEPT, _RNG_BUNDLE_ORDERS = 1, 2, 3, 4, 5, 6
_RNG_COMPETITORS, _RNG_SHIFT, _RNG_TRAFFIC, _RNG_PLAY, _RNG_STOCK = 7, 8, 9, 10, 11
_STOCK_COVER = 2.0  # stock covers at least this many peak weeks of bundle sales at list price


def _rng(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), component])


# --------------------------------------------------------------------------------------------------
# the latent market
# --------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Market:
    """The ground truth: every latent parameter of the simulated shop.

    Per-customer arrays have length ``n_customers`` (row ``i`` is ``customer_ids[i]``), per-product
    arrays ``n_products``, per-bundle arrays ``n_bundles``. Day index 0 is ``start_date``; the
    history covers days ``0 .. n_days-1`` (the last one is ``end_date``) and competitor paths go on
    for ``size.future_days`` more days. Derived bundle arrays are recomputed on construction.
    """

    size: MarketSize
    seed: int
    start_date: pd.Timestamp  # naive, midnight (UTC)
    end_date: pd.Timestamp  # naive, midnight (UTC); last day of history
    category_names: np.ndarray  # (n_cat,) str
    # customers
    customer_ids: np.ndarray  # str
    customer_type: np.ndarray  # int8 index into TYPE_NAMES
    region: np.ndarray  # int8 index into REGIONS
    signup_day: np.ndarray  # int32, day offset from start_date (negative = before history)
    alpha: np.ndarray
    wtp: np.ndarray
    eta: np.ndarray
    lam: np.ndarray
    cat_pref: np.ndarray  # (n_customers, n_cat) float32, rows sum to 1
    event_rate: np.ndarray
    order_rate: np.ndarray
    offer_rate: np.ndarray
    duration_log_mu: np.ndarray
    # products
    product_ids: np.ndarray
    product_category: np.ndarray  # int16
    list_price: np.ndarray
    unit_cost: np.ndarray
    value_factor: np.ndarray
    popularity: np.ndarray
    inventory: np.ndarray  # float, nan = not limited
    product_group: np.ndarray  # int32 complementary group, -1 = none
    groups: np.ndarray  # (n_groups, 3) int32 product indices, -1 padded
    # bundles
    bundle_ids: np.ndarray
    bundle_items: np.ndarray  # (n_bundles, 3) int32 product indices, -1 padded
    complementarity: np.ndarray  # comp_b
    is_complementary: np.ndarray  # bool
    # competitors
    competitor_names: np.ndarray
    competitor_price: np.ndarray  # (n_products, n_comp, n_days + future_days), nan = not carried
    # derived (recomputed in __post_init__)
    bundle_n_items: np.ndarray = field(init=False, repr=False)
    bundle_list: np.ndarray = field(init=False, repr=False)
    bundle_cost: np.ndarray = field(init=False, repr=False)
    bundle_log_value: np.ndarray = field(init=False, repr=False)
    bundle_comp_log: np.ndarray = field(init=False, repr=False)  # (n_bundles, n_days_total)
    cat_z: np.ndarray = field(init=False, repr=False)  # (n_customers, n_cat) clipped log interest

    def __post_init__(self) -> None:
        items = self.bundle_items
        mask = items >= 0
        safe = np.where(mask, items, 0)
        self.bundle_n_items = mask.sum(1).astype(np.int8)
        self.bundle_list = np.where(mask, self.list_price[safe], 0.0).sum(1)
        self.bundle_cost = np.where(mask, self.unit_cost[safe], 0.0).sum(1)
        value = np.where(mask, (self.list_price * self.value_factor)[safe], 0.0).sum(1)
        self.bundle_log_value = np.log(value * (1.0 + self.complementarity))
        best = np.where(np.isnan(self.competitor_price), np.inf, self.competitor_price).min(axis=1)
        best = np.where(np.isfinite(best), best, self.list_price[:, None])  # nobody carries it: list price
        comp_sum = np.zeros((len(items), best.shape[1]))
        for k in range(items.shape[1]):
            comp_sum += np.where(mask[:, k, None], best[safe[:, k]], 0.0)
        self.bundle_comp_log = np.log(comp_sum)
        n_cat = self.cat_pref.shape[1]
        self.cat_z = np.clip(np.log(np.maximum(self.cat_pref, 1e-12) * n_cat), -_AFF_CLIP, _AFF_CLIP).astype(
            np.float32
        )

    # convenience -----------------------------------------------------------------------------
    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    @property
    def n_bundles(self) -> int:
        return len(self.bundle_ids)

    @property
    def n_days(self) -> int:
        return self.size.n_days

    @property
    def n_days_total(self) -> int:
        return self.competitor_price.shape[2]

    @property
    def end_time(self) -> pd.Timestamp:
        """Exclusive upper bound of the history's timestamps (tz-aware UTC): end_date + 1 day."""
        return (self.end_date + pd.Timedelta(days=1)).tz_localize("UTC")

    @property
    def type_names(self) -> tuple[str, ...]:
        return TYPE_NAMES

    def customer_types(self) -> pd.Series:
        """Latent type name per customer id (truth only; never in the contract tables)."""
        return pd.Series(np.asarray(TYPE_NAMES)[self.customer_type], index=self.customer_ids, name="type")


_ARRAY_FIELDS = [f.name for f in fields(Market) if f.init and f.name not in ("size", "seed", "start_date", "end_date")]


# --------------------------------------------------------------------------------------------------
# small vectorized helpers
# --------------------------------------------------------------------------------------------------
def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    arr = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), width, "0")
    return np.asarray(pc.binary_join_element_wise(prefix, arr, "").to_numpy(zero_copy_only=False)).astype(str)


def _str_col(values: np.ndarray | pa.Array | pa.ChunkedArray, take: np.ndarray | None = None,
             valid: np.ndarray | None = None) -> pd.Series:
    """A pandas ``str`` column built through arrow (fast for millions of rows)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(np.asarray(values, dtype=str))
    if take is not None:
        idx = pa.array(np.asarray(take, dtype=np.int64), mask=None if valid is None else ~valid)
        arr = arr.take(idx)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pd.Series(pd.array(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def _utc(secs: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(secs, dtype=np.int64).astype("datetime64[s]")).dt.tz_localize("UTC")


def _rowwise_choice(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray, chunk: int = 1 << 19) -> np.ndarray:
    """Index drawn from the per-row CDF ``cdf[rows[n]]`` with uniforms ``u`` (chunked, no Python row loop)."""
    out = np.empty(len(rows), dtype=np.int32)
    k = cdf.shape[1]
    for s in range(0, len(rows), chunk):
        out[s : s + chunk] = (cdf[rows[s : s + chunk]] < u[s : s + chunk, None]).sum(1)
    return np.minimum(out, k - 1)


def _day_dates(market: Market, offsets: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(market.start_date + pd.to_timedelta(np.asarray(offsets), unit="D"))


def _holiday_effects(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    month = dates.month.to_numpy()
    dom = dates.day.to_numpy()
    mult = np.ones(len(dates))
    bonus = np.zeros(len(dates))
    for m, d0, d1, tm, ab in _HOLIDAYS:
        on = (month == m) & (dom >= d0) & (dom <= d1)
        mult = np.where(on, tm, mult)
        bonus = np.where(on, ab, bonus)
    return mult, bonus


def _yearly(dates: pd.DatetimeIndex) -> np.ndarray:
    return np.cos(2 * np.pi * (dates.day_of_year.to_numpy() - 350) / 365.25)


def _traffic_weight(dates: pd.DatetimeIndex) -> np.ndarray:
    """Relative traffic of each date: weekly x yearly x holiday."""
    mult, _ = _holiday_effects(dates)
    return _WEEKLY_TRAFFIC[dates.day_of_week.to_numpy()] * (1 + 0.12 * _yearly(dates)) * mult


def _accept_season(market: Market, day_offsets: np.ndarray) -> np.ndarray:
    """s(t) on the acceptance logit, for day offsets from start_date (any shape)."""
    d = np.asarray(day_offsets)
    uniq, inv = np.unique(d, return_inverse=True)
    dates = _day_dates(market, uniq)
    _, bonus = _holiday_effects(dates)
    s = _WEEKLY_ACCEPT[dates.day_of_week.to_numpy()] + 0.08 * _yearly(dates) + bonus
    return s[inv].reshape(d.shape)


def _day_offsets(market: Market, day: Any) -> np.ndarray:
    """Days since ``market.start_date`` for timestamps / dates (naive = UTC) or integer offsets."""
    start = market.start_date.to_datetime64().astype("datetime64[D]")
    if isinstance(day, pd.Series | pd.Index):
        if isinstance(day.dtype, pd.DatetimeTZDtype):
            day = day.dt.tz_convert("UTC").dt.tz_localize(None) if isinstance(day, pd.Series) else (
                day.tz_convert("UTC").tz_localize(None))
        day = day.to_numpy()
    if isinstance(day, list | tuple):
        day = np.asarray(day) if all(isinstance(v, int | np.integer) for v in day) else np.asarray(day, dtype=object)
    if isinstance(day, np.ndarray):
        if np.issubdtype(day.dtype, np.integer):
            return day.astype(np.int64)
        if not np.issubdtype(day.dtype, np.datetime64):
            idx = pd.DatetimeIndex(pd.to_datetime(day.ravel(), utc=True)).tz_localize(None)
            day = idx.to_numpy().reshape(day.shape)
        return (day.astype("datetime64[D]") - start).astype(np.int64)
    if isinstance(day, int | np.integer):
        return np.asarray(day, dtype=np.int64)
    ts = pd.Timestamp(day)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.asarray((ts.normalize() - market.start_date).days, dtype=np.int64)


def _epoch_seconds(t: pd.Series) -> np.ndarray:
    t = pd.to_datetime(t, utc=True)
    return t.dt.tz_localize(None).to_numpy().astype("datetime64[s]").astype(np.int64)


def _sample_days(rng: np.random.Generator, weights: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A day index per row drawn from ``weights`` restricted to days ``>= lo`` (inverse CDF)."""
    cdf = np.cumsum(weights) / weights.sum()
    lo = np.clip(lo, 0, len(weights) - 1)
    base = np.where(lo > 0, cdf[np.maximum(lo - 1, 0)], 0.0)
    u = base + rng.random(len(lo)) * (1.0 - base)
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(weights) - 1).astype(np.int32)


def _sample_customers(rng: np.random.Generator, rate: np.ndarray, signup_day: np.ndarray,
                      weights: np.ndarray, n: int, first_day: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Customers (weighted by rate x seasonal active time) and their day in ``[first_day, first_day+len(weights))``."""
    cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    lo = np.clip(signup_day - first_day, 0, len(weights))
    w = rate * (1.0 - cdf[lo])
    if w.sum() <= 0:
        raise ValueError("no customer is signed up in the requested window")
    cust = rng.choice(len(rate), size=n, p=w / w.sum()).astype(np.int32)
    day = _sample_days(rng, weights, lo[cust])
    return cust, day


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    hour = np.minimum(np.searchsorted(_HOUR_CDF, rng.random(n), side="right"), 23)
    return hour * 3600 + rng.integers(0, 3600, n)


class _CategoryPicker:
    """Draws a product of a given category by popularity (vectorized inverse CDF)."""

    def __init__(self, category: np.ndarray, popularity: np.ndarray, n_cat: int) -> None:
        order = np.argsort(category, kind="stable")
        cat_sorted = category[order]
        pop = popularity[order]
        tot = np.bincount(cat_sorted, weights=pop, minlength=n_cat)
        start = np.searchsorted(cat_sorted, np.arange(n_cat))
        end = np.searchsorted(cat_sorted, np.arange(n_cat), side="right")
        within = np.cumsum(pop) - np.repeat(np.cumsum(tot) - tot, end - start)
        self.cdf = cat_sorted + within / tot[cat_sorted]
        self.order, self.start, self.end = order, start, end

    def pick(self, rng: np.random.Generator, cats: np.ndarray) -> np.ndarray:
        target = cats + rng.random(len(cats))
        pos = np.searchsorted(self.cdf, target, side="right")
        pos = np.clip(pos, self.start[cats], self.end[cats] - 1)
        return self.order[pos].astype(np.int32)


# --------------------------------------------------------------------------------------------------
# generate_market
# --------------------------------------------------------------------------------------------------
def _resolve_size(size: str | MarketSize) -> MarketSize:
    if isinstance(size, MarketSize):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)} or pass a MarketSize")
    return SIZES[size]


def generate_market(size: str | MarketSize = "default", seed: int = 7, end_date: str = "2026-09-30") -> Market:
    """Draw the latent world for ``size`` and ``seed``; history ends on ``end_date`` (inclusive)."""
    sz = _resolve_size(size)
    if sz.n_competitors > len(COMPETITORS):
        raise ValueError(f"at most {len(COMPETITORS)} competitors")
    rng = _rng(seed, _RNG_MARKET)
    end = pd.Timestamp(end_date).normalize()
    if end.tzinfo is not None:
        end = end.tz_convert("UTC").tz_localize(None)
    start = end - pd.Timedelta(days=sz.n_days - 1)
    n_cat, n_c, n_p = sz.n_categories, sz.n_customers, sz.n_products
    base = [_CATEGORIES[i % len(_CATEGORIES)] for i in range(n_cat)]
    cat_names = np.array([b[0] if i < len(_CATEGORIES) else f"{b[0]}_{i // len(_CATEGORIES)}"
                          for i, b in enumerate(base)])

    # customers ---------------------------------------------------------------------------------
    ctype = rng.choice(len(TYPE_NAMES), size=n_c, p=_TYPE_SHARE).astype(np.int8)
    region_p = _REGION_BASE * _TYPE_REGION_TILT
    region_cdf = np.cumsum(region_p / region_p.sum(1, keepdims=True), axis=1)
    region = _rowwise_choice(region_cdf, ctype, rng.random(n_c)).astype(np.int8)
    late = rng.random(n_c) < 0.25
    signup = np.where(late, rng.integers(0, sz.n_days, n_c), -rng.integers(1, 3 * 365, n_c)).astype(np.int32)
    alpha = _TYPE_ALPHA[ctype] + rng.normal(0, _NOISE["alpha"], n_c)
    wtp = _TYPE_WTP[ctype] * np.exp(rng.normal(0, _NOISE["wtp"], n_c))
    eta = _TYPE_ETA[ctype] * np.exp(rng.normal(0, _NOISE["eta"], n_c))
    lam = _TYPE_LAMBDA[ctype] * np.exp(rng.normal(0, _NOISE["lambda"], n_c))
    type_base = rng.dirichlet(np.full(n_cat, 2.0), size=len(TYPE_NAMES))  # each type's favourite categories
    conc = (_TYPE_CAT_CONC[ctype] * n_cat)[:, None] * (0.3 / n_cat + 0.7 * type_base[ctype])
    g = rng.gamma(conc)  # Dirichlet rows via normalised gammas
    cat_pref = (np.maximum(g, 1e-9) / np.maximum(g, 1e-9).sum(1, keepdims=True)).astype(np.float32)
    act = np.exp(rng.normal(0, _NOISE["rate"], n_c))
    event_rate = _TYPE_EVENT_RATE[ctype] * act
    order_rate = _TYPE_ORDER_RATE[ctype] * np.sqrt(act) * np.exp(rng.normal(0, 0.35, n_c))
    offer_rate = np.sqrt(event_rate)
    dur_mu = np.log(_TYPE_DURATION_S[ctype]) + rng.normal(0, _NOISE["duration"], n_c)

    # products ----------------------------------------------------------------------------------
    pcat = np.concatenate([np.arange(min(n_p, 2 * n_cat)) % n_cat,
                           rng.choice(n_cat, size=max(n_p - 2 * n_cat, 0), p=rng.dirichlet(np.full(n_cat, 6.0)))])
    pcat = rng.permutation(pcat).astype(np.int16)
    level = np.array([b[1] for b in base])
    raw = level[pcat] * np.exp(rng.normal(0, 0.5, n_p))
    list_price = np.maximum(np.round(raw) - 0.01, 1.99)
    cat_ratio = rng.uniform(0.45, 0.72, n_cat)
    ratio = np.clip(cat_ratio[pcat] * np.exp(rng.normal(0, 0.06, n_p)), 0.3, 0.82)
    unit_cost = np.maximum(np.round(list_price * ratio, 2), 0.5)
    value_factor = np.exp(rng.normal(0, 0.08, n_p))
    popularity = np.exp(rng.normal(0, 1.0, n_p))
    inventory = np.where(rng.random(n_p) < 0.15, np.nan, rng.negative_binomial(2, 0.02, n_p).astype(float))

    # complementary groups: disjoint pairs/triples of products --------------------------------
    sizes = rng.choice([2, 3], size=n_p, p=[0.7, 0.3])
    n_groups = int(np.searchsorted(np.cumsum(sizes), 0.85 * n_p, side="right"))
    sizes = sizes[:n_groups]
    perm = rng.permutation(n_p)
    groups = np.full((n_groups, 3), -1, dtype=np.int32)
    offs = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(3):
        has = sizes > k
        groups[has, k] = perm[offs[:-1][has] + k]
    product_group = np.full(n_p, -1, dtype=np.int32)
    gi = np.repeat(np.arange(n_groups), 3).reshape(n_groups, 3)
    product_group[groups[groups >= 0]] = gi[groups >= 0]

    # bundles -----------------------------------------------------------------------------------
    n_b = sz.n_bundles
    n_comp_b = min(round(0.8 * n_b), n_groups)
    items = np.full((n_b, 3), -1, dtype=np.int32)
    items[:n_comp_b] = groups[rng.choice(n_groups, n_comp_b, replace=False)]
    n_rand = n_b - n_comp_b
    rand_sizes = rng.choice([2, 3], size=n_rand, p=[0.65, 0.35])
    seen = {tuple(sorted(r[r >= 0])) for r in items[:n_comp_b]}
    r = 0
    while r < n_rand:  # at most a few thousand bundles: a tiny loop with rejection of duplicates
        pick = rng.choice(n_p, size=rand_sizes[r], replace=False)
        key = tuple(sorted(pick.tolist()))
        if key in seen:
            continue
        seen.add(key)
        items[n_comp_b + r, : len(pick)] = pick
        r += 1
    is_comp = np.arange(n_b) < n_comp_b
    compl = np.where(is_comp, rng.uniform(0.10, 0.35, n_b), rng.uniform(-0.10, 0.05, n_b))
    bperm = rng.permutation(n_b)
    items, is_comp, compl = items[bperm], is_comp[bperm], compl[bperm]

    # competitors -------------------------------------------------------------------------------
    crng = _rng(seed, _RNG_COMPETITORS)
    n_k = sz.n_competitors
    n_total = sz.n_days + sz.future_days
    eps = crng.normal(0, _COMP_STEP_SD, (n_p, n_k, n_total))
    stat_sd = _COMP_STEP_SD / np.sqrt(1 - _COMP_PHI**2)
    eps[:, :, 0] = crng.normal(0, stat_sd, (n_p, n_k))  # start in the stationary distribution
    walk = lfilter([1.0], [1.0, -_COMP_PHI], eps, axis=-1)
    offset = _COMP_LEVEL[:n_k][None, :] + crng.normal(0, _COMP_PRODUCT_SD, (n_p, n_k))
    comp = np.round(list_price[:, None, None] * np.exp(offset[:, :, None] + walk), 2)
    comp = np.maximum(comp, 0.01)
    carried = crng.random((n_p, n_k)) < _COMP_CARRY
    comp[~carried] = np.nan
    del eps, walk

    market = Market(
        size=sz, seed=int(seed), start_date=start, end_date=end, category_names=cat_names,
        customer_ids=_ids("C", n_c, 7), customer_type=ctype, region=region, signup_day=signup,
        alpha=alpha, wtp=wtp, eta=eta, lam=lam, cat_pref=cat_pref, event_rate=event_rate,
        order_rate=order_rate, offer_rate=offer_rate, duration_log_mu=dur_mu,
        product_ids=_ids("P", n_p, 5), product_category=pcat, list_price=list_price, unit_cost=unit_cost,
        value_factor=value_factor, popularity=popularity, inventory=inventory, product_group=product_group,
        groups=groups, bundle_ids=_ids("B", n_b, 5), bundle_items=items, complementarity=compl,
        is_complementary=is_comp, competitor_names=np.array(COMPETITORS[:n_k]), competitor_price=comp,
    )
    # a shop stocks what sells: no product's stock falls short of its bundle sales at list price
    floor = np.ceil(_STOCK_COVER * _peak_week_units_at_list(market)) + 1.0
    return replace(market, inventory=np.where(np.isnan(inventory), np.nan, np.maximum(inventory, floor)))


def _peak_week_units_at_list(market: Market, days: int = 28) -> np.ndarray:
    """Expected bundle units per product in the busiest week of the calendar with every bundle at list price.

    Estimated from a sample of the last ``days`` of the history's traffic (its own random stream), scaled
    to a week and to the peak weekly traffic of the calendar (black-friday week).
    """
    rng = _rng(market.seed, _RNG_STOCK)
    first = max(market.n_days - days, 0)
    days = market.n_days - first
    ci, bi, secs = _traffic_idx(market, rng, first, days, _window_offers(market, first, days))
    day = (secs - int(market.start_date.value // 10**9)) // 86400
    prob = true_accept_prob(market, ci, bi, market.bundle_list[bi], day)
    units = expected_units(market, bi, prob) * 7.0 / days
    weights = _traffic_weight(_day_dates(market, np.arange(market.n_days_total)))
    weekly = np.convolve(weights, np.ones(7), mode="valid")
    window = weights[first:first + days].sum() * 7.0 / days
    return units * float(weekly.max() / window)


# --------------------------------------------------------------------------------------------------
# the truth: acceptance, clairvoyant prices
# --------------------------------------------------------------------------------------------------
def customer_index(market: Market, customer_ids: Any) -> np.ndarray:
    """Row indices of ``customer_ids`` in the market (KeyError for unknown ids)."""
    return _index(market.customer_ids, customer_ids, "customer")


def bundle_index(market: Market, bundle_ids: Any) -> np.ndarray:
    """Row indices of ``bundle_ids`` in the market (KeyError for unknown ids)."""
    return _index(market.bundle_ids, bundle_ids, "bundle")


def product_index(market: Market, product_ids: Any) -> np.ndarray:
    return _index(market.product_ids, product_ids, "product")


def _index(known: np.ndarray, ids: Any, what: str) -> np.ndarray:
    scalar = np.ndim(ids) == 0
    values = np.atleast_1d(np.asarray(ids, dtype=object))
    idx = pd.Index(known).get_indexer(values.astype(str))
    if (idx < 0).any():
        bad = values[idx < 0][:5].tolist()
        raise KeyError(f"unknown {what} ids: {bad}")
    return idx[0] if scalar else idx


def _affinity(market: Market, ci: np.ndarray, bi: np.ndarray) -> np.ndarray:
    items = market.bundle_items[bi]
    cats = market.product_category[np.maximum(items, 0)]
    z = np.zeros(ci.shape)
    for k in range(items.shape[-1]):
        z += np.where(items[..., k] >= 0, market.cat_z[ci, cats[..., k]], 0.0)
    return z / market.bundle_n_items[bi]


def _utility_parts(market: Market, customer_idx: Any, bundle_idx: Any, day: Any) -> tuple[np.ndarray, ...]:
    """``(A, H)`` with ``u = A - H log p`` (shapes broadcast)."""
    d = _day_offsets(market, day)
    ci, bi, d = np.broadcast_arrays(np.asarray(customer_idx, dtype=np.int64), np.asarray(bundle_idx, dtype=np.int64), d)
    dd = np.clip(d, 0, market.n_days_total - 1)
    eta, lam = market.eta[ci], market.lam[ci]
    a = (market.alpha[ci] + _accept_season(market, d) + _KAPPA * _affinity(market, ci, bi)
         + eta * (np.log(market.wtp[ci]) + market.bundle_log_value[bi]) + lam * market.bundle_comp_log[bi, dd])
    return a, eta + lam


def true_accept_prob(market: Market, customer_idx: np.ndarray, bundle_idx: np.ndarray, price: np.ndarray,
                     day: np.ndarray | pd.Timestamp) -> np.ndarray:
    """True acceptance probability (vectorized, broadcasting); strictly decreasing in ``price``.

    ``day``: timestamps/dates (naive = UTC; a scalar, array, Series or DatetimeIndex) or integer
    day offsets from ``market.start_date``. Days past the stored competitor paths use the last one.
    """
    a, h = _utility_parts(market, customer_idx, bundle_idx, day)
    p = np.asarray(price, dtype=float)
    if (p <= 0).any():
        raise ValueError("prices must be positive")
    return expit(a - h * np.log(p))


def clairvoyant_prices(market: Market, customer_idx: np.ndarray, bundle_idx: np.ndarray,
                       day: np.ndarray | pd.Timestamp, n_grid: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Profit-maximising price per (customer, bundle, day) under the truth, and its expected profit.

    The price is searched in ``[sum(unit_cost), sum(list_price)]``: a coarse grid of ``n_grid``
    points brackets the optimum, which bisection on the first-order condition then pins down.
    """
    a, h = _utility_parts(market, customer_idx, bundle_idx, day)
    shape = a.shape
    a, h = a.ravel(), h.ravel()
    bi = np.broadcast_to(np.asarray(bundle_idx), shape).ravel()
    c, L = market.bundle_cost[bi], market.bundle_list[bi]
    lo_all, hi_all = np.log(c), np.log(L)
    best_x = np.empty(len(a))
    chunk = max(1, 4_000_000 // max(n_grid, 2))
    t = np.linspace(0.0, 1.0, n_grid)
    for s in range(0, len(a), chunk):
        sl = slice(s, s + chunk)
        x = lo_all[sl, None] + (hi_all[sl] - lo_all[sl])[:, None] * t[None, :]
        prof = (np.exp(x) - c[sl, None]) * expit(a[sl, None] - h[sl, None] * x)
        k = prof.argmax(1)
        rows = np.arange(len(k))
        lo = x[rows, np.maximum(k - 1, 0)]
        hi = x[rows, np.minimum(k + 1, n_grid - 1)]
        cc, aa, hh = c[sl], a[sl], h[sl]
        for _ in range(50):  # d/dx log profit = p/(p-c) - H (1-P): decreasing in x = log p
            mid = 0.5 * (lo + hi)
            pm = np.exp(mid)
            with np.errstate(divide="ignore"):
                gr = pm / np.maximum(pm - cc, 1e-300) - hh * (1 - expit(aa - hh * mid))
            lo = np.where(gr > 0, mid, lo)
            hi = np.where(gr > 0, hi, mid)
        best_x[sl] = 0.5 * (lo + hi)
    price = np.clip(np.exp(best_x), c, L)
    profit = (price - c) * expit(a - h * np.log(price))
    return price.reshape(shape), profit.reshape(shape)


def personalization_gain(market: Market, n_pairs: int = 20_000, seed: int = 0,
                         n_grid: int = 100) -> dict[str, float]:
    """How much perfect personalization beats the best single price per bundle, under the truth.

    Draws ``n_pairs`` (customer, bundle, day) from :func:`sample_traffic` over the history, and
    compares the mean expected profit per offer of: the clairvoyant per-customer price, the best
    single price per bundle (grid over [cost, list], chosen knowing the truth), and the list price.
    """
    tr = sample_traffic(market, market.start_date, market.n_days, n_pairs, seed)
    ci, bi = customer_index(market, tr["customer_id"]), bundle_index(market, tr["bundle_id"])
    day = _day_offsets(market, tr["offer_time"])
    pstar, clair = clairvoyant_prices(market, ci, bi, day)
    a, h = _utility_parts(market, ci, bi, day)
    c, L = market.bundle_cost[bi], market.bundle_list[bi]
    t = np.linspace(0, 1, n_grid)
    p = c[:, None] + (L - c)[:, None] * t[None, :]
    prof = (p - c[:, None]) * expit(a[:, None] - h[:, None] * np.log(p))
    per_bundle = np.zeros((market.n_bundles, n_grid))
    np.add.at(per_bundle, bi, prof)
    single = per_bundle.max(1).sum() / len(bi)
    list_profit = prof[:, -1].mean()
    interior = float(np.mean((pstar > 1.05 * c + 1e-6) & (pstar < L - 1e-6)))
    return {
        "clairvoyant_profit": float(clair.mean()),
        "single_price_profit": float(single),
        "list_price_profit": float(list_profit),
        "gain_vs_single_price": float(clair.mean() / single - 1),
        "gain_vs_list_price": float(clair.mean() / list_profit - 1),
        "interior_share": interior,
    }


# --------------------------------------------------------------------------------------------------
# traffic, offers and their outcome
# --------------------------------------------------------------------------------------------------
def _bundle_picker(market: Market) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists: bundles containing an item of each category."""
    n_cat = market.cat_pref.shape[1]
    items = market.bundle_items
    b, k = np.nonzero(items >= 0)
    cats = market.product_category[items[b, k]]
    pairs = np.unique(cats.astype(np.int64) * market.n_bundles + b)
    cat, bund = pairs // market.n_bundles, pairs % market.n_bundles
    ptr = np.searchsorted(cat, np.arange(n_cat + 1))
    return ptr, bund


def _traffic_idx(market: Market, rng: np.random.Generator, first_day: int, days: int,
                 n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer idx, bundle idx, epoch seconds) of ``n`` offers shown in the given day window."""
    weights = _traffic_weight(_day_dates(market, np.arange(first_day, first_day + days)))
    cust, day = _sample_customers(rng, market.offer_rate, market.signup_day, weights, n, first_day)
    cdf = np.cumsum(market.cat_pref, axis=1)
    cat = _rowwise_choice(cdf, cust, rng.random(n))
    ptr, bund = _bundle_picker(market)
    cnt = ptr[cat + 1] - ptr[cat]
    pos = ptr[cat] + (rng.random(n) * np.maximum(cnt, 1)).astype(np.int64)
    by_interest = (rng.random(n) < 0.7) & (cnt > 0)
    bidx = np.where(by_interest, bund[np.minimum(pos, len(bund) - 1)], rng.integers(0, market.n_bundles, n))
    start = int(market.start_date.value // 10**9)
    secs = start + (first_day + day.astype(np.int64)) * 86400 + _seconds_of_day(rng, n)
    return cust, bidx.astype(np.int32), secs


def sample_traffic(market: Market, start: pd.Timestamp, days: int, n_offers: int, seed: int) -> pd.DataFrame:
    """Who is shown which bundle when, independent of price: ``customer_id, bundle_id, offer_time``.

    Customers come by their activity (only once signed up), days by traffic seasonality, bundles
    by the customer's category interest (70 %) or at random (30 %). Sorted by ``offer_time``.
    """
    first = int(_day_offsets(market, pd.Timestamp(start)))
    cust, bidx, secs = _traffic_idx(market, _rng(seed, _RNG_TRAFFIC), first, int(days), int(n_offers))
    order = np.argsort(secs, kind="stable")
    return pd.DataFrame({
        "customer_id": _str_col(market.customer_ids, cust[order]),
        "bundle_id": _str_col(market.bundle_ids, bidx[order]),
        "offer_time": _utc(secs[order]),
    })


def _bundle_lines(market: Market, bidx: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per accepted offer k: (offer position, product idx, unit price) of each bundle item."""
    items = market.bundle_items[bidx]
    mask = items >= 0
    k, j = np.nonzero(mask)
    prod = items[k, j]
    share = market.list_price[prod] / market.bundle_list[bidx[k]]
    return k, prod, np.round(price[k] * share, 2)


def _accept(market: Market, rng: np.random.Generator, ci: np.ndarray, bi: np.ndarray, price: np.ndarray,
            day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = true_accept_prob(market, ci, bi, price, day)
    return (rng.random(len(prob)) < prob).astype(np.int64), prob


def play_forward(market: Market, offers: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Show ``offers`` (customer_id, bundle_id, offer_time, offered_price[, offer_id]) to the truth.

    Returns ``{"offers": offers + offer_id (``F<seed>-<n>`` when absent) + accepted + true_prob,
    "orders": one order (id ``F<seed>-R<n>``) per accepted offer, a line per bundle item``}``.
    Deterministic for ``seed``.
    """
    out = offers.copy()
    ci = customer_index(market, out["customer_id"].to_numpy())
    bi = bundle_index(market, out["bundle_id"].to_numpy())
    t = pd.to_datetime(out["offer_time"], utc=True)
    price = out["offered_price"].to_numpy(dtype=float)
    rng = _rng(seed, _RNG_PLAY)
    accepted, prob = _accept(market, rng, ci, bi, price, _day_offsets(market, t))
    if "offer_id" not in out.columns:
        out.insert(0, "offer_id", [f"F{seed}-{i:08d}" for i in range(1, len(out) + 1)])
    out["offer_time"] = t
    out["accepted"] = accepted
    out["true_prob"] = prob
    acc = np.flatnonzero(accepted == 1)
    k, prod, unit = _bundle_lines(market, bi[acc], price[acc])
    secs = _epoch_seconds(t)[acc]
    delay = rng.integers(5, 600, len(acc))
    order_ids = pa.array([f"F{seed}-R{i:08d}" for i in range(1, len(acc) + 1)], type=pa.string())
    orders = pd.DataFrame({
        "order_id": _str_col(order_ids, k),
        "order_time": _utc((secs + delay)[k]),
        "customer_id": _str_col(market.customer_ids, ci[acc][k]),
        "product_id": _str_col(market.product_ids, prod),
        "quantity": np.ones(len(k), dtype=np.int64),
        "unit_price": unit.astype(float),
        "bundle_id": _str_col(market.bundle_ids, bi[acc][k]),
    })
    return {"offers": out, "orders": orders}


# --------------------------------------------------------------------------------------------------
# generate_tables
# --------------------------------------------------------------------------------------------------
def _events(market: Market, seed: int) -> pd.DataFrame:
    rng = _rng(seed, _RNG_EVENTS)
    n = market.size.n_events
    weights = _traffic_weight(_day_dates(market, np.arange(market.n_days)))
    cust, day = _sample_customers(rng, market.event_rate, market.signup_day, weights, n)
    ctype = market.customer_type[cust]
    etype = _rowwise_choice(np.cumsum(_TYPE_EVENT_MIX, axis=1), ctype, rng.random(n)).astype(np.int8)
    cat = _rowwise_choice(np.cumsum(market.cat_pref, axis=1), cust, rng.random(n))
    picker = _CategoryPicker(market.product_category.astype(np.int64), market.popularity, len(market.category_names))
    prod = picker.pick(rng, cat)
    is_view, is_search = etype == 0, etype == 1
    dur = np.round(np.exp(market.duration_log_mu[cust] + rng.normal(0, 0.6, n)), 1)
    dur = np.where(is_view, dur, np.nan)
    # queries: modifier (by type) + category noun; built from a lookup of all combinations
    n_mod = len(_MODIFIERS)
    nouns = [(c, w) for c in range(len(market.category_names)) for w in _CATEGORIES[c % len(_CATEGORIES)][2]]
    noun_cat = np.array([c for c, _ in nouns])
    noun_ptr = np.searchsorted(noun_cat, np.arange(len(market.category_names) + 1))
    texts = []
    for _, w in nouns:
        texts.append(w)
        texts.extend(f"{m} {w}" if before else f"{w} {m}" for m, _, before in _MODIFIERS)
    group = _rowwise_choice(np.cumsum(_TYPE_MODIFIER_GROUP, axis=1), ctype, rng.random(n))
    mod_group = np.array([g for _, g, _ in _MODIFIERS])
    gptr = np.searchsorted(np.sort(mod_group), np.arange(5))  # modifiers are listed by group
    gcnt = np.diff(np.append(gptr, n_mod))
    gcnt[4] = 1
    mod = np.where(group < 4, gptr[np.minimum(group, 3)] + (rng.random(n) * gcnt[group]).astype(np.int64) + 1, 0)
    noun = noun_ptr[cat] + (rng.random(n) * (noun_ptr[cat + 1] - noun_ptr[cat])).astype(np.int64)
    qidx = noun * (n_mod + 1) + mod
    start = int(market.start_date.value // 10**9)
    secs = start + day.astype(np.int64) * 86400 + _seconds_of_day(rng, n)
    order = np.argsort(secs, kind="stable")
    etype_names = pa.array(["view", "search", "add_to_cart"])
    return pd.DataFrame({
        "event_time": _utc(secs[order]),
        "customer_id": _str_col(market.customer_ids, cust[order]),
        "product_id": _str_col(market.product_ids, prod[order], valid=~is_search[order]),
        "event_type": _str_col(etype_names, etype[order]),
        "duration_s": dur[order],
        "query": _str_col(pa.array(texts), qidx[order], valid=is_search[order]),
    })


def _regular_orders(market: Market, seed: int) -> tuple[np.ndarray, ...]:
    """(order key, customer idx, epoch secs, product idx, quantity, unit price) of regular order lines."""
    rng = _rng(seed, _RNG_ORDERS)
    n = market.size.n_orders
    n_cat = len(market.category_names)
    weights = _traffic_weight(_day_dates(market, np.arange(market.n_days)))
    cust, day = _sample_customers(rng, market.order_rate, market.signup_day, weights, n)
    start = int(market.start_date.value // 10**9)
    secs = start + day.astype(np.int64) * 86400 + _seconds_of_day(rng, n)
    cdf = np.cumsum(market.cat_pref, axis=1)
    picker = _CategoryPicker(market.product_category.astype(np.int64), market.popularity, n_cat)
    cat = _rowwise_choice(cdf, cust, rng.random(n))
    cand = np.stack([picker.pick(rng, cat) for _ in range(4)], axis=1)
    cat_median = np.array([np.median(market.list_price[market.product_category == c])
                           if (market.product_category == c).any() else 1.0 for c in range(n_cat)])
    rel = np.log(market.list_price[cand] / cat_median[cat][:, None])
    gumbel = -np.log(-np.log(rng.random(cand.shape)))
    first = cand[np.arange(n), np.argmax(-_TYPE_PRICE_PREF[market.customer_type[cust]][:, None] * rel + gumbel, 1)]
    keys, prods = [np.arange(n)], [first]
    # complementary partners of the first product join the order
    grp = market.product_group[first]
    co = (grp >= 0) & (rng.random(n) < _CO_PURCHASE_P)
    for k in range(3):
        member = np.where(co, market.groups[np.maximum(grp, 0), k], -1)
        add = (member >= 0) & (member != first) & (rng.random(n) < _CO_MEMBER_P)
        keys.append(np.flatnonzero(add))
        prods.append(member[add])
    extra = np.flatnonzero(rng.random(n) < _EXTRA_ITEM_P)
    keys.append(extra)
    prods.append(picker.pick(rng, _rowwise_choice(cdf, cust[extra], rng.random(len(extra)))))
    key = np.concatenate(keys)
    prod = np.concatenate(prods).astype(np.int64)
    _, uniq = np.unique(key * market.n_products + prod, return_index=True)  # one line per (order, product)
    key, prod = key[uniq], prod[uniq]
    m = len(key)
    qty = rng.geometric(0.8, m).astype(np.int64)
    disc = np.where(rng.random(m) < 0.15, rng.uniform(0.05, 0.30, m), 0.0)
    price = np.round(market.list_price[prod] * (1 - disc), 2)
    return key, cust[key], secs[key], prod, qty, price


def generate_tables(market: Market, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """All seven contract tables (contract column names, pandas dtypes) for ``market``.

    ``seed`` defaults to ``market.seed``. Timestamps are tz-aware UTC, dates naive midnight.
    """
    seed = market.seed if seed is None else int(seed)
    tables: dict[str, pd.DataFrame] = {}
    tables["products"] = pd.DataFrame({
        "product_id": _str_col(market.product_ids),
        "category": _str_col(market.category_names, market.product_category),
        "unit_cost": market.unit_cost.astype(float),
        "list_price": market.list_price.astype(float),
        "inventory": pd.arrays.IntegerArray(np.nan_to_num(market.inventory).astype(np.int64),
                                            np.isnan(market.inventory)),
    })
    tables["customers"] = pd.DataFrame({
        "customer_id": _str_col(market.customer_ids),
        "signup_date": pd.Series((market.start_date + pd.to_timedelta(market.signup_day, unit="D")).to_numpy()
                                 .astype("datetime64[s]")),
        "region": _str_col(np.array(REGIONS), market.region),
    })
    items = market.bundle_items
    joined = [BUNDLE_ITEM_SEP.join(market.product_ids[r[r >= 0]]) for r in items]
    tables["bundles"] = pd.DataFrame({"bundle_id": _str_col(market.bundle_ids), "product_ids": _str_col(np.array(joined))})

    # offers: a price experiment on the traffic of the history
    n_off = market.size.n_offers
    rng = _rng(seed, _RNG_OFFERS)
    ci, bi, secs = _traffic_idx(market, rng, 0, market.n_days, n_off)
    lo, hi = 1.05 * market.bundle_cost[bi], market.bundle_list[bi]
    level = rng.integers(0, _PRICE_GRID_POINTS, n_off) / (_PRICE_GRID_POINTS - 1)
    price = np.minimum(np.round(lo + (hi - lo) * level, 2), hi)
    day = (secs - int(market.start_date.value // 10**9)) // 86400
    accepted, _ = _accept(market, _rng(seed, _RNG_ACCEPT), ci, bi, price, day)
    order = np.argsort(secs, kind="stable")
    ci, bi, secs, price, accepted = ci[order], bi[order], secs[order], price[order], accepted[order]
    tables["offers"] = pd.DataFrame({
        "offer_id": _str_col(pa.array(_ids("O", n_off, 8))),
        "offer_time": _utc(secs),
        "customer_id": _str_col(market.customer_ids, ci),
        "bundle_id": _str_col(market.bundle_ids, bi),
        "offered_price": price,
        "accepted": accepted,
    })

    # orders: regular + one order per accepted offer
    rkey, rcust, rsecs, rprod, rqty, rprice = _regular_orders(market, seed)
    acc = np.flatnonzero(accepted == 1)
    k, bprod, bunit = _bundle_lines(market, bi[acc], price[acc])
    brng = _rng(seed, _RNG_BUNDLE_ORDERS)
    end_s = int(market.end_time.value // 10**9) - 1
    bsecs = np.minimum(secs[acc] + brng.integers(5, 600, len(acc)), end_s)
    n_reg = market.size.n_orders
    key = np.concatenate([rkey, n_reg + k])
    osecs = np.concatenate([rsecs, bsecs[k]])
    order = np.lexsort((key, osecs))
    key = key[order]
    _, first_pos, oid = np.unique(key, return_index=True, return_inverse=True)
    rank = np.empty(len(first_pos), dtype=np.int64)  # number orders by time of their first line
    rank[np.argsort(first_pos, kind="stable")] = np.arange(len(first_pos))
    is_bundle = np.concatenate([np.zeros(len(rkey), bool), np.ones(len(k), bool)])[order]
    tables["orders"] = pd.DataFrame({
        "order_id": _str_col(pa.array(_ids("R", len(first_pos), 8)), rank[oid]),
        "order_time": _utc(osecs[order]),
        "customer_id": _str_col(market.customer_ids, np.concatenate([rcust, ci[acc][k]])[order]),
        "product_id": _str_col(market.product_ids, np.concatenate([rprod, bprod])[order]),
        "quantity": np.concatenate([rqty, np.ones(len(k), np.int64)])[order],
        "unit_price": np.concatenate([rprice, bunit])[order].astype(float),
        "bundle_id": _str_col(market.bundle_ids, np.concatenate([np.zeros(len(rkey), np.int64), bi[acc][k]])[order],
                              valid=is_bundle),
    })
    tables["events"] = _events(market, seed)
    tables["competitor_prices"] = _competitor_table(market)
    return {name: tables[name][TABLES[name].column_names] for name in TABLE_ORDER}


def _competitor_table(market: Market) -> pd.DataFrame:
    step = max(int(market.size.competitor_step_days), 1)
    days = np.arange(market.n_days - 1, -1, -step)[::-1]  # always includes end_date
    cp = market.competitor_price[:, :, days]  # (n_p, n_k, n_d)
    p, k, d = np.nonzero(~np.isnan(cp))
    # order by date, product, competitor
    order = np.lexsort((k, p, d))
    p, k, d = p[order], k[order], d[order]
    dates = (market.start_date.to_datetime64().astype("datetime64[s]") + (days[d] * 86400).astype("timedelta64[s]"))
    return pd.DataFrame({
        "date": pd.Series(dates),
        "product_id": _str_col(market.product_ids, p),
        "competitor": _str_col(market.competitor_names, k),
        "price": cp[p, k, d].astype(float),
    })


# --------------------------------------------------------------------------------------------------
# drift
# --------------------------------------------------------------------------------------------------
def shift_market(market: Market, kind: Literal["competitor_cut", "taste_shift"], magnitude: float = 0.2,
                 seed: int = 0, from_date: str | pd.Timestamp | None = None) -> Market:
    """A changed copy of ``market`` for drift tests (the original is left untouched).

    * ``competitor_cut``: every competitor price is multiplied by ``1 - magnitude`` (from
      ``from_date`` on when given, else on all days), so acceptance at our prices falls.
    * ``taste_shift``: each customer's category interest moves towards a permutation of the
      categories (weight ``magnitude``; the permutation is drawn per type from ``seed``), and
      willingness to pay falls by the factor ``1 - magnitude / 2``.
    """
    if not 0 <= magnitude < 1:
        raise ValueError("magnitude must lie in [0, 1)")
    if kind == "competitor_cut":
        comp = market.competitor_price.copy()
        first = 0 if from_date is None else int(np.clip(_day_offsets(market, from_date), 0, comp.shape[2]))
        comp[:, :, first:] = np.round(comp[:, :, first:] * (1 - magnitude), 2)
        return replace(market, competitor_price=np.maximum(comp, 0.01))  # nan (not carried) stays nan
    if kind == "taste_shift":
        rng = _rng(seed, _RNG_SHIFT)
        n_cat = market.cat_pref.shape[1]
        perms = np.stack([rng.permutation(n_cat) for _ in TYPE_NAMES])
        moved = np.take_along_axis(market.cat_pref, perms[market.customer_type], axis=1)
        pref = ((1 - magnitude) * market.cat_pref + magnitude * moved).astype(np.float32)
        return replace(market, cat_pref=pref / pref.sum(1, keepdims=True), wtp=market.wtp * (1 - magnitude / 2))
    raise ValueError(f"unknown shift kind {kind!r}")


# --------------------------------------------------------------------------------------------------
# persistence and the one-call entry point
# --------------------------------------------------------------------------------------------------
def save_market(market: Market, dir: str | Path) -> Path:
    """Store the truth in ``dir``: ``market.npz`` + ``market.json`` (+ readable parquet summaries)."""
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "market.npz", **{name: getattr(market, name) for name in _ARRAY_FIELDS})
    meta = {
        "truth_version": _TRUTH_VERSION,
        "size": asdict(market.size),
        "seed": market.seed,
        "start_date": market.start_date.strftime("%Y-%m-%d"),
        "end_date": market.end_date.strftime("%Y-%m-%d"),
        "type_names": list(TYPE_NAMES),
        "regions": list(REGIONS),
        "model": {
            "formula": "P = sigmoid(alpha_i + s(t) + kappa*aff_ib + eta_i*log(V_ib/p) + lambda_i*log(C_bt/p))",
            "kappa": _KAPPA,
            "type_alpha": _TYPE_ALPHA.tolist(), "type_eta": _TYPE_ETA.tolist(),
            "type_lambda": _TYPE_LAMBDA.tolist(), "type_wtp": _TYPE_WTP.tolist(),
            "type_share": _TYPE_SHARE.tolist(),
        },
    }
    (d / "market.json").write_text(json.dumps(meta, indent=2))
    pd.DataFrame({
        "customer_id": market.customer_ids, "type": np.asarray(TYPE_NAMES)[market.customer_type],
        "alpha": market.alpha, "wtp": market.wtp, "eta": market.eta, "lambda": market.lam,
    }).to_parquet(d / "customers_truth.parquet", index=False)
    pd.DataFrame({
        "bundle_id": market.bundle_ids, "is_complementary": market.is_complementary,
        "complementarity": market.complementarity, "cost": market.bundle_cost, "list": market.bundle_list,
    }).to_parquet(d / "bundles_truth.parquet", index=False)
    return d


def load_market(data_dir: str | Path) -> Market:
    """Load the truth saved by :func:`simulate` (``data_dir/_truth``) or :func:`save_market` (``data_dir``)."""
    d = Path(data_dir)
    if (d / TRUTH_DIR / "market.json").exists():
        d = d / TRUTH_DIR
    if not (d / "market.json").exists():
        raise FileNotFoundError(f"no simulator truth in {Path(data_dir)} (expected {TRUTH_DIR}/market.json)")
    meta = json.loads((d / "market.json").read_text())
    with np.load(d / "market.npz", allow_pickle=False) as z:
        arrays = {name: z[name] for name in _ARRAY_FIELDS}
    return Market(size=MarketSize(**meta["size"]), seed=int(meta["seed"]),
                  start_date=pd.Timestamp(meta["start_date"]), end_date=pd.Timestamp(meta["end_date"]), **arrays)


def simulate(out_dir: str | Path, size: str | MarketSize = "default", seed: int = 7, fmt: str = "csv",
             progress: Callable[[str], None] | None = None, end_date: str = "2026-09-30") -> dict[str, Path]:
    """Generate a market and its tables, write them to ``out_dir`` and the truth to ``out_dir/_truth``.

    Returns ``{table: path}`` for the seven tables plus ``"_truth": <truth dir>``.
    """
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    say(f"generating the {_resolve_size(size).name} market (seed {seed})")
    market = generate_market(size, seed=seed, end_date=end_date)
    say("generating tables")
    tables = generate_tables(market)
    paths: dict[str, Path] = {}
    for name in TABLE_ORDER:
        say(f"writing {name} ({len(tables[name]):,} rows)")
        paths[name] = write_table(tables[name], out, name, fmt)
        tables[name] = None  # free memory early
    say("saving the ground truth")
    paths[TRUTH_DIR] = save_market(market, out / TRUTH_DIR)
    return paths


# --------------------------------------------------------------------------------------------------
# a price book played forward (feedback loop)
# --------------------------------------------------------------------------------------------------
def _window_share(market: Market, first_day: int, days: int) -> float:
    """Traffic of the window ``[first_day, first_day + days)`` relative to the whole history's traffic.

    The history's generators spread a fixed number of rows over its days in proportion to the seasonal
    traffic weight, so a window continuing at the same rates holds ``n_history * share`` rows.
    """
    hist = _traffic_weight(_day_dates(market, np.arange(market.n_days))).sum()
    window = _traffic_weight(_day_dates(market, np.arange(first_day, first_day + int(days)))).sum()
    return float(window / hist)


def period_offers(market: Market, start: pd.Timestamp | str, days: int) -> int:
    """Offers in the ``days`` from the first midnight at or after ``start`` (naive or UTC) when the
    history's offer rate goes on, with the calendar's seasonal traffic: the volume
    :func:`play_price_book` shows by default."""
    return _window_offers(market, int(_day_offsets(market, period_start(start))), int(days))


def _window_offers(market: Market, first_day: int, days: int) -> int:
    """Offers in the window ``[first_day, first_day + days)`` at the history's offer rate (at least 1)."""
    return max(round(market.size.n_offers * _window_share(market, first_day, days)), 1)


def period_start(start: pd.Timestamp | str) -> pd.Timestamp:
    """A period's first full day (naive UTC): the first midnight at or after ``start``."""
    day0 = pd.Timestamp(start)
    if day0.tzinfo is not None:
        day0 = day0.tz_convert("UTC").tz_localize(None)
    return day0.ceil("D")


def expected_units(market: Market, bundle_idx: np.ndarray, accept: np.ndarray) -> np.ndarray:
    """Expected units of every product, ``[n_products]``, sold by offers of bundles ``bundle_idx``
    accepted with probabilities ``accept`` (one unit of each item per accepted bundle)."""
    bi = np.asarray(bundle_idx)
    k, prod, _ = _bundle_lines(market, bi, np.zeros(len(bi)))
    return np.bincount(prod, weights=np.asarray(accept, dtype=np.float64)[k], minlength=market.n_products)


def _window_market(market: Market, first_day: int, days: int) -> Market:
    """``market`` seen through the window ``[first_day, first_day + days)`` as if it were the history.

    Day 0 becomes ``first_day``, signups and competitor paths move with it, and the number of regular
    orders and events continues the history's rates (:func:`_window_share`); used to draw the period's
    own behaviour (events, regular orders) with the history's generators.
    """
    share = _window_share(market, first_day, days)
    size = replace(
        market.size,
        n_days=int(days),
        n_orders=max(round(market.size.n_orders * share), 1),
        n_events=max(round(market.size.n_events * share), 1),
        future_days=max(market.n_days_total - first_day - int(days), 0),
    )
    start = market.start_date + pd.Timedelta(days=first_day)
    return replace(
        market,
        size=size,
        start_date=start,
        end_date=start + pd.Timedelta(days=int(days) - 1),
        signup_day=(market.signup_day - first_day).astype(np.int32),
        competitor_price=market.competitor_price[:, :, first_day:],
    )


def play_price_book(
    market: Market,
    book: Any,
    start: pd.Timestamp | str,
    days: int,
    n_offers: int | None = None,
    seed: int = 0,
    previous: Any = None,
    optimize: Any = None,
    with_behaviour: bool = True,
) -> dict[str, pd.DataFrame]:
    """Play a published price book (with its experiment groups) forward for ``days`` from ``start``.

    The period starts on the first midnight at or after ``start`` (a book priced for 23:59:59 of the
    history's last day is played from the next day), so it never overlaps the history it was priced on.

    The period's traffic comes from :func:`sample_traffic` (``n_offers``; default: the history's offer
    rate continued over the period, with its seasonal traffic), every shown offer gets the price its customer's group gets
    (:func:`pricing.experiment.offer_prices`: treatment the book's price, control the control price,
    exploration a random allowed ladder price) and the truth decides acceptance (:func:`play_forward`).

    Returns contract tables of the period: ``offers`` (offer_id, offer_time, customer_id, bundle_id,
    offered_price, accepted), ``orders`` (one order per accepted offer plus, with ``with_behaviour``,
    the period's regular orders) and, with ``with_behaviour``, ``events`` and ``competitor_prices``;
    plus ``truth``: per offer its ``group`` and ``true_prob`` (never part of the shop's data).
    Deterministic for ``seed``. ``optimize`` (an :class:`pricing.config.OptimizeConfig`, default the
    shipped one) gives the rules of the exploration prices.
    """
    from pricing.config import OptimizeConfig
    from pricing.experiment import offer_prices

    day0 = period_start(start)  # the period's first full day: no offer of the period lies before ``start``
    first = int(_day_offsets(market, day0))
    if first < 0 or first + int(days) > market.n_days_total:
        raise ValueError(
            f"the period {day0.date()} + {days} days lies outside the simulated calendar "
            f"({market.start_date.date()} .. {market.n_days_total} days)"
        )
    if n_offers is None:
        n_offers = period_offers(market, day0, int(days))
    traffic = sample_traffic(market, day0, int(days), int(n_offers), seed)
    price, group = offer_prices(
        book, previous, traffic["customer_id"].to_numpy(), traffic["bundle_id"].to_numpy(),
        optimize or OptimizeConfig(), seed=seed,
    )
    shown = traffic.assign(offered_price=price)
    shown.insert(0, "offer_id", _str_col(np.array([f"F{seed}-{i:08d}" for i in range(1, len(shown) + 1)])))
    played = play_forward(market, shown, seed)
    offers = played["offers"]
    truth = pd.DataFrame({"offer_id": offers["offer_id"], "group": group, "true_prob": offers["true_prob"]})
    out: dict[str, pd.DataFrame] = {
        "offers": offers[TABLES["offers"].column_names].reset_index(drop=True),
        "truth": truth,
    }
    orders = played["orders"]
    if with_behaviour:
        window = _window_market(market, first, int(days))
        behaviour_seed = int(seed) * 1000 + first  # not the history's streams
        key, cust, secs, prod, qty, unit = _regular_orders(window, behaviour_seed)
        _, first_pos, oid = np.unique(key, return_index=True, return_inverse=True)
        ids = np.array([f"F{seed}-G{i:08d}" for i in range(1, len(first_pos) + 1)])
        regular = pd.DataFrame({
            "order_id": _str_col(ids, oid),
            "order_time": _utc(secs),
            "customer_id": _str_col(market.customer_ids, cust),
            "product_id": _str_col(market.product_ids, prod),
            "quantity": qty.astype(np.int64),
            "unit_price": unit.astype(float),
            "bundle_id": _str_col(market.bundle_ids, np.zeros(len(key), np.int64), valid=np.zeros(len(key), bool)),
        })
        orders = pd.concat([regular, orders], ignore_index=True).sort_values("order_time", kind="stable")
        out["events"] = _events(window, behaviour_seed).reset_index(drop=True)
        out["competitor_prices"] = _competitor_table(window).reset_index(drop=True)
    out["orders"] = orders[TABLES["orders"].column_names].reset_index(drop=True)
    return out
