"""Benchmark: false alarm and detection rates of the feedback retraining trigger.

    .venv/bin/python benchmarks/feedback_false_alarm.py --size tiny --seeds 11-20
    .venv/bin/python benchmarks/feedback_false_alarm.py --size default --seeds 11-15

For every seed: simulate a market (that seed), train the acceptance model on its history, build the
price book, add the experiment groups (the flows' code, without Prefect or MLflow), then play the book
forward ``--plays`` times (other traffic and outcome seeds) for ``--days`` days on

* the **stable** market (no shift): a trigger that fires is a false alarm;
* the market after an injected shift from the first day of the period (``simulator.shift_market``:
  ``competitor_cut`` = every competitor price 20% lower, ``taste_shift`` = category interest moved by 20%
  and willingness to pay 10% lower): a trigger that fires is a detection;

and runs :func:`pricing.feedback.compute_feedback` with the shipped thresholds (config defaults). The
thresholds were chosen on other seeds (tiny 1-5, default 1-2), so the rates here are out of sample.
Rates come with Wilson 95% intervals (few seeds: wide). A market whose price book cannot meet the
inventory rule is priced with ``optimize.rules.respect_inventory: false`` (recorded per seed).

Results: benchmarks/out/feedback-<size>.json and markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHIFTS = ("competitor_cut", "taste_shift")
WILSON_Z = 1.96  # 95% Wilson score interval


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + WILSON_Z**2 / n
    c = (p + WILSON_Z**2 / (2 * n)) / d
    h = WILSON_Z * math.sqrt(p * (1 - p) / n + WILSON_Z**2 / (4 * n**2)) / d
    return max(0.0, c - h), min(1.0, c + h)


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny", choices=["tiny", "default"])
    ap.add_argument("--seeds", default="11-20", help="market seeds, e.g. 11-20 or 3,5,8")
    ap.add_argument("--days", type=int, default=None, help="period length (default: 14 tiny, 7 default)")
    ap.add_argument("--magnitude", type=float, default=0.2, help="size of the injected shifts")
    ap.add_argument("--plays", type=int, default=2, help="periods played per market and scenario (other traffic seeds)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import pandas as pd

    from pricing.config import load_config
    from pricing.experiment import with_groups
    from pricing.features import PRICE_FEATURES
    from pricing.feedback import compute_feedback, markdown_table
    from pricing.ladder import InfeasibleRulesError
    from pricing.model import train_model
    from pricing.pricebook import build_price_book
    from pricing.simulator import generate_market, generate_tables, play_price_book, shift_market
    from pricing.training import build_training_data

    days = args.days or (14 if args.size == "tiny" else 7)
    # tiny: the flow tests' model settings (tests/conftest.py flow_config); default: the shipped config
    overrides = {"model": {"n_estimators": 200}} if args.size == "tiny" else {}
    config = load_config(overrides=overrides)
    rows = []
    t_all = time.perf_counter()
    for seed in parse_seeds(args.seeds):
        t0 = time.perf_counter()
        market = generate_market(args.size, seed=seed)
        tables = generate_tables(market)
        data = build_training_data(tables, config)
        res = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
        cfg, relaxed = config, False
        try:
            book = build_price_book(tables, res.model, data.builder, cfg)
        except InfeasibleRulesError:
            cfg = load_config(overrides={**overrides, "optimize": {"rules": {"respect_inventory": False}}})
            relaxed = True
            book = build_price_book(tables, res.model, data.builder, cfg)
        book = with_groups(book, cfg)
        prep_s = time.perf_counter() - t0
        scenarios = [("stable", market)] + [(k, shift_market(market, k, args.magnitude, seed=seed)) for k in SHIFTS]
        for (name, mk), play in ((sc, k) for sc in scenarios for k in range(args.plays)):
            t1 = time.perf_counter()
            play_seed = seed * 1000 + play
            realized = play_price_book(mk, book, market.end_time, days, seed=play_seed, optimize=cfg.optimize)
            rep = compute_feedback(book, realized, tables, res.model, data.builder, cfg)
            checks = rep.decision.checks.set_index("check")
            row = {
                "seed": seed, "play_seed": play_seed, "scenario": name, "offers": int(rep.overall["offers"]), "fired": rep.decision.fire,
                "fired_checks": "; ".join(checks.index[checks["fired"]]),
                "inventory_rule_relaxed": relaxed, "test_auc": res.metrics["test_auc"],
                "prep_s": round(prep_s, 1), "feedback_s": round(time.perf_counter() - t1, 1),
            }
            for check, short in (("calibration (overall)", "cal"), ("calibration (segment)", "seg"),
                                 ("drift (max PSI)", "psi"), ("AUC drop", "auc"), ("log loss vs expectation", "ll")):
                if check in checks.index:
                    row[f"{short}_value"] = float(checks.loc[check, "value"])
                    row[f"{short}_evidence"] = float(checks.loc[check, "evidence"])
            drifted = rep.drift[rep.drift["drifted"]]
            row["top_drift_feature"] = (drifted if len(drifted) else rep.drift).iloc[0]["feature"] if len(rep.drift) else ""
            row["lift_profit_per_offer"] = float(rep.lift["diff"].iloc[0]) if len(rep.lift) else float("nan")
            rows.append(row)
            print(f"seed {seed} play {play_seed} {name:<15} offers {row['offers']:>6} fired {row['fired']!s:<5} "
                  f"{row['fired_checks'] or '-'}", flush=True)
    df = pd.DataFrame(rows)
    summary = []
    for name in ("stable", *SHIFTS):
        sub = df[df["scenario"] == name]
        k, n = int(sub["fired"].sum()), len(sub)
        lo, hi = wilson(k, n)
        summary.append({"scenario": name, "rate": "false alarm" if name == "stable" else "detection",
                        "fired": k, "runs": n, "share": k / n if n else float("nan"), "wilson95_low": lo,
                        "wilson95_high": hi})
    sm = pd.DataFrame(summary)
    out = Path(args.out or Path(__file__).parent / "out" / f"feedback-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "size": args.size, "seeds": args.seeds, "plays": args.plays, "days": days, "magnitude": args.magnitude,
        "thresholds": config.feedback.model_dump(mode="json"), "summary": summary,
        "runs": json.loads(df.to_json(orient="records")), "wall_s": time.perf_counter() - t_all,
    }, indent=2))
    print()
    print(markdown_table(sm, ".2f"))
    print()
    cols = ["seed", "play_seed", "scenario", "offers", "fired", "fired_checks", "cal_value", "cal_evidence", "seg_value", "seg_evidence",
            "psi_value", "psi_evidence", "top_drift_feature", "auc_value", "ll_value", "ll_evidence"]
    print(markdown_table(df[[c for c in cols if c in df.columns]], ".3f"))
    print(f"\nwritten to {out} ({time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
