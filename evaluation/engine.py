"""One backtest engine for every strategy: scheduled weights and policies in one batched simulator.

All strategies of a run are the rows of one ``training.simulator.BatchedSimulator``, the code
the agent trained in, with no randomization, a single episode from the first decision to the end
and no random start. The first decision is at the close of bar ``first_bar - 1``; its order
fills at the open of bar ``first_bar``, so the first return earned is that bar's.

Scheduled targets (fractions of equity) enter the simulator as the actions that target them
(``training.actions.actions_for_weights``: ``(w - baseline) / max_leverage``), so
the env's rules apply to them exactly as in training: the per-asset leverage clip at
``max_leverage``, the proportional gross cap, the no-trade band and the ``tradable`` mask. A NaN
target holds that asset (no order, ``BatchedSimulator.step``'s ``hold``); a held asset enters
the gross cap at its current weight. The first decision takes, per asset, the latest target at
or before the first decision bar, so a strategy starts from the book its schedule holds then
(a daily rebalance need not wait for the next midnight, a buy-and-hold buys at the start).

A policy decides at the first decision bar and then every ``env_config.decision_interval``
bars, holding every position in between, as it did in training.

An account liquidated in a step places no order afterwards: it stays flat (its ledger marks the
bar in ``liquidated``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd

from evaluation.ledger import LEDGER_COLUMNS, Ledger
from training.actions import actions_for_weights
from training.env_config import EnvConfig, RandomizationConfig
from training.market import MarketData
from training.observation import FeatureNormalizer
from training.simulator import BatchedSimulator


@dataclass(frozen=True)
class ScheduledWeights:
    """Target weights decided ahead of time from data known at each decision bar's close."""

    name: str
    """Strategy name (unique within a backtest)."""
    targets: np.ndarray
    """(T, N) signed target weights (fractions of equity) decided at the close of bar t, one row
    per bar of the market; NaN holds that asset (no order)."""


@dataclass(frozen=True)
class PolicyActor:
    """A policy deciding from the environment's observations at each decision bar."""

    name: str
    """Strategy name (unique within a backtest)."""
    act: Callable[[np.ndarray], np.ndarray]
    """(B, D) observations -> (B, N) actions in [-1, 1] (target weight = action x max_leverage),
    e.g. an SB3 model's deterministic ``predict``."""


Strategy = ScheduledWeights | PolicyActor

_BAR_INFO = ("equity", "fees", "slippage", "funding", "turnover")
"""Per-account (B,) entries of the simulator's step info that the ledgers keep."""
_ASSET_INFO = (
    "weights",
    "unrealized_pnl",
    "asset_realized",
    "asset_fees",
    "asset_slippage",
    "asset_funding",
)
"""Per-asset (B, N) entries of the simulator's step info that the ledgers keep."""


