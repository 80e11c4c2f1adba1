"""Promotion review flow: should the `challenger` become the `champion`?

    versions (aliases `champion`, `challenger`, or given) -> validated snapshot (latest offers = holdout)
    -> both models from the registry -> compare (log loss, AUC, ECE; expected profit of each model's
    prices under the simulator truth or a model-based yardstick) -> review report (MLflow run with the
    plot + Prefect markdown artifact) -> decision:

    * worse challenger: rejected automatically (tags on the version; no alias moves);
    * clearly better and auto-approval on (config ``promotion.auto_approve`` or the ``auto_approve``
      parameter, e.g. for scheduled runs): promoted;
    * otherwise the run PAUSES and waits for a human in the Prefect UI: a form (:class:`ApprovalInput`:
      approve yes/no, comment, reviewer) with the review summary. Approve moves `champion` to the
      challenger and gives the old champion `previous-champion`; reject records the decision. No answer
      within ``promotion.approval_timeout_s``: nothing changes.

Nothing to review (no champion or challenger, or both the same version) ends the run with a clear
message and no alias change. The holdout holds only offers after both models' training data; with fewer
than ``promotion.min_holdout_offers`` of them (a challenger just trained on the latest data) the review
is **deferred**: outcome ``deferred``, no alias change; run it again once a newer period is ingested. ``bundle-pricing rollback`` undoes a promotion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from pricing.config import load_config
from pricing.ingest import latest_snapshot
from pricing.promotion import AUTO_APPROVE, AUTOMATIC_REVIEWER, REJECT
from pricing.training import truth_dir_of
from tasks import promote as t
from tasks import train as tt

#: reviewer recorded when the person approving in the UI leaves the field empty
UI_REVIEWER = "Prefect UI"


class ApprovalInput(RunInput):
    """The reviewer's answer, entered in the Prefect UI when the paused review run is resumed."""

    approve: bool = False
    comment: str = ""
    reviewer: str = ""


def _summary(rev: Any, review_run_id: str | None) -> str:
    """Short review summary shown above the approval form."""
    m = rev.metrics.set_index("metric")
    lines = [
        f"**Promote `{rev.model_name}` v{rev.challenger_version} over v{rev.champion_version}?**",
        "",
        *[f"- {r}" for r in rev.decision.reasons],
        "",
        "| | champion | challenger |",
        "|---|---:|---:|",
    ]
    for k in ("log_loss", "auc", "ece"):
        lines.append(f"| {k} | {m.loc[k, 'champion']:.4f} | {m.loc[k, 'challenger']:.4f} |")
    prof = rev.profit.profit_per_offer
    lines.append(f"| expected profit / offer ({rev.profit.yardstick}) | {prof['champion']:.4f} | {prof['challenger']:.4f} |")
    lines += ["", f"Full report: artifact `{t.REVIEW_ARTIFACT}`; MLflow run `{review_run_id}`."]
    return "\n".join(lines)


