"""``bundle-pricing``: the command line of the system (Typer).

Heavy libraries (Prefect, Great Expectations, MLflow) are imported inside the commands that need them,
so ``bundle-pricing --help`` answers at once.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from flows.env import configure_environment

app = typer.Typer(
    name="bundle-pricing",
    help="Personalized bundle prices: validated ingestion, LightGBM demand model, CVXPY price optimization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 170)  # piped (make): wide enough for the closed-loop table


class Size(str, Enum):
    tiny = "tiny"
    default = "default"
    bench = "bench"


class Format(str, Enum):
    csv = "csv"
    parquet = "parquet"


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the seven contract tables into")],
    size: Annotated[Size, typer.Option(help="market size: tiny (tests), default (demo), bench")] = Size.default,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same market")] = 7,
    fmt: Annotated[Format, typer.Option("--format", help="file format of the tables")] = Format.csv,
    end_date: Annotated[
        str, typer.Option(help="last day of the simulated history (YYYY-MM-DD); fixed so output is reproducible")
    ] = "2026-09-30",
) -> None:
    """Generate a synthetic shop with a known ground truth (saved in OUT/_truth)."""
    from pricing.simulator import simulate as run_simulation

    with console.status(f"simulating a {size.value} market (seed {seed}) ...") as status:
        paths = run_simulation(
            out_dir, size=size.value, seed=seed, fmt=fmt.value, progress=lambda m: status.update(m), end_date=end_date
        )
    for table, path in paths.items():
        out.print(f"  {table:<18} {path}")
    out.print(f"[green]market written to {out_dir}[/] (ground truth in {out_dir / '_truth'})")


@app.command()
def ingest(
    data: Annotated[Path, typer.Option("--data", help="folder with the shop's tables (data contract v1)")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="where validated snapshots go (default: <work_dir>/ingest)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    force: Annotated[bool, typer.Option(help="ingest again even if the same data was ingested before")] = False,
) -> None:
    """Validate every table with Great Expectations and write a typed, fingerprinted snapshot."""
    configure_environment()
    from flows.ingest import ingest_flow
    from pricing.contract import ContractError

    try:
        summary = ingest_flow(
            data_dir=str(data),
            out_dir=str(out_dir) if out_dir else None,
            config_path=str(config) if config else None,
            force=force,
        )
    except ContractError as exc:
        _fail(f"ingestion stopped, nothing was published.\n{exc}")
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    print_ingest_summary(summary)


def print_ingest_summary(summary) -> None:
    from rich.table import Table

    table = Table(title=f"Ingestion {'(reused snapshot)' if summary.reused else ''}", title_justify="left")
    for col, just in (("table", "left"), ("rows read", "right"), ("valid", "right"), ("quarantined", "right"),
                      ("notes", "left")):
        table.add_column(col, justify=just)
    for name, r in summary.tables.items():
        if not r.present:
            table.add_row(name, "-", "-", "-", "absent (optional)")
            continue
        notes = []
        if r.pii_columns_dropped:
            notes.append("personal data dropped: " + ", ".join(r.pii_columns_dropped))
        if r.extra_columns_ignored:
            notes.append("ignored: " + ", ".join(r.extra_columns_ignored))
        notes += [f"{f.column}: {f.rule} ({f.rows:,})" for f in r.failures]
        table.add_row(name, f"{r.rows_read:,}", f"{r.rows_valid:,}", f"{r.rows_quarantined:,}", "; ".join(notes))
    out.print(table)
    out.print(f"fingerprint [bold]{summary.fingerprint}[/]   snapshot {summary.snapshot_dir}")
    if summary.data_docs:
        out.print(f"Data Docs   file://{summary.data_docs}")


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="folder with the shop's tables; ingested first if needed")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    ingest_out: Annotated[
        Path | None, typer.Option("--ingest-out", help="where snapshots live (default: <work_dir>/ingest)")
    ] = None,
    register: Annotated[bool, typer.Option(help="register the model in the MLflow registry")] = True,
) -> None:
    """Train the purchase-probability model, log it to MLflow and register it as `challenger`."""
    configure_environment()
    from flows.train import train_flow
    from pricing.config import load_config
    from pricing.contract import ContractError
    from pricing.model import TrainingDataError
    from pricing.tracking import ui_command

    try:
        summary = train_flow(
            data_dir=str(data),
            config_path=str(config) if config else None,
            ingest_out=str(ingest_out) if ingest_out else None,
            register_model=register,
        )
    except ContractError as exc:
        _fail(f"ingestion stopped, nothing was trained.\n{exc}")
    except TrainingDataError as exc:
        _fail(f"training stopped, nothing was registered.\n{exc}")
    except FileNotFoundError as exc:
        _fail(str(exc), 2)
    print_training_summary(summary)
    out.print(f"see the run: {ui_command(load_config(str(config) if config else None))}")


def print_training_summary(summary: dict) -> None:
    from rich.table import Table

    m = summary["metrics"]
    table = Table(title="Acceptance model (test split)", title_justify="left")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("true probabilities (ceiling)", justify="right")
    nan = float("nan")
    for label, key, truth in (
        ("AUC", "test_auc", "test_true_auc"),
        ("log loss", "test_log_loss", "test_true_log_loss"),
        ("Brier", "test_brier", None),
        ("calibration error (ECE)", "test_ece", None),
    ):
        table.add_row(label, f"{m.get(key, nan):.4f}", f"{m.get(truth, nan):.4f}" if truth and truth in m else "")
    out.print(table)
    reg = f"version {summary['version']} ({', '.join(summary['aliases'])})" if summary.get("version") else "not registered"
    out.print(f"model [bold]{summary['model_name']}[/] {reg}; MLflow run {summary['run_id']}")


@app.command()
def run(
    data: Annotated[Path, typer.Option("--data", help="folder with the shop's tables (data contract v1)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the price book into")],
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
) -> None:
    """Run everything: ingest -> validate -> features -> (mine bundles) -> train -> register -> optimize."""
    configure_environment()
    from flows.pipeline import pipeline_flow

    with _clear_errors("the run stopped; no price book was written"):
        result = pipeline_flow(data_dir=str(data), out_dir=str(out_dir), config_path=str(config) if config else None)
    if result.get("train"):
        print_training_summary({**result["train"], "model_name": result["model_name"]})
    print_price_book_summary(result["price"])


@app.command()
def price(
    out_dir: Annotated[Path, typer.Option("--out", help="price book folder (the previous book bounds changes)")],
    data: Annotated[
        Path | None, typer.Option("--data", help="raw tables to ingest; default: the latest validated snapshot")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    alias: Annotated[str, typer.Option(help="registry alias of the model to price with")] = "champion",
) -> None:
    """Optimize bundle prices with the registered model (alias `champion` by default)."""
    configure_environment()
    from flows.price import price_flow

    with _clear_errors("pricing stopped; the previous price book is unchanged"):
        result = price_flow(out_dir=str(out_dir), data_dir=str(data) if data else None,
                            config_path=str(config) if config else None, model_alias=alias)
    print_price_book_summary(result)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="simulated data folder (with its _truth)")],
    prices: Annotated[Path, typer.Option("--prices", help="price book folder")],
    offers: Annotated[int, typer.Option(help="simulated offers of the next period to evaluate on")] = 100_000,
    days: Annotated[int, typer.Option(help="length of the evaluated period")] = 7,
    seed: Annotated[int, typer.Option(help="seed of the simulated traffic")] = 0,
) -> None:
    """Expected profit of a price book under the simulator's truth, as a share of the clairvoyant optimum."""
    from rich.table import Table

    from pricing.evaluation import evaluate_price_book

    if not (data / "_truth").exists():
        _fail(f"{data} has no _truth folder: evaluate works on simulated data only", 2)
    with console.status("evaluating against the truth ..."):
        try:
            table = evaluate_price_book(data, prices, n_offers=offers, days=days, seed=seed)
        except FileNotFoundError as exc:
            _fail(str(exc), 2)
    t = Table(title=f"Expected profit over {table.attrs['offers']:,} simulated offers ({days} days from "
                    f"{table.attrs['start'][:10]})", title_justify="left")
    for col, just in (("policy", "left"), ("expected profit", "right"), ("per offer", "right"),
                      ("share of clairvoyant", "right"), ("units beyond stock", "right")):
        t.add_column(col, justify=just)
    for r in table.itertuples():
        t.add_row(r.policy, f"{r.expected_profit:,.0f}", f"{r.profit_per_offer:.3f}", f"{r.share_of_clairvoyant:.3f}",
                  f"{r.units_beyond_stock:,.1f} ({r.products_over_stock})")
    out.print(t)
    out.print(f"units beyond stock: expected units of the {table.attrs['limited_products']} products with limited stock "
              f"sold beyond it over the period at the history's rate ({table.attrs['period_offers']:,} offers), and in "
              "brackets how many products; the clairvoyant optimum keeps no stock, the price book's inventory rule does.")

