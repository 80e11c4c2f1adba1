"""Benchmark: features and model training at a market size (wall, CPU, peak memory per stage).

    .venv/bin/python benchmarks/bench_train.py --size bench   # the snapshot bench_ingest.py wrote, else simulate
    .venv/bin/python benchmarks/bench_train.py --snapshot work/bench/ingest-bench/snapshots/<fp>

Stages: load typed tables -> fit_feature_builder -> offer_training_frame (point-in-time features for
every offer) -> train_model (monotone LightGBM, early stopping, calibration, metrics), exactly as
``flows/train.py`` runs them. Results go to benchmarks/out/train-<size>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import Recorder


def features_and_train(tables: dict, config, rec: Recorder):
    """Point-in-time features for every offer, then the model, as flows/train.py runs them (measured)."""
    from pricing.features import PRICE_FEATURES
    from pricing.model import train_model
    from pricing.training import build_training_data

    with rec.stage("features (builder + every offer)") as st:
        data = build_training_data(tables, config)
        st.extra["shape"] = f"{data.X.shape[0]}x{data.X.shape[1]}"
    with rec.stage("train (LightGBM + calibration + metrics)") as st:
        result = train_model(data.X, data.y, data.times, PRICE_FEATURES, config.model, data.builder.categorical)
        m = result.metrics
        st.extra.update({k: round(float(m[k]), 4) for k in ("test_auc", "test_log_loss", "test_ece", "best_iteration")})
    return data, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="bench", choices=["tiny", "default", "bench"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--snapshot", type=Path, help="an ingest snapshot folder (typed Parquet tables)")
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--override", default=None, help='config overrides as JSON, e.g. \'{"model": {"learning_rate": 0.1}}\'')
    args = ap.parse_args()

    import json

    from pricing.config import load_config
    from pricing.ingest import latest_snapshot, load_snapshot

    config = load_config(overrides=json.loads(args.override) if args.override else None)
    rec = Recorder()
    snapshot = args.snapshot or latest_snapshot(args.work / f"ingest-{args.size}")
    with rec.stage("load typed tables") as st:
        if snapshot:
            print(f"using snapshot {snapshot} (from benchmarks/bench_ingest.py)")
            tables = load_snapshot(snapshot)
        else:
            from pricing.simulator import generate_market, generate_tables

            market = generate_market(args.size, seed=args.seed)
            tables = generate_tables(market)
            del market
        st.extra["offers"] = len(tables["offers"])
        st.extra["events"] = len(tables.get("events", ()))
    features_and_train(tables, config, rec)
    print()
    print(rec.table())
    rec.save(Path(__file__).parent / "out" / f"train-{args.size}.json", size=args.size, override=args.override)


if __name__ == "__main__":
    main()
