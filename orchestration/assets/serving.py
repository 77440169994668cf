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
from serving.journal import first_decision, load_safety_state, record_cycle
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


def _order_rows(result: CycleResult) -> list[dict]:
    """The cycle's orders as plain rows (metadata JSON, the demo's printout)."""
    return [
        {
            "client_order_id": o.client_order_id,
            "symbol": o.symbol,
            "side": o.side,
            "qty": abs(o.qty),
            "price": o.reference_price,
            "reduce_only": o.reduce_only,
        }
        for o in result.orders
    ]


def _orders_table(rows: list[dict]) -> str:
    if not rows:
        return "no orders"
    lines = ["| order | symbol | side | qty | price | reduce only |", "|---|---|---|---:|---:|---|"]
    lines += [
        f"| {r['client_order_id']} | {r['symbol']} | {r['side']} | {r['qty']:.6g} | "
        f"{r['price']:.6g} | {r['reduce_only']} |"
        for r in rows
    ]
    return "\n".join(lines)


def intervention_line(row: dict[str, str]) -> str:
    """One intervention (``Intervention.to_dict``) as ``CODE SYMBOL: message``."""
    symbol = f" {row['symbol']}" if row["symbol"] else ""
    return f"{row['code']}{symbol}: {row['message']}"


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
        since = first_decision(con, serving.account_id, version)
    account = result.account
    orders = _order_rows(result)
    interventions = [i.to_dict() for i in result.safety.interventions]
    assert since is not None  # record_cycle has just written this version's decision
    served = times >= since  # the bars this version has served
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
            "orders_table": dg.MetadataValue.md(_orders_table(orders)),
            "order_rows": dg.MetadataValue.json(orders),
            "interventions": dg.MetadataValue.md(
                "\n".join(f"- {intervention_line(r)}" for r in interventions) or "none"
            ),
            "intervention_rows": dg.MetadataValue.json(interventions),
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