class ShiftKind(str, Enum):
    none = "none"
    competitor_cut = "competitor_cut"
    taste_shift = "taste_shift"


@app.command()
def play(
    data: Annotated[Path, typer.Option("--data", help="simulated data folder (with its _truth)")],
    prices: Annotated[Path, typer.Option("--prices", help="the published price book to play")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the period's realized tables (CSV)")],
    days: Annotated[int, typer.Option(help="length of the period")] = 7,
    offers: Annotated[int | None, typer.Option(help="offers shown in the period (default: the history's rate)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the period's traffic, outcomes and behaviour")] = 0,
    shift: Annotated[ShiftKind, typer.Option(help="inject a market shift for the period")] = ShiftKind.none,
    magnitude: Annotated[float, typer.Option(help="size of the injected shift (0..1)")] = 0.2,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (the rules of exploration prices)")] = None,
) -> None:
    """Play a price book forward on the simulated market: the period's offers, orders, events (simulated data only)."""
    import pandas as pd

    from pricing.config import load_config
    from pricing.io import write_table
    from pricing.pricebook import read_price_book
    from pricing.simulator import load_market, play_price_book, shift_market

    if not (data / "_truth").exists():
        _fail(f"{data} has no _truth folder: play works on simulated data only", 2)
    with _clear_errors("nothing was played"):
        market = load_market(data)
        book = read_price_book(prices)
        if shift is not ShiftKind.none:
            market = shift_market(market, shift.value, magnitude, seed=seed)
        start = pd.Timestamp(book.manifest.get("priced_for") or market.end_time)
        tables = play_price_book(market, book, start, days, offers, seed=seed,
                                 optimize=load_config(str(config) if config else None).optimize)
    for name in ("offers", "orders", "events", "competitor_prices"):
        if name in tables:
            write_table(tables[name], out_dir, name, "csv")
    (out_dir / "_truth").mkdir(parents=True, exist_ok=True)  # group and true probability per offer (not shop data)
    tables["truth"].to_csv(out_dir / "_truth" / "offers_truth.csv", index=False)
    acc = tables["offers"]["accepted"]
    out.print(f"played {len(acc):,} offers over {days} days ({int(acc.sum()):,} accepted"
              f"{'' if shift is ShiftKind.none else f', shift {shift.value} {magnitude:g}'}) into {out_dir}")


@app.command()
def loop(
    data: Annotated[Path, typer.Option("--data", help="simulated data folder (with its _truth): round 0's history")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the live price book, each round and rounds.csv")],
    rounds: Annotated[int, typer.Option(help="pricing periods to play")] = 5,
    days: Annotated[int, typer.Option(help="length of each period in days")] = 7,
    shift: Annotated[ShiftKind, typer.Option(help="market shift injected from --shift-round on")] = ShiftKind.competitor_cut,
    magnitude: Annotated[float, typer.Option(help="size of the shift (0..1)")] = 0.3,
    shift_round: Annotated[int, typer.Option(help="first round played on the shifted market")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the periods' traffic and outcomes (round r: seed + r)")] = 0,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve/--no-auto-approve", help="approve a clear gain in the promotion review")
    ] = True,
) -> None:
    """The closed loop on simulated data: price -> play -> feedback -> retrain -> review -> re-price, per round."""
    configure_environment()
    from rich.table import Table

    from flows.loop import closed_loop_flow

    if not (data / "_truth").exists():
        _fail(f"{data} has no _truth folder: the closed loop plays on simulated data only", 2)
    with _clear_errors("the closed loop stopped"):
        result = closed_loop_flow(data_dir=str(data), out_dir=str(out_dir), rounds=rounds, shift_round=shift_round,
                                  shift=shift.value, magnitude=magnitude, days=days, seed=seed,
                                  config_path=str(config) if config else None, auto_approve=auto_approve)
    t = Table(title=f"Closed loop: {rounds} rounds of {days} days, shift {shift.value} {magnitude:g} from round "
                    f"{shift_round}", title_justify="left")
    for col, just in (("round", "right"), ("market", "left"), ("priced by", "right"), ("profit", "right"),
                      ("share", "right"), ("lift / offer [95% CI]", "right"), ("alarm", "left"),
                      ("review", "left"), ("retrained", "left")):
        t.add_column(col, justify=just)
    for r in result["rounds"]:
        t.add_row(str(r["round"]), r["market"], r["model"], f"{r['realized_profit']:,.0f}",
                  f"{r['share_of_clairvoyant']:.3f}",
                  f"{r['lift_profit_per_offer']:+.2f} [{r['lift_low']:+.2f}, {r['lift_high']:+.2f}]",
                  "yes" if r["alarm"] else "no", r["review"] or "-", r["retrained"] or "-")
    out.print(t)
    out.print("profit: realized profit of the treatment group; share: its expected profit under the truth as a share "
              "of the clairvoyant optimum; lift: treatment - control (list prices) profit per offer; review: the "
              "promotion review of a challenger on this period.")
    for r in result["rounds"]:
        if r["alarm"]:
            out.print(f"round {r['round']} alarm: {escape(r['reasons'])}", highlight=False)
    out.print(f"live price book: {result['live_prices']}; per-round files and rounds.csv under {result['out_dir']}")


@app.command()
def feedback(
    prices: Annotated[Path, typer.Option("--prices", help="the published price book that was played")],
    realized: Annotated[Path, typer.Option("--realized", help="the period's tables: offers.csv (+ orders, events, ...)")],
    data: Annotated[
        Path | None, typer.Option("--data", help="raw tables before the period (default: the book's snapshot)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    retrain: Annotated[bool, typer.Option("--retrain/--no-retrain", help="train a new model when the trigger fires")] = True,
) -> None:
    """Feedback on a played price book: realized vs predicted, lift over control, drift; retrains when needed."""
    configure_environment()
    from flows.feedback import feedback_flow

    with _clear_errors("feedback stopped; nothing was logged or retrained"):
        result = feedback_flow(prices_dir=str(prices), realized_dir=str(realized), data_dir=str(data) if data else None,
                               config_path=str(config) if config else None, retrain=retrain)
    for line in result["summary"]:
        out.print(escape(line), highlight=False)
    out.print(f"report: MLflow run {result['mlflow_run_id']} (Prefect artifact `feedback-report`)")
    retrained = result.get("retrained")
    if retrained and "deployment" in retrained:
        out.print(f"retraining started: flow run {retrained['flow_run_name']} of deployment {retrained['deployment']}")
    elif retrained:
        print_training_summary({**retrained, "model_name": retrained["model_name"]})


def print_price_book_summary(result: dict) -> None:
    m = result["manifest"]
    out.print(f"[bold]price book[/] ({m.get('mode')}) written to {result['out_dir']}")
    if m.get("mode") == "exploration":
        out.print(f"[yellow]{m.get('note')}[/]")
    seg = m.get("segment_solver") or {}
    if seg:
        out.print(
            f"segment prices: {seg.get('status')} via {seg.get('source')}; expected profit per period "
            f"{seg.get('expected_profit', 0):,.0f} (low {seg.get('profit_low', 0):,.0f}, high {seg.get('profit_high', 0):,.0f})"
        )
    if m.get("model"):
        out.print(f"model {m['model']['name']} version {m['model']['version']}")


class _clear_errors:
    """Turn the known failure types into one clear message and a non-zero exit."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if ev is None:
            return False
        from pricing.contract import ContractError
        from pricing.ladder import InfeasibleRulesError
        from pricing.model import TrainingDataError

        if isinstance(ev, ContractError | TrainingDataError | InfeasibleRulesError | LookupError | ValueError):
            _fail(f"{self.what}.\n{ev}")
        if isinstance(ev, FileNotFoundError):
            _fail(str(ev), 2)
        return False


@app.command("import-online-retail")
def import_online_retail(
    src: Annotated[Path, typer.Option("--src", help="the UCI Online Retail CSV (optionally .gz)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write products, customers, orders into")],
    cost_ratio: Annotated[
        float, typer.Option(help="assumed unit cost as a share of list price (the data has no costs)")
    ] = 0.6,
    fmt: Annotated[Format, typer.Option("--format", help="file format of the tables")] = Format.csv,
) -> None:
    """Turn the real Online Retail transactions into contract tables."""
    from pricing.online_retail import import_online_retail as run_import

    if not src.exists():
        _fail(f"{src} not found", 2)
    with console.status("importing Online Retail ..."):
        report = run_import(src, out_dir, cost_ratio=cost_ratio, fmt=fmt.value)
    out.print(Markdown(report.to_markdown()))


@app.command()
def contract() -> None:
    """Print the data contract (tables, columns, rules)."""
    from pricing.contract import contract_markdown

    out.print(contract_markdown(), highlight=False)


@app.command()
def promote(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="raw tables to ingest; default: the latest validated snapshot")
    ] = None,
    snapshot: Annotated[Path | None, typer.Option("--snapshot", help="a validated snapshot (holdout source)")] = None,
    challenger: Annotated[str | None, typer.Option(help="version to review (default: alias `challenger`)")] = None,
    champion: Annotated[str | None, typer.Option(help="version to compare with (default: alias `champion`)")] = None,
    auto_approve: Annotated[
        bool | None,
        typer.Option("--auto-approve/--no-auto-approve", help="approve a clear gain without a human (default: config)"),
    ] = None,
    wait: Annotated[
        bool | None,
        typer.Option("--wait/--no-wait", help="wait for approval in the Prefect UI (default: when PREFECT_API_URL is set; "
                     "otherwise the terminal asks)"),
    ] = None,
) -> None:
    """Promotion review: compare `challenger` with `champion`; a better one is promoted when approved."""
    import os

    configure_environment()
    from flows.promote import promote_flow

    in_ui = wait if wait is not None else bool(os.environ.get("PREFECT_API_URL"))
    with _clear_errors("the review stopped; no alias changed"):
        result = promote_flow(
            config_path=str(config) if config else None,
            snapshot_dir=str(snapshot) if snapshot else None,
            data_dir=str(data) if data else None,
            challenger_version=challenger,
            champion_version=champion,
            auto_approve=auto_approve,
            wait_for_approval=in_ui,
        )
    print_promotion_summary(result)
    if result["outcome"] != "needs_approval":
        return
    if not sys.stdin.isatty():
        out.print("[yellow]not promoted[/]: a human decides. Run `bundle-pricing promote` in a terminal, or with "
                  "PREFECT_API_URL set to approve in the Prefect UI.")
        return
    from pricing import promotion, tracking
    from pricing.config import load_config

    approve = typer.confirm(f"promote version {result['challenger_version']} to champion?", default=False)
    comment = typer.prompt("comment", default="", show_default=False)
    tracking.configure(load_config(str(config) if config else None))
    name, reviewer = result["model_name"], promotion.current_reviewer()
    with _clear_errors("no alias changed"):
        if approve:
            moved = promotion.promote(name, result["challenger_version"], reviewer, comment, result["metrics"],
                                      result["review_run_id"], expected_champion=result["champion_version"])
            out.print(f"[green]promoted[/]: champion is version {moved['champion']} "
                      f"(previous-champion {moved['previous_champion']})")
        else:
            promotion.record_decision(name, result["challenger_version"], "rejected", reviewer, comment,
                                      result["metrics"], result["review_run_id"], against=result["champion_version"])
            out.print(f"not promoted; champion stays version {result['champion_version']}")


def print_promotion_summary(result: dict) -> None:
    if result["outcome"] == "nothing_to_review":
        out.print(result["message"])
        return
    m = result.get("metrics") or {}
    out.print(f"[bold]review[/] {result['model_name']} v{result['challenger_version']} (challenger) vs "
              f"v{result['champion_version']} (champion): {result['verdict']}")
    for reason in result.get("reasons") or []:
        out.print(f"  - {escape(reason)}")
    for key in ("log_loss", "auc", "ece"):
        if f"champion_{key}" in m:
            out.print(f"  {key:<9} champion {m[f'champion_{key}']:.4f}   challenger {m[f'challenger_{key}']:.4f}")
    out.print(f"outcome: [bold]{result['outcome']}[/]; report in MLflow run {result.get('review_run_id')}")


@app.command()
def rollback(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config overriding the defaults")] = None,
    comment: Annotated[str, typer.Option(help="why (recorded as a tag on both versions)")] = "",
) -> None:
    """Make `previous-champion` the champion again (undo the last promotion); tags both versions."""
    from pricing import promotion, tracking
    from pricing.config import load_config

    cfg = load_config(str(config) if config else None)
    tracking.configure(cfg)
    name = cfg.model.registered_model_name
    with _clear_errors("rollback stopped; no alias changed"):
        moved = promotion.rollback(name, promotion.current_reviewer(), comment)
    out.print(f"champion of {name} is version {moved['champion']} again; version {moved['previous_champion']} "
              "is now previous-champion")


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config passed to every flow")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="the shop's raw tables (default: the latest validated snapshot)")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="price book folder (default: <work_dir>/prices)")] = None,
    limit: Annotated[int | None, typer.Option(help="most flow runs at the same time")] = None,
) -> None:
    """Serve every flow as a deployment: pipeline (manual), train (weekly), price and feedback (daily), promote."""
    import os

    configure_environment()
    from flows.deployments import build_deployments, serve_deployments

    if not os.environ.get("PREFECT_API_URL"):
        console.print("[yellow]PREFECT_API_URL is not set[/]: serving against a temporary local API without a UI. "
                      "Start `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api first.")
    deployments = build_deployments(
        str(config) if config else None, str(data) if data else None, str(out_dir) if out_dir else None
    )
    serve_deployments(deployments, limit=limit)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
