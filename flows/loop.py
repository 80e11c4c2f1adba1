"""The closed loop on the simulated market (``make demo``): rounds of price -> play -> review -> feedback ->
retrain -> re-price, with a market shift midway.

    round 0: pipeline (ingest -> train -> register -> price book)
    every round r:
        play the live price book forward ``days`` on the market (shifted from round ``shift_round`` on)
        -> judge the period against the truth (realized profit, share of the clairvoyant optimum)
        -> history + period = the next round's data
        -> a challenger trained in an earlier round: promotion review on this period (offers neither
           model was trained on; approved automatically when the gain is clear)
        -> feedback flow on the period (calibration, lift over control, drift); when it fires, and the
           book's model is still the champion and no challenger awaits review, the training flow runs
           as a subflow on history + period: the new `challenger` is reviewed next round
        -> price flow with the champion on the next round's data (the live book bounds the price changes)

So a shift in round s is seen in round s (alarm, retraining), the retrained model is reviewed on round
s + 1 and prices from round s + 2. Writes under ``out_dir``: ``prices/`` (the live price book),
``round-<r>/`` (the book that was played, the period's realized tables, the next round's data) and
``rounds.csv`` (the table printed at the end). Simulated data only: the market's truth
(``<data_dir>/_truth``) plays the books forward.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from pricing.config import load_config
from pricing.ladder import InfeasibleRulesError
from pricing.pricebook import read_price_book
from pricing.simulator import load_market, shift_market
from tasks import loop as t

ShiftKind = Literal["none", "competitor_cut", "taste_shift"]


@flow(name="closed-loop", log_prints=True)
def closed_loop_flow(
    data_dir: str,
    out_dir: str,
    rounds: int = 5,
    shift_round: int = 2,
    shift: ShiftKind = "competitor_cut",
    magnitude: float = 0.3,
    days: int = 7,
    seed: int = 0,
    config_path: str | None = None,
    auto_approve: bool = True,
) -> dict[str, Any]:
    """Run ``rounds`` pricing periods on the simulated market in ``data_dir``; the market shifts at ``shift_round``.

    Args:
        data_dir: simulated data (``bundle-pricing simulate``), with its ``_truth``.
        out_dir: folder for the live price book, each round's files and ``rounds.csv``.
        rounds / days: number of periods and their length in days.
        shift / magnitude / shift_round: the market change injected from the start of that round
            (``competitor_cut``: competitor prices fall by ``magnitude``; ``taste_shift``: interests move
            and willingness to pay falls; ``none``: a stable market).
        seed: seed of the periods' traffic and outcomes (round r plays with ``seed + r``).
        auto_approve: let the promotion review approve a clear gain without a human.
    """
    from flows.feedback import feedback_flow
    from flows.pipeline import pipeline_flow
    from flows.price import price_flow
    from flows.promote import promote_flow
    from tasks import train as tt

    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    config = load_config(config_path)
    out = Path(out_dir).resolve()
    live = out / "prices"
    market = load_market(data_dir)
    played_on = market  # the market the periods are played on (shifted from shift_round on)

    print(f"round 0: pipeline on {data_dir} (ingest -> train -> register -> price book)")
    first = pipeline_flow(data_dir=str(data_dir), out_dir=str(live), config_path=config_path)
    name = config.model.registered_model_name
    pending = None  # a challenger waiting for its review (it needs offers it was not trained on)
    if first.get("train") and "champion" not in first["train"]["aliases"]:
        pending = str(first["train"]["version"])
        print(f"note: the registry's champion is from an earlier run; v{pending} priced round 0 and awaits review")
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        rdir = out / f"round-{r}"
        book_dir = rdir / "prices"
        if book_dir.exists():
            shutil.rmtree(book_dir)
        shutil.copytree(live, book_dir)  # the book this round plays, kept for the record
        book = read_price_book(book_dir)
        priced_by = str(book.manifest.get("model", {}).get("version", "?"))
        start = pd.Timestamp(book.manifest["priced_for"]).tz_convert("UTC").ceil("D")  # the period's first day
        if shift != "none" and r == shift_round:
            from_date = start if shift == "competitor_cut" else None
            played_on = shift_market(market, shift, magnitude, seed=seed, from_date=from_date)
            print(f"round {r}: the market shifts ({shift} {magnitude:g}) from {start.date()}")
        realized = t.play(played_on, str(book_dir), days, seed + r, config, str(rdir / "realized"))
        judged = t.outcome(played_on, realized).set_index("group")
        snapshot = book.manifest["snapshot"]
        tables = tt.load_tables(snapshot)
        next_data = t.next_round_data(tables, realized, played_on, str(rdir / "next-data"))

        # 1. a challenger trained in an earlier round is reviewed on this period (offers it never saw)
        review = None
        if pending is not None:
            review = promote_flow(config_path=config_path, data_dir=next_data, auto_approve=auto_approve,
                                  wait_for_approval=False)
            if review["outcome"] != "deferred":
                pending = None
        champion = t.champion_version(config)
        # 2. feedback on the period; it retrains only when the book's model is still the champion and no
        #    challenger awaits its review (a new one would only replace it before anyone judged it)
        may_retrain = pending is None and champion == priced_by
        fb = feedback_flow(prices_dir=str(book_dir), realized_dir=str(rdir / "realized"), snapshot_dir=snapshot,
                           config_path=config_path, retrain=may_retrain, retrain_data_dir=next_data,
                           retrain_via="subflow")
        if fb.get("retrained"):
            pending = str(fb["retrained"]["version"])
        m = fb["metrics"]
        treat = judged.loc["treatment"] if "treatment" in judged.index else judged.loc["all"]
        rows.append({
            "round": r,
            "period": f"{start.date()} +{days}d",
            "market": f"{shift} {magnitude:g}" if shift != "none" and r >= shift_round else "stable",
            "model": f"v{priced_by}",
            "offers": int(judged.loc["all", "offers"]),
            "realized_profit": float(treat["realized_profit"]),
            "share_of_clairvoyant": float(treat["share_of_clairvoyant"]),
            "control_share": float(judged.loc["control", "share_of_clairvoyant"]) if "control" in judged.index
            else float("nan"),
            "lift_profit_per_offer": m.get("lift_profit_per_offer_diff", float("nan")),
            "lift_low": m.get("lift_profit_per_offer_low", float("nan")),
            "lift_high": m.get("lift_profit_per_offer_high", float("nan")),
            "alarm": bool(fb["retrain"]),
            "reasons": "; ".join(fb["reasons"]),
            "review": _review_note(review),
            "retrained": f"v{fb['retrained']['version']}" if fb.get("retrained") else (
                "waits (a challenger awaits review)" if fb["retrain"] and pending is not None else
                "waits (the new champion is judged next round)" if fb["retrain"] and champion != priced_by else ""),
            "champion": f"v{champion}",
            "next_book": "",
        })
        if r + 1 < rounds:
            try:
                price_flow(out_dir=str(live), data_dir=next_data, config_path=config_path, model_alias="champion")
                rows[-1]["next_book"] = f"re-priced by v{champion}"
            except InfeasibleRulesError as exc:  # as in production: a failed pricing run leaves the live book in place
                rows[-1]["next_book"] = f"kept (re-pricing infeasible: {exc.conflicts[0] if exc.conflicts else exc})"
                print(f"round {r}: re-pricing is infeasible, the live price book stays for round {r + 1}: {exc}")
        print(format_row(rows[-1]))
    if pending is not None:
        print(f"v{pending} of {name} still awaits its review (bundle-pricing promote, after the next period)")

    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "rounds.csv", index=False)
    create_markdown_artifact(rounds_markdown(table), key="closed-loop-rounds", description="Closed loop: one row per round")
    return {"rounds": table.to_dict(orient="records"), "out_dir": str(out), "live_prices": str(live),
            "last_data": rows and str(out / f"round-{rounds - 1}" / "next-data")}


def _review_note(review: dict[str, Any] | None) -> str:
    if review is None:
        return ""
    who = f"v{review.get('challenger_version')} vs v{review.get('champion_version')}"
    return f"{who}: {review['outcome']}"


def format_row(row: dict[str, Any]) -> str:
    alarm = f"ALARM ({row['reasons']})" if row["alarm"] else "no alarm"
    extra = f"; review {row['review']}" if row["review"] else ""
    extra += f"; retrained: {row['retrained']}" if row["retrained"] else ""
    if row.get("next_book", "").startswith("kept"):
        extra += f"; next round: live book {row['next_book']}"
    return (f"round {row['round']} [{row['market']}] priced by {row['model']}: profit {row['realized_profit']:,.0f}, "
            f"{row['share_of_clairvoyant']:.3f} of the clairvoyant optimum, lift over control "
            f"{row['lift_profit_per_offer']:+.3f} [{row['lift_low']:+.3f}, {row['lift_high']:+.3f}] per offer; {alarm}{extra}")


def rounds_markdown(table: pd.DataFrame) -> str:
    lines = ["# Closed loop", "",
             ("| round | period | market | priced by | offers | realized profit (treatment) | share of clairvoyant | "
             "lift over control / offer [95% CI] | drift alarm | review | retrained | champion | next round's book |"),
             "|---:|---|---|---|---:|---:|---:|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(
            f"| {r.round} | {r.period} | {r.market} | {r.model} | {r.offers:,} | {r.realized_profit:,.0f} | "
            f"{r.share_of_clairvoyant:.3f} | {r.lift_profit_per_offer:+.3f} [{r.lift_low:+.3f}, {r.lift_high:+.3f}] | "
            f"{'yes: ' + r.reasons if r.alarm else 'no'} | {r.review or '-'} | {r.retrained or '-'} | {r.champion} | "
            f"{r.next_book or '-'} |"
        )
    return "\n".join(lines)
