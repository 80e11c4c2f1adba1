"""Prefect tasks for the promotion review: thin wrappers around :mod:`pricing.promotion` and
:mod:`pricing.tracking` (the comparison, the MLflow review run, the alias moves and decision tags)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pricing import promotion as pr
from pricing.config import Config
from tasks.common import run_logger

REVIEW_ARTIFACT = "promotion-review"
DECISION_ARTIFACT = "promotion-decision"
PLOT_FILE = "promotion_review.png"


def no_retry_on_promotion_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient registry failures, never a refused alias move: it would be refused again."""
    try:
        state.result()
    except pr.PromotionError:
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return True


@task(name="resolve-review-pair", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def resolve_pair(config: Config, challenger_version: str | None, champion_version: str | None) -> tuple[str, str] | str:
    """(champion, challenger) versions, or the reason there is nothing to review (a message)."""
    from pricing import tracking

    tracking.configure(config)
    try:
        return pr.review_pair(config.model.registered_model_name, challenger_version, champion_version)
    except pr.PromotionError as exc:
        run_logger().warning("%s", exc)
        return str(exc)


@task(name="load-contender", task_run_name="load-{role}-v{version}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=3)
def load_contender(config: Config, role: str, version: str) -> pr.Contender:
    from pricing import tracking

    tracking.configure(config)
    loaded = tracking.load_model(config.model.registered_model_name, alias=None, version=version)
    run_logger().info("%s: %s version %s (MLflow run %s)", role, loaded.name, loaded.version, loaded.run_id)
    return pr.Contender(role=role, version=loaded.version, model=loaded.model, builder=loaded.builder)  # type: ignore[arg-type]


@task(name="compare-models", cache_policy=NO_CACHE)
def run_review(
    tables: dict[str, pd.DataFrame],
    champion: pr.Contender,
    challenger: pr.Contender,
    config: Config,
    truth_dir: str | None,
    auto_approve: bool,
) -> pr.PromotionReview | str:
    """The review, or why it is deferred (too few offers after the models' training data: a message)."""
    try:
        rev = pr.review(tables, champion, challenger, config, config.model.registered_model_name, truth_dir,
                        auto_approve)
    except pr.ReviewDeferred as exc:
        run_logger().warning("review deferred: %s", exc)
        return str(exc)
    d = rev.decision
    run_logger().info("review of v%s vs v%s: %s (%s)", challenger.version, champion.version, d.verdict,
                      "; ".join(d.reasons))
    return rev


@task(name="publish-review", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def publish_review(rev: pr.PromotionReview, config: Config, flow_run_id: str | None) -> dict[str, Any]:
    """The review as an MLflow run (metrics, tags, report, plot, tables) and a Prefect markdown artifact."""
    import mlflow

    from pricing import plots, tracking

    tracking.configure(config)
    with mlflow.start_run(run_name=f"promotion-review-v{rev.challenger_version}-vs-v{rev.champion_version}") as run:
        run_id = run.info.run_id
        mlflow.set_tags(
            {
                "kind": "promotion-review",
                "registered_model": rev.model_name,
                "champion_version": rev.champion_version,
                "challenger_version": rev.challenger_version,
                "verdict": rev.decision.verdict,
                "yardstick": rev.profit.yardstick,
                "prefect_flow_run_id": flow_run_id or "",
            }
        )
        mlflow.log_metrics(rev.flat_metrics())
        markdown = rev.to_markdown(review_run_id=run_id, plot=PLOT_FILE)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            labels = {"champion": f"champion v{rev.champion_version}", "challenger": f"challenger v{rev.challenger_version}"}
            plots.promotion_review_plot(
                {labels[r]: tab for r, tab in rev.calibration.items()},
                {labels.get(r, r): v for r, v in rev.profit.price_rel.items()},
                t / PLOT_FILE,
                title=f"v{rev.challenger_version} vs v{rev.champion_version}",
            )
            (t / "promotion_review.md").write_text(markdown)
            rev.metrics.to_csv(t / "holdout_metrics.csv", index=False)
            rev.profit.table.to_csv(t / "profit.csv", index=False)
            rev.profit.cross.to_csv(t / "profit_cross.csv")
            (t / "decision.json").write_text(json.dumps(
                {"verdict": rev.decision.verdict, "reasons": rev.decision.reasons, "metrics": rev.decision.metrics},
                indent=2, default=float))
            mlflow.log_artifacts(str(t))
    create_markdown_artifact(markdown, key=REVIEW_ARTIFACT,
                             description=f"v{rev.challenger_version} vs v{rev.champion_version}: {rev.decision.verdict}")
    run_logger().info("review report logged to MLflow run %s", run_id)
    return {"review_run_id": run_id, "markdown": markdown}


@task(name="apply-decision", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=3,
      retry_condition_fn=no_retry_on_promotion_error)
def apply_decision(
    config: Config,
    rev: pr.PromotionReview,
    approve: bool,
    reviewer: str,
    comment: str,
    review_run_id: str | None,
) -> dict[str, Any]:
    """Promote (move the aliases) or record a rejection; tags on the version and on the review run."""
    import mlflow

    from pricing import tracking

    tracking.configure(config)
    name = rev.model_name
    metrics = rev.flat_metrics()
    if approve:
        moved = pr.promote(name, rev.challenger_version, reviewer, comment, metrics, review_run_id,
                           expected_champion=rev.champion_version,
                           decision="approved automatically" if reviewer == pr.AUTOMATIC_REVIEWER else "approved")
        outcome = "promoted"
        text = (f"# Promoted `{name}` v{rev.challenger_version}\n\n- champion: v{moved['champion']}\n"
                f"- previous champion: v{moved['previous_champion']}\n")
    else:
        pr.record_decision(name, rev.challenger_version, "rejected", reviewer, comment, metrics, review_run_id,
                           against=rev.champion_version)
        outcome = "rejected"
        text = f"# Not promoted: `{name}` v{rev.challenger_version}\n\nchampion stays v{rev.champion_version}\n"
    text += f"- reviewer: {reviewer}\n- comment: {comment or '(none)'}\n"
    if review_run_id:
        client = mlflow.MlflowClient()
        client.set_tag(review_run_id, "decision", outcome)
        client.set_tag(review_run_id, "reviewer", reviewer)
        client.set_tag(review_run_id, "comment", comment or "")
    create_markdown_artifact(text, key=DECISION_ARTIFACT, description=outcome)
    run_logger().info("%s: %s v%s (reviewer %s)", outcome, name, rev.challenger_version, reviewer)
    return {"outcome": outcome, "aliases": tracking.alias_map(name)}


@task(name="record-no-decision", cache_policy=NO_CACHE)
def record_no_decision(config: Config, rev: pr.PromotionReview, why: str, review_run_id: str | None) -> None:
    """A review that ended without a decision (timed out, or left to the command line)."""
    from pricing import tracking

    tracking.configure(config)
    pr.record_decision(rev.model_name, rev.challenger_version, why, "nobody", "", rev.flat_metrics(), review_run_id,
                       against=rev.champion_version)
    create_markdown_artifact(f"# No decision on v{rev.challenger_version}\n\n{why}; no alias changed.",
                             key=DECISION_ARTIFACT, description=why)
