"""Promotion review, approval pause, rollback and served deployments, under Prefect's test harness.

One registered model with two versions on the tiny market: v1 a deliberately weak model (one tree,
learning rate 0.01), v2 a normal one (the pipeline flow). Each test sets the aliases it starts from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flows.pipeline import pipeline_flow
from flows.promote import UI_REVIEWER, promote_flow
from flows.train import train_flow
from pricing import promotion, tracking
from pricing.config import load_config
from pricing.promotion import AUTOMATIC_REVIEWER, PromotionError
from pricing.tracking import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, alias_map
from tests.conftest import REPO, flow_config

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

NAME = "promote-tests"
#: quick resumes: the paused review checks for the decision every second
FAST_APPROVAL = "promotion:\n  approval_poll_s: 1\n  min_holdout_offers: 300\n"
WAIT_S = 180


@pytest.fixture(scope="module")
def registry(tiny_market, tmp_path_factory, prefect_harness) -> dict[str, Any]:
    """v1 weak (first version: champion), v2 normal (challenger); configs share work dir and registry."""
    tmp = tmp_path_factory.mktemp("promote")
    good = Path(flow_config(tmp, NAME))
    good.write_text(good.read_text() + FAST_APPROVAL)
    weak = tmp / "weak.yaml"
    weak.write_text(good.read_text().replace("n_estimators: 200", "n_estimators: 1\n  learning_rate: 0.01"))
    v1 = train_flow(data_dir=str(tiny_market), config_path=str(weak))["version"]
    run = pipeline_flow(data_dir=str(tiny_market), out_dir=str(tmp / "book"), config_path=str(good))
    v2 = run["train"]["version"]
    # both models were refitted on every offer: the reviews need newer offers, so two weeks are played
    # forward with the book and ingested (history + period): its latest snapshot holds the holdout
    later = newer_data(tiny_market, tmp / "book", run["ingest"]["snapshot_dir"], tmp / "later", str(good))
    tracking.configure(load_config(good))
    return {"config": str(good), "weak": v1, "good": v2, "tmp": tmp, "data": tiny_market, "later": later,
            "first_snapshot": run["ingest"]["snapshot_dir"]}


def newer_data(market_dir: Path, book_dir: Path, snapshot_dir: str, out: Path, config_path: str) -> Path:
    """The snapshot plus 14 days played forward with the book (simulator), ingested as the latest snapshot."""
    from flows.ingest import ingest_flow
    from pricing.feedback import write_period_data
    from pricing.ingest import load_snapshot
    from pricing.pricebook import read_price_book
    from pricing.simulator import load_market, play_price_book, save_market

    market = load_market(market_dir)
    realized = play_price_book(market, read_price_book(book_dir), market.end_time, 14, seed=3)
    write_period_data(load_snapshot(snapshot_dir), realized, out)
    save_market(market, out / "_truth")
    ingest_flow(data_dir=str(out), config_path=config_path)
    return out


def _set(champion: str, challenger: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(NAME, CHAMPION, champion)
    client.set_registered_model_alias(NAME, CHALLENGER, challenger)
    if PREVIOUS_CHAMPION in alias_map(NAME):
        client.delete_registered_model_alias(NAME, PREVIOUS_CHAMPION)


def _paused_promote_run(started_after: float, timeout: float = WAIT_S) -> Any:
    """The paused `promote` flow run created after ``started_after`` (epoch seconds)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + timeout
    flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs(flow_run_filter=flt)
                    if r.start_time and r.start_time.timestamp() >= started_after - 1]
            if runs:
                return runs[0]
            time.sleep(1)
    raise AssertionError(f"no paused promote run within {timeout} s")


