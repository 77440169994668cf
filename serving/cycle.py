"""One serving cycle at a bar's close: the broker catches up to the bar (the previous decision's
orders fill at this bar's open, funding settles, the account is marked), the observation is
built from the account with the policy's own builder, the policy proposes target weights at its
decision bars (and holds between them), the safety layer turns them into orders, and the broker
records them to fill at the next bar's open.

Everything here is the same code as training and the backtest: ``PolicySpec.builder`` builds
the observation, ``portfolio_state`` is the simulator's account view, and the paper broker fills
with the environment's cost models (``serving.paper``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from serving.account import AccountState, MarketRules, Order
from serving.ledger import client_order_id
from serving.live import REJECTED, LiveBroker, SubmitResult
from serving.paper import PaperBar, PaperBroker, PaperFill
from serving.safety import MarketSnapshot, SafetyDecision, SafetyLimits, SafetyState, check
from training.env_config import EnvConfig
from training.margin import MarginModel, MarginTable
from training.market import MarketData
from training.observation import PortfolioState

if TYPE_CHECKING:
    from training.policy_model import PolicyModel

PAPER_MIN_NOTIONAL = 5.0
"""Smallest paper order in quote currency (Binance USD-M's usual MIN_NOTIONAL)."""


class Execution(Protocol):
    """Where a cycle's account comes from and its orders go: the paper ledger or an exchange."""

    account_id: str
    symbols: tuple[str, ...]

    def catch_up(self, market: MarketData, t: int) -> tuple[list[PaperFill], int]:
        """Bring the account to the close of bar ``t``: the fills and the bars processed."""
        ...

    def account_at(self, market: MarketData, t: int) -> AccountState:
        """The account at the close of bar ``t``."""
        ...

    def rules(self, market: MarketData, t: int) -> MarketRules:
        """The order rules (lot sizes, minimum notional) at bar ``t``."""
        ...

    def submit(self, orders: list[Order]) -> list[Order]:
        """Send ``orders``; the ones the venue holds (sent now or before)."""
        ...


class PaperExecution:
    """The paper broker: it fills the previous decision's orders at each new bar's open."""

    def __init__(self, broker: PaperBroker):
        self.broker = broker
        self.account_id, self.symbols = broker.account_id, tuple(broker.symbols)

    def catch_up(self, market: MarketData, t: int) -> tuple[list[PaperFill], int]:
        """Process the bars after the broker's last one up to ``t`` (a new account: bar ``t``
        alone)."""
        broker = self.broker
        last = broker.last_bar()
        if last is None:
            start = t
        else:
            last = last.astype(market.close_times.dtype)
            start = int(np.searchsorted(market.close_times, last, side="right"))
            if start == 0 or market.close_times[start - 1] != last:
                raise ValueError(
                    f"account {broker.account_id} was last marked at {last}, a close time the "
                    f"market of {market.symbols} does not have"
                )
        fills: list[PaperFill] = []
        for i in range(start, t + 1):
            fills += broker.fill_pending(PaperBar.from_market(market, i))
        return fills, t + 1 - start

    def account_at(self, market: MarketData, t: int) -> AccountState:
        return self.broker.account(market.mark[t])

    def rules(self, market: MarketData, t: int) -> MarketRules:
        return paper_rules(market.symbols, market.close[t])

    def submit(self, orders: list[Order]) -> list[Order]:
        return self.broker.submit(orders)


class LiveExecution:
    """A live exchange account (``serving.live.LiveBroker``): the exchange fills, positions and
    balance come from it. It knows neither the equity the account started with nor the basis
    at entry: ``initial_equity`` is given and the entry basis is taken as 0."""

    def __init__(self, broker: LiveBroker, account_id: str, initial_equity: float):
        self.broker, self.account_id = broker, account_id
        self.symbols = tuple(broker.symbols)
        self.initial_equity = initial_equity
        self.results: list[SubmitResult] = []
        """What the exchange answered to the last ``submit``."""

    def catch_up(self, market: MarketData, t: int) -> tuple[list[PaperFill], int]:
        return [], 0

    def account_at(self, market: MarketData, t: int) -> AccountState:
        return self.broker.account(self.initial_equity)

    def rules(self, market: MarketData, t: int) -> MarketRules:
        return self.broker.market_rules()

    def submit(self, orders: list[Order]) -> list[Order]:
        self.results = self.broker.submit(orders)
        held = {r.client_order_id for r in self.results if r.status != REJECTED}
        return [o for o in orders if o.client_order_id in held]


@dataclass(frozen=True)
class CycleResult:
    """What one cycle decided and did."""

    decision_ts: np.datetime64
    """Close time of the bar decided on (the orders fill at the next bar's open)."""
    decided: bool
    """True at the policy's decision bars; between them the proposal is the current book."""
    proposed_weights: np.ndarray
    """(N,) the policy's target weights (the current weights between decisions)."""
    observation: np.ndarray
    """The observation the policy saw (D,), float32."""
    account: AccountState
    """The account at the decision bar's marks, before the new orders."""
    safety: SafetyDecision
    """The safety layer's orders, state and interventions."""
    orders: tuple[Order, ...]
    """The orders as the broker stored them (a re-run returns the stored ones)."""
    fills: tuple[PaperFill, ...]
    """Fills of earlier decisions processed by this cycle's catch-up."""
    bars_processed: int
    """Bars the broker caught up on in this cycle (0 on a re-run of the same bar)."""


def portfolio_state(
    account: AccountState, env: EnvConfig, hours_to_funding: np.ndarray
) -> PortfolioState:
    """The account as the policy observes it, with the simulator's definitions
    (``BatchedSimulator._portfolio``): weights and unrealized PnL over equity, the entry basis,
    equity over the initial equity, maintenance margin over equity and the distance to
    liquidation ``(equity - MM) / gross`` in [0, 1]."""
    equity = max(account.equity, 1e-9 * account.initial_equity)
    notional = account.notional
    maintenance = float(_margin_table(env.margin, account.symbols).maintenance(notional).sum())
    gross = max(float(np.abs(notional).sum()), 1e-12)
    return PortfolioState(
        weights=notional / equity,
        unrealized_pnl=account.unrealized_pnl / equity,
        entry_basis=account.entry_basis,
        equity_ratio=equity / account.initial_equity,
        margin_ratio=maintenance / equity,
        distance_to_liquidation=min(max((equity - maintenance) / gross, 0.0), 1.0),
        hours_to_funding=np.asarray(hours_to_funding, dtype=np.float64),
    )


@lru_cache(maxsize=16)
def _margin_table(margin: MarginModel, symbols: tuple[str, ...]) -> MarginTable:
    """The margin tiers of ``symbols`` (built once per model and universe)."""
    return margin.table(symbols)


def is_decision_bar(close_time: np.datetime64, bar_hours: float, interval: int) -> bool:
    """True when a policy deciding every ``interval`` bars decides at the bar closing at
    ``close_time``: closes on a whole multiple of ``interval`` bar lengths since the Unix epoch
    (every bar at an interval of 1; 00:00 UTC closes for 24 hourly bars)."""
    period = int(round(interval * bar_hours * 3600)) * 10**9
    return int(close_time.astype("datetime64[ns]").astype(np.int64)) % period == 0


def paper_rules(symbols: tuple[str, ...], price: np.ndarray) -> MarketRules:
    """Order rules of the paper account: a lot of the power of ten that is worth at most one
    unit of quote at ``price`` (0.00001 BTC at 60,000), and ``PAPER_MIN_NOTIONAL``."""
    price = np.asarray(price, dtype=np.float64)
    lot = 10.0 ** np.floor(np.log10(1.0 / price))
    return MarketRules(tuple(symbols), lot, np.full(len(symbols), PAPER_MIN_NOTIONAL))


def market_snapshot(market: MarketData, t: int, now: np.datetime64) -> MarketSnapshot:
    """What the safety layer knows of bar ``t`` at wall-clock ``now``."""
    return MarketSnapshot(
        symbols=market.symbols,
        close=market.close[t],
        prev_close=market.close[max(t - 1, 0)],
        basis=market.basis[t],
        bar_close_ts=market.close_times[t],
        bar_length=np.timedelta64(int(round(market.bar_hours * 3600)), "s"),
        now=now,
        features_finite=bool(np.isfinite(market.features[t]).all()),
        high=market.high[t],
        low=market.low[t],
        funding_rate=market.funding_rate[t],
    )


def run_cycle(
    policy: PolicyModel,
    market: MarketData,
    broker: PaperBroker | Execution,
    state: SafetyState,
    *,
    limits: SafetyLimits | None = None,
    rules: MarketRules | None = None,
    now: np.datetime64 | None = None,
) -> CycleResult:
    """Serve the last bar of ``market`` on ``broker``'s account with ``policy`` (a registered
    policy: its spec's builder and environment, its ``predict`` to target weights). ``broker``
    is the paper broker or an ``Execution`` (``LiveExecution`` for an exchange account).

    The paper broker first processes every bar after its last one up to the last bar (a new
    account starts at the last bar). A re-run on the same bar processes nothing and submits nothing
    new: the orders keep their client order ids. ``now`` (default: the bar's close) is the
    wall-clock time the staleness rule compares with."""
    env, build = policy.spec.env_config, policy.spec.builder.build
    t = market.n_bars - 1
    if t < 1:
        raise ValueError(f"serving needs at least two bars of {market.symbols}, got {t + 1}")
    execution = PaperExecution(broker) if isinstance(broker, PaperBroker) else broker
    if tuple(execution.symbols) != tuple(market.symbols):
        raise ValueError(f"account trades {execution.symbols} but the market has {market.symbols}")
    fills, processed = execution.catch_up(market, t)
    decision_ts = market.close_times[t]
    account = execution.account_at(market, t)
    portfolio = portfolio_state(account, env, market.hours_to_funding[t])
    observation = build(market.features, t, portfolio)
    decided = is_decision_bar(decision_ts, market.bar_hours, env.decision_interval)
    close = market.close[t]
    current = account.qty * close / max(account.equity, 1e-12)  # as the env sizes
    # the book as the safety layer sizes it (on the lower of the equity at close and at mark):
    # proposing it places no order
    held = account.qty * close / max(_sizing_equity(account, close), 1e-12)
    proposed = held
    if decided:
        proposed = np.asarray(policy.predict(None, observation[None]), np.float64).reshape(-1)
        proposed = _env_rules(proposed, current, held, env, market, t)
    account_id = execution.account_id

    def make_order_id(symbol: str, leg: int) -> str:
        return client_order_id(account_id, decision_ts, symbol, leg)

    safety = check(
        proposed,
        account,
        market_snapshot(market, t, decision_ts if now is None else now),
        execution.rules(market, t) if rules is None else rules,
        SafetyLimits() if limits is None else limits,
        state,
        decision_ts,
        make_order_id,
    )
    orders = execution.submit(list(safety.orders))
    return CycleResult(
        decision_ts=decision_ts,
        decided=decided,
        proposed_weights=proposed,
        observation=observation,
        account=account,
        safety=safety,
        orders=tuple(orders),
        fills=tuple(fills),
        bars_processed=processed,
    )


def _sizing_equity(account: AccountState, close: np.ndarray) -> float:
    """The equity the safety layer sizes orders on: the lower of the account valued at the
    decision bar's close and at its marks."""
    at_close = account.cash + float((account.qty * (close - account.entry_price)).sum())
    return min(at_close, account.equity)


def _env_rules(
    proposed: np.ndarray,
    current: np.ndarray,
    held: np.ndarray,
    env: EnvConfig,
    market: MarketData,
    t: int,
) -> np.ndarray:
    """The environment's own order rules on the policy's targets, as in training: an asset
    inside the no-trade band around its ``current`` weight, or not tradable at bar ``t`` (data
    carried over a gap), keeps its position (``held``: the weight that places no order). A
    proposal of the wrong shape passes unchanged, for the safety layer to refuse."""
    if proposed.shape != current.shape:
        return proposed
    keep = np.zeros(current.shape, dtype=bool)
    if env.no_trade_band > 0:
        with np.errstate(invalid="ignore"):
            keep |= np.abs(proposed - current) < env.no_trade_band
    if market.tradable is not None:
        keep |= ~np.asarray(market.tradable[t], dtype=bool)
    return np.where(keep, held, proposed)
