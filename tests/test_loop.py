"""The closed loop (``bundle-pricing loop``, ``make demo``) on the tiny market under Prefect's test harness.

Three rounds of two weeks, a 30% competitor price cut from round 1: round 0 is priced by the first
model; the shift is seen in round 1 (alarm, retraining: a challenger); the challenger is reviewed on
round 2's period, offers neither model was trained on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pricing.pricebook import read_price_book

MODEL_NAME = "loop-test"


@pytest.fixture(scope="module")
def loop_run(prefect_harness, tiny_market, tmp_path_factory) -> dict:
    from flows.loop import closed_loop_flow
    from tests.conftest import flow_config

    root = tmp_path_factory.mktemp("loop")
    cfg = flow_config(root, MODEL_NAME)
    result = closed_loop_flow(data_dir=str(tiny_market), out_dir=str(root / "loop"), rounds=3, shift_round=1,
                              shift="competitor_cut", magnitude=0.3, days=14, seed=3, config_path=cfg)
    return {"result": result, "root": root, "config": cfg}


@pytest.mark.flow
def test_every_round_is_played_and_recorded(loop_run):
    result = loop_run["result"]
    out = Path(result["out_dir"])
    table = pd.read_csv(out / "rounds.csv")
    assert list(table["round"]) == [0, 1, 2]
    assert list(table["market"]) == ["stable", "competitor_cut 0.3", "competitor_cut 0.3"]
    assert (table["offers"] > 500).all(), "two weeks of tiny-market traffic per round"
    assert table["share_of_clairvoyant"].between(0.3, 1.0).all()
    assert (table["lift_low"] <= table["lift_profit_per_offer"]).all()
    assert (table["lift_profit_per_offer"] <= table["lift_high"]).all()
    for r in range(3):
        played = read_price_book(out / f"round-{r}" / "prices")
        assert (played.bundle_prices["price"] <= played.bundle_prices["list_price"] + 1e-9).all()
        assert (out / f"round-{r}" / "realized" / "offers.csv").exists()
        assert (out / f"round-{r}" / "next-data" / "offers.parquet").exists()
        assert (out / f"round-{r}" / "next-data" / "_truth").is_dir(), "the shifted truth travels with the data"
    # each round's data holds the history plus every period played so far
    first = pd.read_parquet(out / "round-0" / "next-data" / "offers.parquet")
    last = pd.read_parquet(out / "round-2" / "next-data" / "offers.parquet")
    realized = sum(len(pd.read_csv(out / f"round-{r}" / "realized" / "offers.csv")) for r in (1, 2))
    assert len(last) == len(first) + realized


@pytest.mark.flow
def test_the_shift_raises_the_alarm_and_the_challenger_is_reviewed(loop_run):
    from pricing.tracking import CHALLENGER, CHAMPION, alias_map

    rows = loop_run["result"]["rounds"]
    assert rows[0]["alarm"] is False, rows[0]["reasons"]
    assert rows[1]["alarm"] is True and "competitor" in rows[1]["reasons"], rows[1]["reasons"]
    assert rows[1]["retrained"].startswith("v"), "the alarm retrains"
    challenger = rows[1]["retrained"][1:]
    assert rows[2]["review"].startswith(f"v{challenger} vs v1: "), rows[2]["review"]
    outcome = rows[2]["review"].split(": ", 1)[1]
    aliases = alias_map(MODEL_NAME)
    if outcome == "promoted":
        assert aliases[CHAMPION] == challenger and rows[2]["champion"] == f"v{challenger}"
    else:
        assert outcome in {"rejected", "needs_approval", "deferred"}, outcome
        assert aliases[CHAMPION] == "1"
    assert aliases.get(CHALLENGER) == challenger
    # the live book was priced by the champion after the last round's review
    live = read_price_book(loop_run["result"]["live_prices"])
    assert str(live.manifest["model"]["version"]) in {"1", challenger}