def backtest(
    market: MarketData,
    env_config: EnvConfig,
    normalizer: FeatureNormalizer | None,
    strategies: Sequence[Strategy],
    first_bar: int,
    stop: int | None = None,
) -> dict[str, Ledger]:
    """Every strategy over bars ``[first_bar, stop)`` in one simulator; one ``Ledger`` each.

    ``normalizer`` scales the features policies observe (the training window's); None is only
    allowed without policies. Raises ``ValueError`` on duplicate names, a misshapen schedule or
    a ``first_bar`` that leaves less than a window of history.
    """
    names = [s.name for s in strategies]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"strategy {name!r}: duplicate name")
    if not strategies:
        raise ValueError("no strategies to backtest")
    config = replace(
        env_config,
        episode_length=None,
        random_start=False,
        randomization=RandomizationConfig(),
        decision_interval=1,  # the engine steps bar by bar; policies decide every interval
    )
    start = first_bar - config.window
    if start < 0:
        raise ValueError(f"first_bar {first_bar} leaves less than window={config.window} bars")
    policies = np.array([isinstance(s, PolicyActor) for s in strategies])
    if normalizer is None and policies.any():
        raise ValueError("a policy backtest needs the training window's feature normalizer")
    b, n = len(strategies), market.n_assets
    sim = BatchedSimulator(market, config, b, normalizer, start, stop)
    rng = np.random.default_rng(0)  # nothing is drawn: no randomization, no random start
    for i in range(b):
        sim.reset_env(i, rng)
    sim.refresh()
    first, steps = sim.first, sim.length
    planned, hold_plan, holds = _plan(strategies, market, first, steps, config)
    policy_rows = [
        (i, s, None if b == 1 else np.array([i]))
        for i, s in enumerate(strategies)
        if isinstance(s, PolicyActor)
    ]
    interval = env_config.decision_interval
    if interval > 1 and policy_rows:  # between decisions a policy holds every position
        between = np.arange(steps) % interval != 0
        hold_plan[np.ix_(between, policies)] = True
        holds |= between
    equity0 = sim.equity.copy()
    record = {key: np.empty((steps, b)) for key in _BAR_INFO}
    record |= {key: np.empty((steps, b, n)) for key in _ASSET_INFO}
    record["liquidated"] = np.empty((steps, b), dtype=bool)
    recorded = list(record.items())
    dead, any_dead = np.zeros(b, dtype=bool), False
    quiet = np.asarray(hold_plan.all(axis=(1, 2)))  # bars where no account places an order
    k = 0
    while k < steps:
        # a liquidated account may have 0 equity: its turnover and reward are 0 / 0
        guard = np.errstate(divide="ignore", invalid="ignore") if any_dead else nullcontext()
        if quiet[k]:  # a span without orders, in one set of operations
            end = k + 1
            while end < steps and quiet[end]:
                end += 1
            with guard:
                _, liq_rows, info = sim.hold(end - k)
            liq = liq_rows.any(0)
        else:
            end = k + 1
            actions, hold = planned[k], None
            if holds[k]:
                hold = hold_plan[k]
                actions = np.where(
                    hold, actions_for_weights(sim.portfolio.weights, config), actions
                )
            for i, strategy, idx in policy_rows:
                if not dead[i] and k % interval == 0:
                    actions[i] = _act(strategy, sim.observations(idx), n)
            with guard:
                _, liq, info = sim.step(actions, hold)
        for key, column in recorded:
            column[k:end] = info[key]  # a step's (B, ...) rows broadcast over its one bar
        k = end
        if np.count_nonzero(liq):  # flat from now on: it holds no position, places no order
            dead |= liq
            any_dead = True
            hold_plan[k:, liq] = True
            holds[k:] = True
            quiet[k:] = hold_plan[k:].all(axis=(1, 2))

    equity = np.vstack([equity0, record["equity"]])
    weights = record["weights"]
    unrealized = record["unrealized_pnl"]
    previous = np.concatenate([np.zeros((1, b, n)), unrealized[:-1]])
    asset_pnl = (
        record["asset_realized"]
        - record["asset_fees"]
        - record["asset_slippage"]
        + record["asset_funding"]
        + unrealized
        - previous
    )
    columns = {key: record[key] for key in ("fees", "slippage", "funding")}
    columns["turnover"] = np.nan_to_num(record["turnover"], nan=0.0, posinf=0.0)
    liquidated = record["liquidated"]

    close_times = market.close_times
    stamps = close_times[first + 1 : first + 1 + steps]
    return {
        s.name: Ledger(
            name=s.name,
            symbols=market.symbols,
            bar_hours=market.bar_hours,
            start_time=close_times[first],
            close_times=stamps,
            equity=equity[:, i].copy(),
            weights=weights[:, i].copy(),
            fees=columns["fees"][:, i].copy(),
            slippage=columns["slippage"][:, i].copy(),
            funding=columns["funding"][:, i].copy(),
            turnover=columns["turnover"][:, i].copy(),
            liquidated=liquidated[:, i].copy(),
            asset_pnl=asset_pnl[:, i].copy(),
        )
        for i, s in enumerate(strategies)
    }