def _in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = promote_flow(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, box


def _finish(th: threading.Thread, box: dict[str, Any]) -> dict[str, Any]:
    th.join(WAIT_S)
    assert not th.is_alive(), "the promote flow did not finish after it was resumed"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_worse_challenger_is_rejected_even_with_auto_approval(registry):
    _set(champion=registry["good"], challenger=registry["weak"])
    result = promote_flow(config_path=registry["config"], auto_approve=True)
    assert result["outcome"] == "rejected" and result["verdict"] == "reject"
    assert any("log loss is worse" in r for r in result["reasons"]), result["reasons"]
    assert alias_map(NAME)[CHAMPION] == registry["good"], "a worse challenger never moves the champion"
    assert PREVIOUS_CHAMPION not in alias_map(NAME)
    tags = promotion.version_tags(NAME, registry["weak"])
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.reviewer"] == AUTOMATIC_REVIEWER
    assert tags["promotion.review_run_id"] == result["review_run_id"]
    import mlflow

    files = {f.path for f in mlflow.MlflowClient().list_artifacts(result["review_run_id"])}
    assert {"promotion_review.md", "promotion_review.png", "holdout_metrics.csv", "profit.csv"} <= files
    report = Path(mlflow.artifacts.download_artifacts(run_id=result["review_run_id"],
                                                      artifact_path="promotion_review.md")).read_text()
    assert "simulator's **true** acceptance" in report and "| log_loss |" in report


def test_worse_challenger_is_rejected_without_the_truth_too(registry):
    """Real data has no simulator truth: the model-based yardstick must not flatter the weak model."""
    from pricing.ingest import latest_snapshot, load_snapshot

    config = load_config(registry["config"])
    tables = load_snapshot(latest_snapshot(Path(config.paths.work_dir) / "ingest"))

    def contender(role: str, version: str) -> promotion.Contender:
        m = tracking.load_model(NAME, alias=None, version=version)
        return promotion.Contender(role, m.version, m.model, m.builder)

    good, weak = contender("champion", registry["good"]), contender("challenger", registry["weak"])
    rev = promotion.review(tables, good, weak, config, NAME, truth_dir=None, auto_approve=True)
    assert rev.decision.verdict == "reject"
    assert rev.profit.yardstick == "models" and rev.profit.diff_mean < 0, "weak model's prices look worse"
    flipped = promotion.review(tables, contender("champion", registry["weak"]),
                               contender("challenger", registry["good"]), config, NAME, auto_approve=False)
    assert flipped.decision.verdict == "needs_approval" and flipped.profit.diff_mean > 0


def test_better_challenger_waits_for_approval_and_a_no_changes_nothing(registry):
    _set(champion=registry["weak"], challenger=registry["good"])
    t0 = time.time()
    th, box = _in_thread(config_path=registry["config"], auto_approve=False)
    run = _paused_promote_run(t0)
    assert alias_map(NAME)[CHAMPION] == registry["weak"], "nothing moves while the review waits"
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run.id, run_input={"approve": False, "comment": "not before the sale"})
    result = _finish(th, box)
    assert result["outcome"] == "rejected" and result["verdict"] == "needs_approval"
    assert alias_map(NAME)[CHAMPION] == registry["weak"]
    tags = promotion.version_tags(NAME, registry["good"])
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.reviewer"] == UI_REVIEWER
    assert tags["promotion.comment"] == "not before the sale"


def test_approval_promotes_and_rollback_restores_the_previous_champion(registry):
    from typer.testing import CliRunner

    from flows.cli import app

    _set(champion=registry["weak"], challenger=registry["good"])
    t0 = time.time()
    th, box = _in_thread(config_path=registry["config"], auto_approve=False)
    run = _paused_promote_run(t0)
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run.id, run_input={"approve": True, "comment": "clear gain", "reviewer": "alice"})
    result = _finish(th, box)
    assert result["outcome"] == "promoted"
    aliases = alias_map(NAME)
    assert aliases[CHAMPION] == registry["good"] and aliases[PREVIOUS_CHAMPION] == registry["weak"]
    tags = promotion.version_tags(NAME, registry["good"])
    assert (tags["promotion.decision"], tags["promotion.reviewer"], tags["promotion.comment"]) == (
        "approved", "alice", "clear gain")
    assert tags["promotion.previous_champion"] == registry["weak"] and "log_loss_diff" in tags["promotion.metrics"]

    res = CliRunner().invoke(app, ["rollback", "--config", registry["config"], "--comment", "conversion fell"])
    assert res.exit_code == 0, res.output
    aliases = alias_map(NAME)
    assert aliases[CHAMPION] == registry["weak"] and aliases[PREVIOUS_CHAMPION] == registry["good"]
    assert promotion.version_tags(NAME, registry["weak"])["rollback.comment"] == "conversion fell"
    assert promotion.version_tags(NAME, registry["good"])["promotion.decision"] == "rolled back"


def test_clear_gain_is_approved_automatically_then_nothing_is_left_to_review(registry):
    _set(champion=registry["weak"], challenger=registry["good"])
    result = promote_flow(config_path=registry["config"], auto_approve=True)
    assert result["verdict"] == "auto_approve" and result["outcome"] == "promoted"
    assert alias_map(NAME)[CHAMPION] == registry["good"]
    assert promotion.version_tags(NAME, registry["good"])["promotion.reviewer"] == AUTOMATIC_REVIEWER
    before = alias_map(NAME)
    again = promote_flow(config_path=registry["config"])
    assert again["outcome"] == "nothing_to_review" and "nothing to review" in again["message"]
    assert alias_map(NAME) == before


