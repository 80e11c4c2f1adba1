"""Prefect tasks for the closed-loop demo: play a price book on the simulated market, judge the period,
write the next round's data. Thin wrappers around :mod:`pricing.simulator` and :mod:`pricing.evaluation`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from pricing.config import Config
from pricing.evaluation import played_period_outcome
from pricing.feedback import write_period_data
from pricing.io import write_table
from pricing.pricebook import read_price_book
from pricing.simulator import Market, play_price_book, save_market
from tasks.common import run_logger

PERIOD_TABLES = ("offers", "orders", "events", "competitor_prices")


@task(name="play-price-book", cache_policy=NO_CACHE)
def play(market: Market, prices_dir: str, days: int, seed: int, config: Config, out_dir: str) -> dict[str, pd.DataFrame]:
    """Play the book in ``prices_dir`` forward for ``days`` from the day it was priced for; write the period."""
    book = read_price_book(prices_dir)
    start = pd.Timestamp(book.manifest.get("priced_for") or market.end_time)
    realized = play_price_book(market, book, start, days, seed=seed, optimize=config.optimize)
    for name in PERIOD_TABLES:
        if name in realized:
            write_table(realized[name], out_dir, name, "csv")
    truth = Path(out_dir) / "_truth"  # group and true probability per offer: never part of the shop's data
    truth.mkdir(parents=True, exist_ok=True)
    realized["truth"].to_csv(truth / "offers_truth.csv", index=False)
    acc = realized["offers"]["accepted"]
    run_logger().info("played %s offers from %s for %d days (%s accepted) into %s",
                      f"{len(acc):,}", start.date(), days, f"{int(acc.sum()):,}", out_dir)
    return realized


@task(name="judge-period", cache_policy=NO_CACHE)
def outcome(market: Market, realized: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Realized and expected profit per experiment group, and the share of the clairvoyant optimum."""
    return played_period_outcome(market, realized)


@task(name="write-next-round-data", cache_policy=NO_CACHE)
def next_round_data(tables: dict[str, pd.DataFrame], realized: dict[str, pd.DataFrame], market: Market,
                    out_dir: str) -> str:
    """The data before the period plus the period, as contract Parquet files, with the market's truth beside it."""
    out = write_period_data(tables, realized, out_dir)
    save_market(market, out / "_truth")  # simulated data: the (possibly shifted) truth goes with it
    run_logger().info("next round's data (history + the period) written to %s", out)
    return str(out)


@task(name="champion-version", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def champion_version(config: Config) -> str | None:
    """The registry's current `champion` version (None when there is none)."""
    from pricing import tracking

    tracking.configure(config)
    return tracking.alias_map(config.model.registered_model_name).get(tracking.CHAMPION)
