"""Benchmark: the whole pipeline, stage by stage, at one market size (wall, CPU, peak memory).

    .venv/bin/python benchmarks/bench_pipeline.py --size tiny
    .venv/bin/python benchmarks/bench_pipeline.py --size default
    .venv/bin/python benchmarks/bench_pipeline.py --size bench       # ~200k customers, 10M events, 3M offers

Stages, in one process and in the order the flows run them (the library calls the flows wrap, without
the Prefect server and MLflow logging, so each stage is measured alone):

1. simulate (market, tables, CSV files)
2. ingest + validate (read & type, Great Expectations suites, quarantine decision, snapshot)
3. features (point-in-time features for every offer) and 4. train (monotone LightGBM, calibration)
5. price book: segment prices (segmentation, ladder scoring, MILP) and personal prices (candidates,
   band scoring, Lagrangian), split by the price book's own progress messages
6. feedback: the book played forward one week by the simulator, then realized vs predicted, lift, drift
   and the retraining decision

plus, side by side on a sample of the price step's requests, scoring the ladder the naive way
(rebuild the feature frame for every rung) vs the vectorized way (context once, price columns only).
Results: benchmarks/out/pipeline-<size>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ingest import ingest_into
from benchmarks.bench_train import features_and_train
from benchmarks.measure import Recorder


def _phase_clock():
    """A progress callback that timestamps the price book's phases."""
    marks: list[tuple[float, str]] = []

    def say(message: str) -> None:
        marks.append((time.perf_counter(), message))
        print(f"    {message}", flush=True)

    return marks, say


def _split_phases(marks: list[tuple[float, str]], t_end: float) -> dict[str, float]:
    """Seconds of the segment part (up to the personal candidates) and of the personal part."""
    t0 = marks[0][0] if marks else t_end
    personal = next((t for t, m in marks if m.startswith("scoring") and "customers x" in m), t_end)
    return {"segment_prices_s": round(personal - t0, 1), "personal_prices_s": round(t_end - personal, 1)}


def ladder_scoring_side_by_side(model, builder, tables, book_cfg, n_requests: int, rec: Recorder) -> None:
    """Naive (features rebuilt per rung) vs vectorized ladder scoring on the same requests; same answer."""
    import numpy as np

    from pricing.features import assemble, context_features, price_features
    from pricing.ladder import build_ladder
    from pricing.pricebook import catalog
    from pricing.scoring import pricing_time, requests_for, score_prices

    cat = catalog(tables)
    at = pricing_time(tables)
    customers = tables["customers"]["customer_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    n_c = min(len(customers), max(1, n_requests // len(cat.bundle_ids)))
    req = requests_for(rng.choice(customers, n_c, replace=False), cat.bundle_ids, at)
    ladder = build_ladder(cat.list_sum, cat.cost_sum, book_cfg, None, bundle_ids=cat.bundle_ids)
    bidx = np.tile(np.arange(len(cat.bundle_ids)), n_c)
    prices = ladder.prices[bidx]
    with rec.stage("ladder scoring: naive (features per rung)", requests=len(req), rungs=prices.shape[1]):
        naive = np.full(prices.shape, np.nan)
        for j in range(prices.shape[1]):
            ok = np.isfinite(prices[:, j])
            ctx = context_features(builder, tables, req)  # what a per-price loop would redo
            X = assemble(ctx, price_features(ctx, np.where(ok, prices[:, j], ctx["list_sum"])), builder)
            naive[:, j] = np.where(ok, model.predict_proba(X), np.nan)
    with rec.stage("ladder scoring: vectorized (context once)", requests=len(req), rungs=prices.shape[1]) as st:
        ctx = context_features(builder, tables, req)
        fast = score_prices(model, builder, ctx, prices)
        st.extra["max_abs_diff"] = float(np.nanmax(np.abs(fast - naive)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="default", choices=["tiny", "default", "bench"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--side-by-side-requests", type=int, default=20_000,
                    help="requests scored naive vs vectorized (0: skip)")
    args = ap.parse_args()

    import pandas as pd

    from pricing.config import load_config
    from pricing.experiment import with_groups
    from pricing.feedback import compute_feedback
    from pricing.ingest import load_snapshot
    from pricing.pricebook import build_price_book, write_price_book
    from pricing.simulator import load_market, play_price_book, simulate
    from pricing.training import ensure_bundles

    config = load_config()
    rec = Recorder()
    t_start = time.perf_counter()
    data = args.work / f"pipeline-data-{args.size}"
    with rec.stage("1 simulate (market + tables + CSV + truth)"):
        if data.exists():
            shutil.rmtree(data)
        simulate(data, args.size, args.seed)
    snapshot, _ = ingest_into(data, args.work / f"pipeline-ingest-{args.size}", rec, per_table=False)
    tables = load_snapshot(snapshot)
    tables, _mined = ensure_bundles(tables, config.mining)
    train_data, result = features_and_train(tables, config, rec)
    model, builder = result.model, train_data.builder
    del train_data
    marks, say = _phase_clock()
    with rec.stage("5 price book (segment + personal prices)") as st:
        book = build_price_book(tables, model, builder, config, None, progress=say)
        st.extra.update(_split_phases(marks, time.perf_counter()))
        st.extra["personal_offers"] = len(book.customer_offers)
        book = with_groups(book, config)
        write_price_book(book, args.work / f"pipeline-prices-{args.size}")
    with rec.stage("6 feedback (play one week + report)") as st:
        market = load_market(data)
        start = pd.Timestamp(book.manifest["priced_for"]).tz_convert("UTC").tz_localize(None).ceil("D")
        realized = play_price_book(market, book, start, 7, seed=1)
        realized.pop("truth", None)
        report = compute_feedback(book, realized, tables, model, builder, config)
        st.extra["offers"] = len(realized["offers"])
        st.extra["retrain"] = bool(report.decision.fire)
    total = time.perf_counter() - t_start
    if args.side_by_side_requests:
        ladder_scoring_side_by_side(model, builder, tables, config.optimize, args.side_by_side_requests, rec)
    print(f"\nwhole pipeline (stages 1-6): {total:.1f} s\n")
    print(rec.table())
    rec.save(Path(__file__).parent / "out" / f"pipeline-{args.size}.json", size=args.size, pipeline_total_s=total)


if __name__ == "__main__":
    main()