@flow(name="promote", log_prints=True)
def promote_flow(
    config_path: str | None = None,
    snapshot_dir: str | None = None,
    data_dir: str | None = None,
    ingest_out: str | None = None,
    challenger_version: str | None = None,
    champion_version: str | None = None,
    auto_approve: bool | None = None,
    wait_for_approval: bool = True,
    approval_timeout_s: int | None = None,
) -> dict[str, Any]:
    """Review the challenger against the champion and promote it when approved.

    Args:
        config_path: YAML config overriding the defaults (``promotion:`` holds the rules).
        snapshot_dir / data_dir: the validated snapshot whose latest offers are the holdout, or raw
            tables to ingest (default: the latest snapshot under ``ingest_out``).
        challenger_version / champion_version: versions to compare (default: the aliases).
        auto_approve: approve a clear gain without a human (default: ``promotion.auto_approve``).
        wait_for_approval: pause for a decision in the Prefect UI; False returns ``needs_approval``
            instead (the command line then asks in the terminal).
        approval_timeout_s: how long to wait (default: ``promotion.approval_timeout_s``).

    Returns ``{"outcome": promoted | rejected | needs_approval | no_decision | nothing_to_review | deferred, ...}``.
    """
    from flows.ingest import default_out_dir, ingest_flow

    config = load_config(config_path)
    cfg = config.promotion
    name = config.model.registered_model_name
    pair = t.resolve_pair(config, challenger_version, champion_version)
    if isinstance(pair, str):
        print(pair)
        create_markdown_artifact(f"# Nothing to review\n\n{pair}\n\nNo alias changed.", key=t.REVIEW_ARTIFACT,
                                 description="nothing to review")
        return {"outcome": "nothing_to_review", "message": pair, "model_name": name}
    champ, chal = pair

    if snapshot_dir is None:
        if data_dir is not None:
            snapshot_dir = ingest_flow(data_dir=data_dir, out_dir=ingest_out, config_path=config_path).snapshot_dir
        else:
            snap = latest_snapshot(ingest_out or default_out_dir(config))
            if snap is None:
                raise ValueError(
                    "no validated snapshot to take the holdout from: give data_dir or snapshot_dir, or run the "
                    "ingest flow first"
                )
            snapshot_dir = str(snap)
    meta = json.loads((Path(snapshot_dir) / "summary.json").read_text())
    truth = truth_dir_of(data_dir or meta.get("data_dir"))
    tables = tt.load_tables(snapshot_dir)
    tables, _mined = tt.ensure_bundles(tables, config)
    champion = t.load_contender(config, "champion", champ)
    challenger = t.load_contender(config, "challenger", chal)
    rev = t.run_review(tables, champion, challenger, config, str(truth) if truth else None,
                       cfg.auto_approve if auto_approve is None else auto_approve)
    if isinstance(rev, str):  # too few offers after the models' training data: nothing is decided yet
        print(f"review deferred: {rev}")
        create_markdown_artifact(f"# Review deferred\n\n{rev}\n\nNo alias changed.", key=t.REVIEW_ARTIFACT,
                                 description="review deferred")
        return {"outcome": "deferred", "message": rev, "model_name": name, "champion_version": champ,
                "challenger_version": chal, "snapshot_dir": snapshot_dir}
    published = t.publish_review(rev, config, flow_run.get_id())
    run_id = published["review_run_id"]
    result: dict[str, Any] = {
        "model_name": name,
        "champion_version": champ,
        "challenger_version": chal,
        "verdict": rev.decision.verdict,
        "reasons": rev.decision.reasons,
        "metrics": rev.flat_metrics(),
        "review_run_id": run_id,
        "snapshot_dir": snapshot_dir,
    }
    if rev.decision.verdict == REJECT:
        done = t.apply_decision(config, rev, False, AUTOMATIC_REVIEWER, "; ".join(rev.decision.reasons), run_id)
        print(f"challenger v{chal} rejected: {'; '.join(rev.decision.reasons)}")
        return {**result, **done}
    if rev.decision.verdict == AUTO_APPROVE:
        done = t.apply_decision(config, rev, True, AUTOMATIC_REVIEWER, "; ".join(rev.decision.reasons), run_id)
        print(f"challenger v{chal} approved automatically and promoted")
        return {**result, **done}
    if not wait_for_approval:
        print(f"challenger v{chal} is not worse: a human decides (no alias changed yet)")
        return {**result, "outcome": "needs_approval"}

    timeout = approval_timeout_s or cfg.approval_timeout_s
    print(f"waiting up to {timeout} s for a decision: resume this flow run in the Prefect UI (approve or reject)")
    form = ApprovalInput.with_initial_data(description=_summary(rev, run_id), approve=False, comment="", reviewer="")
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=cfg.approval_poll_s,
                                key="promotion-approval")
    except FlowPauseTimeout:
        why = f"no decision within {timeout} s"
        t.record_no_decision(config, rev, why, run_id)
        print(f"{why}: no alias changed")
        return {**result, "outcome": "no_decision"}
    reviewer = answer.reviewer.strip() or UI_REVIEWER
    done = t.apply_decision(config, rev, bool(answer.approve), reviewer, answer.comment, run_id)
    return {**result, **done, "reviewer": reviewer, "comment": answer.comment}