def _act(strategy: PolicyActor, obs: np.ndarray, n_assets: int) -> np.ndarray:
    """The policy's (N,) action for one observation row (1, D)."""
    action = np.asarray(strategy.act(obs), dtype=np.float64)
    if action.size != n_assets:
        raise ValueError(
            f"strategy {strategy.name!r}: act returned shape {action.shape}, "
            f"expected {(1, n_assets)}"
        )
    return action.reshape(n_assets)


def _plan(
    strategies: Sequence[Strategy],
    market: MarketData,
    first: int,
    steps: int,
    limits: EnvConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scheduled strategies' actions (steps, B, N), their hold mask (NaN targets) and the
    steps with any hold (steps,); policy rows are 0 and never held. The first decision's row is
    filled per asset with the latest target at or before it."""
    shape = (market.n_bars, market.n_assets)
    targets = np.zeros((steps, len(strategies), market.n_assets))
    for i, s in enumerate(strategies):
        if not isinstance(s, ScheduledWeights):
            continue
        if np.shape(s.targets) != shape:
            raise ValueError(
                f"strategy {s.name!r}: targets have shape {np.shape(s.targets)}, "
                f"expected {shape} (bars x assets of the market)"
            )
        history = np.asarray(s.targets[: first + 1], dtype=np.float64)
        known = ~np.isnan(history)
        latest = first - np.argmax(known[::-1], axis=0)
        targets[:, i] = s.targets[first : first + steps]
        targets[0, i] = np.where(known.any(axis=0), history[latest, np.arange(shape[1])], np.nan)
    hold = np.isnan(targets)
    holds: np.ndarray = np.any(hold, axis=(1, 2))
    return actions_for_weights(np.where(hold, 0.0, targets), limits), hold, holds


_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS evaluation;
CREATE TABLE IF NOT EXISTS evaluation.ledger_bars (
    evaluation_id VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    equity DOUBLE NOT NULL,
    fees DOUBLE NOT NULL,
    slippage DOUBLE NOT NULL,
    funding DOUBLE NOT NULL,
    turnover DOUBLE NOT NULL,
    gross DOUBLE NOT NULL,
    net DOUBLE NOT NULL,
    liquidated BOOLEAN NOT NULL,
    PRIMARY KEY (evaluation_id, strategy, ts)
);
CREATE TABLE IF NOT EXISTS evaluation.ledger_assets (
    evaluation_id VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    symbol VARCHAR NOT NULL,
    weight DOUBLE NOT NULL,
    pnl DOUBLE NOT NULL,
    PRIMARY KEY (evaluation_id, strategy, ts, symbol)
);
"""


def write_ledgers(
    con: duckdb.DuckDBPyConnection, evaluation_id: str, ledgers: Iterable[Ledger]
) -> None:
    """Replace the rows of ``evaluation_id`` in ``evaluation.ledger_bars`` and
    ``evaluation.ledger_assets`` with ``ledgers``, in one transaction (tables created if
    missing). Writing the same ledgers twice leaves the same rows."""
    ledgers = list(ledgers)
    if not ledgers:
        raise ValueError(f"evaluation {evaluation_id!r}: no ledgers to write")
    bars = pd.concat([ledger.bar_frame() for ledger in ledgers], ignore_index=True)
    assets = pd.concat([ledger.asset_frame() for ledger in ledgers], ignore_index=True)
    con.execute(_SCHEMA)
    views = {"_ledger_bars": bars, "_ledger_assets": assets}
    for view, frame in views.items():
        con.register(view, frame)
    con.execute("BEGIN TRANSACTION")
    try:
        for table, view, cols in (
            ("ledger_bars", "_ledger_bars", ("strategy", "ts", *LEDGER_COLUMNS)),
            ("ledger_assets", "_ledger_assets", ("strategy", "ts", "symbol", "weight", "pnl")),
        ):
            names = ", ".join(cols)
            con.execute(f"DELETE FROM evaluation.{table} WHERE evaluation_id = ?", [evaluation_id])
            con.execute(
                f"INSERT INTO evaluation.{table} (evaluation_id, {names}) "
                f"SELECT ?, {names} FROM {view}",
                [evaluation_id],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for view in views:
            con.unregister(view)
