"""One typed configuration for the whole system (pydantic), loaded from YAML.

The shipped defaults live in ``pricing/defaults/config.yaml`` (documented there, and equal to the
defaults below; a test keeps them in step). A user file given with ``--config`` overrides any subset
of keys; unknown keys are an error so a typo never goes unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CONFIG_PATH = Path(__file__).parent / "defaults" / "config.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    work_dir: Path = Field(Path("work"), description="working data folder (runs, MLflow store, docs)")


class IngestConfig(_Section):
    max_row_failure_share: float = Field(
        0.01, ge=0, le=1, description="per table: share of rows that may be quarantined before the run stops"
    )
    max_reference_failure_share: float = Field(
        0.01, ge=0, le=1, description="per table: share of rows with unknown references tolerated (quarantined)"
    )
    future_tolerance_minutes: float = Field(
        5.0, ge=0, description="timestamps later than now + this are 'in the future'"
    )
    examples_in_messages: int = Field(5, ge=1, description="offending rows shown in an error message")
    build_data_docs: bool = Field(True, description="build Great Expectations Data Docs (HTML)")


class SimulatorConfig(_Section):
    size: Literal["tiny", "default", "bench"] = "default"
    seed: int = 7


class SeasonWindow(_Section):
    name: str
    start: str = Field(..., pattern=r"^\d{2}-\d{2}$", description="MM-DD, inclusive")
    end: str = Field(..., pattern=r"^\d{2}-\d{2}$", description="MM-DD, inclusive (may wrap the year end)")


class FeaturesConfig(_Section):
    windows_days: tuple[int, ...] = Field((7, 30, 90), description="look-back windows of customer activity")
    n_search_tokens: int = Field(32, ge=0, description="top-k search tokens learned from the training queries")
    demand_window_days: int = Field(7, ge=1, description="recent demand in the bundle's categories")
    competitor_max_age_days: int = Field(14, ge=0, description="use a competitor price at most this old")
    calendar: tuple[SeasonWindow, ...] = Field(
        (
            SeasonWindow(name="winter_holidays", start="12-01", end="12-31"),
            SeasonWindow(name="black_friday", start="11-20", end="11-30"),
            SeasonWindow(name="summer_sale", start="07-01", end="07-31"),
            SeasonWindow(name="valentines", start="02-01", end="02-14"),
        ),
        description="named seasons; each becomes a 0/1 context feature",
    )


class MiningConfig(_Section):
    min_support: float = Field(0.002, ge=0, le=1)
    min_lift: float = Field(1.5, ge=0)
    min_confidence: float = Field(0.0, ge=0, le=1)
    max_items: int = Field(3, ge=2, le=3)
    max_candidates: int = Field(200, ge=1)
    max_per_product: int | None = Field(5, ge=1)
    allowed_category_mixes: tuple[tuple[str, ...], ...] | None = None


class ModelConfig(_Section):
    registered_model_name: str = "bundle-acceptance"
    valid_share: float = Field(0.15, gt=0, lt=0.5, description="latest-but-one share of offers (by time) for early stopping and calibration")
    test_share: float = Field(0.15, gt=0, lt=0.5, description="latest share of offers (by time) held out for metrics")
    learning_rate: float = Field(0.1, gt=0, description="0.1: half the trees of 0.05 at the same test quality (docs/benchmarks.md)")
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    n_estimators: int = Field(1000, ge=1, description="upper bound; early stopping picks the number")
    early_stopping_rounds: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    price_response: Literal["structured", "trees"] = Field(
        "structured",
        description="structured: log-odds = level(x) - sensitivity(x) * log(price / list), two LightGBM boosters "
        "(smooth, strictly decreasing in price by construction); trees: one monotone-constrained LightGBM over the "
        "price features (docs/pricing.md compares them)",
    )
    structured_rounds: int = Field(
        1, ge=1, le=10, description="structured: level/sensitivity alternations (each refits both boosters); default "
        "market: 1, 2 and 3 rounds price within 0.001 of each other, each round costs two more booster fits",
    )
    monotone_constraints_method: Literal["basic", "intermediate", "advanced"] = "advanced"
    calibration: Literal["auto", "isotonic", "platt", "none"] = Field(
        "auto", description="auto: the model's calibrator (isotonic for trees, Platt for structured) when it lowers the "
        "validation calibration error by a clear margin, cross-fitted",
    )
    calibration_bins: int = Field(15, ge=2)
    min_rows: int = Field(500, ge=10, description="fewer offers than this: training stops with a message")
    min_positives: int = Field(20, ge=1, description="fewer accepted (or declined) offers than this: stop")
    n_threads: int = Field(2, ge=1)
    refit_on_all: bool = Field(
        True,
        description="after early stopping picked the number of trees on the time split, refit that many trees on "
        "every offer (the latest ones included); metrics stay those of the split model",
    )
    seed: int = 7


class TrackingConfig(_Section):
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else sqlite:///<work_dir>/mlflow/mlflow.db",
    )
    experiment: str = "bundle-pricing"


class LadderConfig(_Section):
    """Candidate prices of a bundle: discount steps off its list price (sum of the items' list prices)."""

    max_discount: float = Field(0.5, ge=0, lt=1, description="deepest discount on the ladder (before rounding)")
    step: float = Field(0.025, gt=0, le=1, description="discount step between rungs (share of the list price)")
    price_ending: float | None = Field(
        0.99, ge=0, lt=1, description="round every rung DOWN to a price ending in this (0.99: x.99); None: to the cent"
    )


class RulesConfig(_Section):
    """Business rules every published price obeys (checked again on every solution)."""

    min_margin: float = Field(0.05, ge=0, description="price >= cost_sum * (1 + min_margin)")
    min_bundle_discount: float = Field(0.0, ge=0, lt=1, description="price <= list_sum * (1 - min_bundle_discount)")
    max_change: float | None = Field(
        0.2, gt=0, description="|price - current| <= max_change * current when a current price exists; None: no limit"
    )
    fairness_gap: float | None = Field(
        0.15, ge=0, description="per bundle: max - min segment price <= fairness_gap * list_sum; None: no limit"
    )
    customer_band: float = Field(
        0.05, ge=0, description="personal price within +- customer_band * list_sum of the segment price"
    )
    discount_budget: float | None = Field(
        None, ge=0, description="expected total discount given (list_sum - price per accepted bundle); None: no limit"
    )
    respect_inventory: bool = Field(True, description="expected units sold per product <= its inventory")
    usage_acceptance: Literal["mean", "high"] = Field(
        "mean", description="acceptance used for expected inventory and budget usage (high: conservative)"
    )


class OptimizeConfig(_Section):
    """Price optimization: segment price book (MILP, CVXPY + HiGHS) and personal prices (Lagrangian)."""

    ladder: LadderConfig = LadderConfig()
    rules: RulesConfig = RulesConfig()
    n_segments: int = Field(12, ge=1, description="customer segments priced by the MILP")
    top_n_bundles: int = Field(10, ge=1, description="personal offers per customer (best expected profit)")
    risk_aversion: float = Field(
        0.25, ge=0, description="objective acceptance = mean - risk_aversion * (mean - low), clipped to [0, 1]"
    )
    offers_per_customer: float = Field(
        1.0, gt=0, description="expected offers of each bundle per customer in the period (when not given)"
    )
    time_limit_s: float = Field(
        60.0, gt=0, description="segment price book time limit (heuristic + HiGHS); the best feasible book is kept"
    )
    warm_start: bool = Field(True, description="start HiGHS from the Lagrangian heuristic's price book (MIP start)")
    mip_rel_gap: float = Field(1e-3, ge=0, description="MILP stops at this relative optimality gap")
    threads: int = Field(2, ge=1)
    highs_options: dict[str, str | int | float | bool] = Field(
        {"presolve": "off"},
        description="extra HiGHS options; presolve off: HiGHS presolve is slow on the staircase model and gains nothing",
    )
    lagrange_max_iter: int = Field(150, ge=1, description="dual (multiplier) iterations on the customer sample")
    lagrange_full_passes: int = Field(6, ge=1, description="dual iterations on all customers after the sample")
    lagrange_sample: int = Field(200_000, ge=1000, description="customers sampled for the dual iterations")
    lagrange_tol: float = Field(1e-3, gt=0, description="stop when shared rules hold within this relative slack")
    chunk_customers: int = Field(250_000, ge=1000, description="customers per vectorized block (memory bound)")
    seed: int = 7


class PriceBookConfig(_Section):
    """How the price book is scored from the model (sampling, uncertainty, personalization, explanations)."""

    reference_bundles: int = Field(5, ge=1, description="bundles used to measure each customer's price response")
    segment_on: Literal["price_profile", "response"] = Field(
        "price_profile",
        description="k-means of the segments on each customer's profit-maximizing prices of the reference bundles "
        "(price_profile), or on the standardized level and slope of their predicted demand (response)",
    )
    segment_sample_customers: int = Field(
        100, ge=1, description="customers sampled per segment to estimate its acceptance along the ladder"
    )
    exposure_weighted_segments: bool = Field(
        False,
        description="a segment's acceptance of a bundle is averaged over its customers weighted by how likely each "
        "is to be shown the bundle (category interest x activity), and the log's offers of the bundle are shared "
        "among the segments the same way (measured on the default market: no gain, 0.934 vs 0.935 of the clairvoyant "
        "optimum; docs/pricing.md); false: plain averages and one offer rate per bundle",
    )
    context_chunk_rows: int = Field(
        1_000_000, ge=1, description="personal candidates' feature contexts are built and scored this many requests at a "
        "time (a 200k-customer shop has 3M candidate requests: one frame of them all peaked at 10 GiB)"
    )
    segment_score_budget: int = Field(
        1_000_000, ge=1, description="at most this many (customer, bundle) requests scored along the ladder for the "
        "segments: fewer sampled customers per segment when segments x bundles x sample exceeds it (never fewer "
        "than 10); the sampling error widens the acceptance band"
    )
    interval_z: float = Field(1.645, gt=0, description="width of the acceptance band (z of a normal; 1.645: 90%)")
    holdout_offers: int = Field(20_000, ge=100, description="latest offers used to measure the model's error band")
    period_days: int = Field(7, ge=1, description="planning period of a price book: offers per customer are measured over it")
    traffic_window_days: int = Field(
        28, ge=1, description="days of the offers log that estimate each bundle's offers per period (scaled to period_days)"
    )
    personalize: bool = Field(True, description="personal prices for each customer's top bundles")
    candidates_per_customer: int = Field(
        15, ge=1, description="candidate bundles scored per customer (most profit at stake: exposure x segment profit)"
    )
    personal_pairs_budget: int = Field(
        4_000_000,
        ge=0,
        description="personal prices for up to this many (customer, bundle) pairs: when customers x bundles fits, "
        "every bundle is a candidate and gets a personal price; beyond it (large markets) each customer gets "
        "optimize.top_n_bundles of pricebook.candidates_per_customer (budget // customers when that is more)",
    )
    pair_offers: Literal["exposure", "mean"] = Field(
        "exposure",
        description="expected offers of each personal (customer, bundle) pair in the period, which the inventory and "
        "budget rules add up: 'exposure' shares each bundle's offers (from the log) among the customers by their "
        "likely exposure to it (category interest x activity); 'mean' gives every pair the mean offers per bundle",
    )
    explain_top_k: int = Field(3, ge=1, description="drivers listed per price (LightGBM contributions)")
    seed: int = 7


class ExperimentConfig(_Section):
    """Randomized groups of every published price book (pricing/experiment.py).

    Each customer falls in one group by a hash of (seed, customer_id), so the assignment is stable
    across runs: ``control`` sees the control prices (to measure the lift of the book), ``exploration``
    a random allowed ladder price (so price response stays learnable), ``treatment`` the book's prices.
    """

    control_share: float = Field(0.1, ge=0, lt=1, description="share of customers in the control group")
    exploration_share: float = Field(
        0.05, ge=0, lt=1, description="share of customers shown a random allowed ladder price"
    )
    control_policy: Literal["list", "previous"] = Field(
        "list", description="control price: the list price, or the previous price book's price of the bundle"
    )
    seed: int = Field(7, description="hash seed of the group assignment (change it to re-draw the groups)")

    @model_validator(mode="after")
    def _shares_leave_a_treatment_group(self) -> ExperimentConfig:
        if self.control_share + self.exploration_share >= 1:
            raise ValueError(
                f"experiment.control_share ({self.control_share}) + exploration_share "
                f"({self.exploration_share}) must be below 1: no customer would see the price book"
            )
        return self


class FeedbackConfig(_Section):
    """Feedback on a played price book and the retraining trigger (pricing/feedback.py, docs/feedback.md).

    A check fires only when the deviation is both material (beyond its threshold) and clear of sampling
    noise (beyond ``significance_z`` standard errors), so a stable market stays quiet.
    """

    min_offers: int = Field(500, ge=1, description="fewer realized offers: the statistical checks give no verdict")
    min_offers_per_cell: int = Field(
        100, ge=1, description="segments / bundles / groups with fewer offers are reported but not judged"
    )
    significance_z: float = Field(
        3.0, gt=0, description="a deviation must also lie this many standard errors from zero to fire"
    )
    max_calibration_gap: float = Field(
        0.03, gt=0, description="|realized - predicted conversion| over all offers of the period that fires"
    )
    max_segment_calibration_gap: float = Field(
        0.10, gt=0, description="|realized - predicted conversion| in one segment that fires: above the book's own "
        "selection bias (prices chosen where the model is optimistic: up to 0.07 on stable default markets)"
    )
    psi_bins: int = Field(10, ge=2, description="reference-quantile bins of the population stability index")
    max_psi: float = Field(0.25, gt=0, description="a feature has drifted when its PSI exceeds this ...")
    psi_natural_factor: float = Field(
        3.0, gt=0, description="... and this multiple of its natural PSI (earlier windows vs the reference)"
    )
    psi_natural_windows: int = Field(
        4, ge=1, description="earlier windows (as many offers as the reference) giving the natural PSI: the largest"
    )
    drift_exclude: tuple[str, ...] = Field(
        ("price", "discount_pct", "price_to_competitor", "price_to_cost", "dow", "month", "hour",
         "season_*", "days_to_*", "*_all", "*_seen", "cust_offers_accepted", "cust_tenure_days"),
        description="features left out of drift (glob patterns): our own prices, the calendar and counts since "
        "the data began move by design",
    )
    top_drifting: int = Field(10, ge=1, description="drifting features listed in the report")
    reference_offers: int = Field(
        20_000, ge=100, description="latest offers of the snapshot before the period: the reference window"
    )
    max_auc_drop: float = Field(
        0.05, gt=0, description="AUC shortfall vs the model's own expectation, beyond the reference window's"
    )
    max_log_loss_gap: float = Field(
        0.03, gt=0, description="log loss beyond the model's own expectation (one-sided), beyond the reference window's"
    )
    max_model_age_days: float = Field(
        35.0, gt=0, description="days from the end of the model's training data to the end of the period"
    )
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the lift intervals")
    calibration_bins: int = Field(10, ge=2, description="quantile bins of the reliability table")


class PromotionConfig(_Section):
    """Promotion review: challenger vs champion on the same recent holdout (pricing/promotion.py).

    A challenger worse in log loss, calibration or expected profit (beyond the tolerances) is rejected
    automatically; a better one waits for a human decision, unless ``auto_approve`` is on and its
    profit gain is clear (the lower confidence bound of the gain reaches ``auto_approve_gain``).
    """

    holdout_offers: int = Field(
        20_000, ge=100, description="latest offers of the snapshot both models are scored on (at most model.test_share of them)"
    )
    min_holdout_offers: int = Field(
        1_000, ge=50, description="fewer holdout offers after both models' training data: the review is deferred"
    )
    profit_requests: int = Field(
        2_000, ge=50, description="holdout offers (customer, bundle, time) sampled to value each model's price choices"
    )
    max_log_loss_increase: float = Field(
        0.003, ge=0, description="reject when the challenger's holdout log loss is worse by more than this"
    )
    max_ece_increase: float = Field(
        0.02, ge=0, description="reject when the challenger's calibration error (ECE) is worse by more than this"
    )
    max_profit_drop: float = Field(
        0.0, ge=0, lt=1,
        description="reject when the challenger's expected profit is lower by more than this share, with confidence "
        "(the upper confidence bound of the relative gain lies below -max_profit_drop)",
    )
    auto_approve: bool = Field(
        False, description="approve without a human when the gain is clear (e.g. scheduled runs); else wait"
    )
    auto_approve_gain: float = Field(
        0.01, ge=0, description="clear gain: lower confidence bound of the relative profit gain >= this, log loss not worse"
    )
    auto_approve_log_loss_gain: float = Field(
        0.003, ge=0,
        description="clear gain, too: holdout log loss better by at least this (and by confidence_z standard errors) "
        "with the expected profit at most auto_approve_max_profit_drop lower",
    )
    auto_approve_max_profit_drop: float = Field(
        0.005, ge=0, lt=1, description="largest relative profit drop (point estimate) a log-loss gain may come with"
    )
    confidence_z: float = Field(1.645, gt=0, description="z of the one-sided bounds on the gains (1.645: 95%)")
    approval_timeout_s: int = Field(
        86_400, ge=1, description="seconds a review waits for a decision in the Prefect UI; then nothing changes"
    )
    approval_poll_s: int = Field(10, ge=1, description="seconds between checks of a paused review for the decision")
    seed: int = 7


class ServeConfig(_Section):
    """Schedules of the deployments served by ``bundle-pricing serve`` (cron strings in ``timezone``)."""

    train_cron: str = Field("0 3 * * 1", description="retraining: weekly, Mondays 03:00")
    feedback_cron: str = Field("0 4 * * *", description="feedback on the played price book: daily 04:00")
    price_cron: str = Field("0 5 * * *", description="re-pricing: daily 05:00, after the feedback")
    timezone: str = Field("UTC", description="IANA time zone of the cron schedules")


class ScaleoutConfig(_Section):
    """Scale-out on Dask (docs/scaleout.md): ladder scoring fanned out as Prefect tasks on a Dask
    cluster (prefect-dask), and optionally LightGBM's Dask interface for training.

    The segment MILP (CVXPY + HiGHS) and the Lagrangian personal-price solver stay in one process.
    """

    engine: Literal["local", "dask"] = Field(
        "local", description="local: everything in the flow's process; dask: score the price ladders on a Dask cluster"
    )
    scheduler_address: str | None = Field(
        None, description="Dask scheduler, e.g. tcp://10.0.0.5:8786; None with engine dask: start a LocalCluster"
    )
    n_workers: int = Field(2, ge=1, description="worker processes of the LocalCluster (unused with a scheduler_address)")
    threads_per_worker: int = Field(1, ge=1, description="threads per LocalCluster worker")
    score_chunk_rows: int = Field(
        100_000, ge=1, description="(customer, bundle) context rows per scoring task on the cluster"
    )
    train_on_dask: bool = Field(
        False,
        description="train with lightgbm.DaskLGBMClassifier (needs engine dask); all model.n_estimators rounds, "
        "the early-stopping rule is applied afterwards on the validation curve",
    )

    @model_validator(mode="after")
    def _dask_training_needs_the_dask_engine(self) -> ScaleoutConfig:
        if self.train_on_dask and self.engine != "dask":
            raise ValueError("scaleout.train_on_dask needs scaleout.engine: dask (and a scheduler_address or a LocalCluster)")
        return self


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig = IngestConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    features: FeaturesConfig = FeaturesConfig()
    mining: MiningConfig = MiningConfig()
    model: ModelConfig = ModelConfig()
    tracking: TrackingConfig = TrackingConfig()
    pricebook: PriceBookConfig = PriceBookConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    promotion: PromotionConfig = PromotionConfig()
    serve: ServeConfig = ServeConfig()
    scaleout: ScaleoutConfig = ScaleoutConfig()

    @model_validator(mode="after")
    def _dask_training_needs_tree_price_response(self) -> Config:
        if self.scaleout.train_on_dask and self.model.price_response != "trees":
            raise ValueError(
                "scaleout.train_on_dask trains one LightGBM classifier on the cluster: it needs model.price_response: "
                "trees (the structured model's sensitivity booster has a custom objective that LightGBM's Dask "
                "interface cannot run)"
            )
        return self

    def fingerprint(self) -> str:
        """A short, stable hash of the effective configuration (lineage, caching)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults from the shipped YAML, then the user's YAML file, then explicit overrides."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()) or {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        user = yaml.safe_load(p.read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"config file {p} must hold a mapping at the top level")
        data = _deep_merge(data, user)
    if overrides:
        data = _deep_merge(data, overrides)
    return Config.model_validate(data)