def test_no_answer_within_the_timeout_changes_nothing(registry):
    _set(champion=registry["weak"], challenger=registry["good"])
    result = promote_flow(config_path=registry["config"], auto_approve=False, approval_timeout_s=2)
    assert result["outcome"] == "no_decision"
    assert alias_map(NAME)[CHAMPION] == registry["weak"]
    assert promotion.version_tags(NAME, registry["good"])["promotion.decision"].startswith("no decision")


def test_cli_promote_without_a_terminal_leaves_the_decision_open(registry):
    from typer.testing import CliRunner

    from flows.cli import app

    _set(champion=registry["weak"], challenger=registry["good"])
    res = CliRunner().invoke(app, ["promote", "--config", registry["config"], "--no-auto-approve", "--no-wait"])
    assert res.exit_code == 0, res.output
    assert "needs_approval" in res.output and "not promoted" in res.output
    assert alias_map(NAME)[CHAMPION] == registry["weak"]

def test_review_on_a_snapshot_the_models_were_fitted_on_is_deferred(registry):
    """Both versions were refitted on every offer of the first snapshot: no offer there is new to both."""
    _set(champion=registry["weak"], challenger=registry["good"])
    before, tags = alias_map(NAME), promotion.version_tags(NAME, registry["good"])
    result = promote_flow(config_path=registry["config"], snapshot_dir=registry["first_snapshot"], auto_approve=True)
    assert result["outcome"] == "deferred"
    assert "offers of the snapshot come after the models' training data" in result["message"]
    assert alias_map(NAME) == before, "a deferred review changes no alias"
    assert promotion.version_tags(NAME, registry["good"]) == tags, "and records no decision"


def test_rollback_without_a_previous_champion_is_a_clear_error(registry):
    _set(champion=registry["weak"], challenger=registry["good"])
    with pytest.raises(PromotionError, match="no 'previous-champion'"):
        promotion.rollback(NAME, "tester")
    assert alias_map(NAME)[CHAMPION] == registry["weak"]


def test_served_deployments_run_by_run_deployment(registry, tmp_path):
    """`bundle-pricing serve` against the harness API; trigger the promote deployment by name."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    empty = flow_config(tmp_path, "promote-served-empty")  # no registered model: a quick "nothing to review"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--config", empty, "--data", str(registry["data"]),
         "--out", str(tmp_path / "book")],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wanted = {"pipeline", "train", "price", "promote", "feedback"}
        deadline = time.monotonic() + 120
        names: set[str] = set()
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline and not wanted <= names:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                names = {f.name for f in client.read_flows()
                         if any(d.flow_id == f.id for d in client.read_deployments())}
                time.sleep(2)
            deployments = {d.name: d for d in client.read_deployments()}
        assert wanted <= names, f"served: {names}\n{(tmp_path / 'serve.log').read_text()}"
        assert "bundle-pricing" in deployments
        with get_client(sync_client=True) as client:
            train = client.read_deployment_by_name("train/bundle-pricing")
            price = client.read_deployment_by_name("price/bundle-pricing")
            pipeline = client.read_deployment_by_name("pipeline/bundle-pricing")
            feedback = client.read_deployment_by_name("feedback/bundle-pricing")
        cfg = load_config(empty).serve
        assert [s.schedule.cron for s in train.schedules] == [cfg.train_cron]
        assert [s.schedule.cron for s in price.schedules] == [cfg.price_cron]
        assert [s.schedule.cron for s in feedback.schedules] == [cfg.feedback_cron]
        assert "realized_dir" in feedback.parameter_openapi_schema["properties"]
        assert not pipeline.schedules, "the pipeline runs on demand"
        assert pipeline.parameters["data_dir"] == str(Path(registry["data"]).resolve())
        assert "data_dir" in pipeline.parameter_openapi_schema["properties"], "parameters editable in the UI"
        fr = run_deployment("promote/bundle-pricing", parameters={"config_path": empty}, timeout=120,
                            as_subflow=False)
        assert fr.state is not None and fr.state.is_completed(), (fr.state, (tmp_path / "serve.log").read_text())
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fr.id])))
        assert any(a.key == "promotion-review" and "Nothing to review" in str(a.data) for a in arts), arts
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
