"""Serving: one cycle per bar of the champion on the paper account, behind the safety layer."""

from datetime import UTC, datetime

import dagster as dg
import numpy as np

from orchestration.assets.features import FEATURE_MART
from orchestration.project import CHAMPION_ALIAS
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import ServingSettings
from orchestration.resources.warehouse import DuckDBWarehouse
from serving.cycle import CycleResult, LiveExecution, PaperExecution, run_cycle
from serving.drift import feature_drift
from serving.journal import load_safety_state, record_cycle
from serving.live import LiveBroker, LiveTradingDisabled, require_live
from serving.paper import PaperBroker
from serving.tracking import paper_tracking
from training.data import load_market
from training.policy_model import PolicyModel, load_policy

_LOADED: dict[tuple[str, str, str], PolicyModel] = {}
"""Policies loaded in this process by (tracking URI, model, version): a cycle loads the
champion again only when the alias has moved to another version."""


def champion_policy(mlflow_registry: MlflowRegistry) -> tuple[str, PolicyModel]:
    """The version holding ``@champion`` and its policy (loaded once per version)."""
    version = mlflow_registry.champion_version()
    if version is None:
        raise dg.Failure(
            f"no model version holds the '{CHAMPION_ALIAS}' alias of "
            f"{mlflow_registry.model_name}: materialize day_one_champion first"
        )
    key = (mlflow_registry.tracking_uri, mlflow_registry.model_name, version)
    if key not in _LOADED:
        mlflow_registry.activate()
        _LOADED.clear()
        _LOADED[key] = load_policy(mlflow_registry.model_uri(version))
    return version, _LOADED[key]


def _orders_table(result: CycleResult) -> str:
    if not result.orders:
        return "no orders"
    lines = ["| order | symbol | side | qty | price | reduce only |", "|---|---|---|---:|---:|---|"]
    lines += [
        f"| {o.client_order_id} | {o.symbol} | {o.side} | {abs(o.qty):.6g} | "
        f"{o.reference_price:.6g} | {o.reduce_only} |"
        for o in result.orders
    ]
    return "\n".join(lines)


def _interventions(result: CycleResult) -> str:
    return (
        "\n".join(
            f"- **{i.code}**{f' {i.symbol}' if i.symbol else ''}: {i.message}"
            for i in result.safety.interventions
        )
        or "none"
    )


@dg.asset(
    group_name="serving",
    deps=[FEATURE_MART, "day_one_champion", "champion_model"],
    kinds={"duckdb", "mlflow"},
)
def serving_cycle(
    warehouse: DuckDBWarehouse, mlflow_registry: MlflowRegistry, serving: ServingSettings
) -> dg.MaterializeResult:
    """The champion served on the latest bar of the feature mart, on the paper account: the
    previous decision's orders fill at this bar's open, the observation holds the account's
    real positions, the safety layer checks the policy's targets, and the orders it lets
    through go to the ledger to fill at the next bar's open. Decisions, orders and every
    intervention are in this materialization's metadata and in the ``serving`` tables, with
    the tracking error of the paper equity against the backtest of this version on the bars
    it has served."""
    if serving.live:  # both opt-ins before anything else, else the missing one is named
        try:
            require_live(serving.live_config())
        except LiveTradingDisabled as err:
            raise dg.Failure(f"serving: live trading is configured but off: {err}") from err
    version, policy = champion_policy(mlflow_registry)
    spec = policy.spec
    live = LiveBroker(serving.live_config(), spec.symbols) if serving.live else None
    market = load_market(
        warehouse.path, spec.venue, spec.timeframe, spec.feature_columns, symbols=spec.symbols
    )
    now = (
        np.datetime64(datetime.now(UTC).replace(tzinfo=None), "ns")
        if serving.clock == "wall"
        else None
    )
    with warehouse.connect() as con:
        state = load_safety_state(con, serving.account_id)
        execution: PaperExecution | LiveExecution
        if live is None:
            execution = PaperExecution(
                PaperBroker(
                    con,
                    serving.account_id,
                    spec.symbols,
                    spec.env_config.initial_equity,
                    spec.env_config.fees,
                    spec.env_config.slippage,
                )
            )
        else:
            initial = serving.live_initial_equity or spec.env_config.initial_equity
            execution = LiveExecution(live, serving.account_id, initial)
        result = run_cycle(
            policy, market, execution, state, limits=serving.safety_limits(), now=now
        )
        record_cycle(con, serving.account_id, result, version)
        times, equity = (
            execution.broker.equity_curve()
            if isinstance(execution, PaperExecution)
            else (np.array([], dtype="datetime64[us]"), np.array([]))  # the exchange keeps it
        )
        since = con.execute(
            "SELECT min(decision_ts) FROM serving.decisions WHERE account_id = ? "
            "AND model_version = ?",
            [serving.account_id, version],
        ).fetchone()[0]
    account = result.account
    served = times >= np.datetime64(since, "us")  # the bars this version has served
    tracking = paper_tracking(
        market, spec.env_config, policy.act, spec.builder.normalizer, times[served], equity[served]
    )
    return dg.MaterializeResult(
        metadata={
            "mode": "paper" if live is None else f"live ({live.endpoint})",
            "model_version": version,
            "backend": policy.backend,
            "decision_ts": str(result.decision_ts),
            "decided": result.decided,
            "safety_state": result.safety.state.state,
            "orders": len(result.orders),
            "orders_table": dg.MetadataValue.md(_orders_table(result)),
            "interventions": dg.MetadataValue.md(_interventions(result)),
            "n_interventions": len(result.safety.interventions),
            "fills_this_cycle": len(result.fills),
            "bars_processed": result.bars_processed,
            "paper_equity": round(account.equity, 2),
            "paper_cash": round(account.cash, 2),
            "paper_bars": len(equity),
            "paper_return": float(equity[-1] / account.initial_equity - 1) if len(equity) else 0.0,
            "gross_leverage": float(np.abs(account.weights).sum()),
            **{
                f"weight_{s}": round(float(w), 4)
                for s, w in zip(spec.symbols, result.safety.target_weights, strict=True)
            },
            "first_paper_bar": str(times[0]) if len(times) else "none",
            "tracking_bars": 0 if tracking is None else tracking.bars,
            "tracking_error_vs_backtest": float("nan")
            if tracking is None
            else tracking.tracking_error,
            "equity_gap_vs_backtest": float("nan") if tracking is None else tracking.equity_gap,
        }
    )


@dg.asset_check(
    asset=serving_cycle,
    blocking=False,
    description="Feature drift: the live features of the last 30 days against the champion's "
    "training window (population stability index per feature); warns, never blocks.",
)
def serving_feature_drift(
    warehouse: DuckDBWarehouse, mlflow_registry: MlflowRegistry
) -> dg.AssetCheckResult:
    _, policy = champion_policy(mlflow_registry)
    spec = policy.spec
    market = load_market(
        warehouse.path, spec.venue, spec.timeframe, spec.feature_columns, symbols=spec.symbols
    )
    report = feature_drift(market, np.datetime64(spec.train_end))
    return dg.AssetCheckResult(
        passed=not report.drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=report.summary(),
        metadata={
            "max_psi": report.max_psi,
            "drifted_features": ", ".join(report.drifted) or "none",
            "psi": dg.MetadataValue.json(report.psi),
            "live_bars": report.live_bars,
            "reference_bars": report.reference_bars,
        },
    )
