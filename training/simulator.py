"""The batched simulator: B accounts stepping through one market with one set of numpy operations.

A step is one decision at the close of bar t (see docs/environment.md), in phases:

1. targets: the action maps to target weights, sized into quantities with equity at mark[t] and
   close[t] (both known); assets inside the no-trade band, or not tradable at bar t (data
   carried over a gap), keep their quantity;
2. fill at open[t+1]: fees, slippage, realized PnL and average entry prices;
3. margin: equity minus maintenance margin on the path from open[t+1] to each position's
   adverse extreme (low for longs, high for shorts); liquidation where it goes below zero;
4. funding settles at the close of bar t+1 if due, and positions are marked at mark[t+1];
5. reward and info.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from training.actions import target_weights
from training.costs import funding_cash_flow
from training.env_config import EnvConfig
from training.margin import MarginTable, liquidation_fraction
from training.market import MarketData
from training.observation import FeatureNormalizer, ObservationBuilder, PortfolioState
from training.rewards import make_reward


class Bars(NamedTuple):
    """Market values of one bar per account, each (B, N): the columns of the packed market."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    mark: np.ndarray
    quote_volume: np.ndarray  # volume x open: the slippage model's V
    funding_rate: np.ndarray
    hours_to_funding: np.ndarray
    basis: np.ndarray

    @classmethod
    def pack(cls, market: MarketData) -> np.ndarray:
        """(T, columns, N) float64 array of the whole market: one gather reads a step's bar."""
        columns = cls(
            open=market.open,
            high=market.high,
            low=market.low,
            close=market.close,
            mark=market.mark,
            quote_volume=market.volume * market.open,
            funding_rate=market.funding_rate,
            hours_to_funding=market.hours_to_funding,
            basis=market.basis,
        )
        return np.stack(columns, axis=1).astype(np.float64)

    @classmethod
    def of(cls, packed: np.ndarray) -> Bars:
        """Column views of packed rows (B, columns, N), of a span's rows (k, B, columns, N) or
        of the whole packed market."""
        if packed.ndim == 3:
            return cls._make(packed.transpose(1, 0, 2))
        return cls._make(np.moveaxis(packed, -2, 0))


class AssetTerms(NamedTuple):
    """Per-asset terms of a step, each (B, N): the rows of one (8, B, N) array, so that a single
    reduction sums all of them over assets (the sums are read as an ``AssetTerms`` of (B,))."""

    traded: np.ndarray  # |traded notional| at the fill price
    slippage: np.ndarray
    realized: np.ndarray  # PnL realized on the reduced part of each position
    surplus_at_adverse: np.ndarray  # unrealized PnL - maintenance margin at the adverse extreme
    notional: np.ndarray  # the last four: positions marked at the close (``_mark``)
    unrealized: np.ndarray
    gross: np.ndarray  # |notional|
    maintenance: np.ndarray


N_TERMS = len(AssetTerms._fields)
MARKED = slice(AssetTerms._fields.index("notional"), N_TERMS)
"""The rows of an ``AssetTerms`` array that ``_mark`` writes."""


class Fill(NamedTuple):
    """Positions after the fill at open[t+1] and their margin tier for the bar, each (B, N)."""

    qty: np.ndarray
    entry: np.ndarray
    entry_basis: np.ndarray
    adverse: np.ndarray  # price at each position's adverse extreme of the bar
    mm_rate: np.ndarray
    mm_cum: np.ndarray


# 0-d float64 operands for the step's hot path: numpy converts a Python float operand on every
# call, a noticeable share of an operation on (1, N) arrays. Same dtype, same results.
_ZERO, _ONE, _TINY = np.array(0.0), np.array(1.0), np.array(1e-12)
_BAR = np.array(1, dtype=np.int64)  # one bar / one step


def _draw_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Uniform draw in ``bounds``; a degenerate range draws nothing (keeps streams aligned)."""
    lo, hi = bounds
    return lo if lo == hi else float(rng.uniform(lo, hi))


def trade_positions(
    qty: np.ndarray,
    traded: np.ndarray,
    new_qty: np.ndarray,
    entry: np.ndarray,
    entry_basis: np.ndarray,
    price: np.ndarray,
    basis: np.ndarray,
    realized: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``qty`` trading ``traded`` (= ``new_qty - qty``) at ``price``: the reduced part
    realizes ``closed x (price - entry)`` (written to ``realized``), the added part averages into
    the entry price and the entry basis (``basis`` at the decision), a flip opens the rest at
    ``price``. Returns the new entry prices and entry basis (0 where flat). The simulator and
    the paper broker both fill with it."""
    closed = np.minimum(np.maximum(-traded, np.minimum(qty, _ZERO)), np.maximum(qty, _ZERO))
    opened = traded + closed
    remaining = qty - closed
    np.multiply(closed, price - entry, out=realized)
    denom = np.where(new_qty != _ZERO, new_qty, _ONE)  # flat: remaining = opened = 0
    return (remaining * entry + opened * price) / denom, (
        remaining * entry_basis + opened * basis
    ) / denom


def _surplus_at_adverse(
    qty: np.ndarray,
    entry: np.ndarray,
    adverse: np.ndarray,
    mm_rate: np.ndarray,
    mm_cum: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write each position's unrealized PnL minus maintenance margin at its adverse price."""
    np.add(qty * (adverse - entry) - np.abs(qty) * adverse * mm_rate, mm_cum, out=out)


def _fields(state: PortfolioState) -> list[Any]:
    """Field values of a ``PortfolioState`` in declaration order (no copies)."""
    return [getattr(state, f.name) for f in dataclasses.fields(state)]


_SUMMED = (
    "fees",
    "slippage",
    "funding",
    "turnover",
    "liquidation_fee",
    "asset_realized",
    "asset_fees",
    "asset_slippage",
    "asset_funding",
)
"""Info entries that ``decide`` sums over the bars of a decision span."""
_LAST = ("equity", "cash", "weights", "unrealized_pnl")
"""Info entries that ``decide`` takes from the span's last bar."""


class BatchedSimulator:
    """B accounts stepping through one market with one set of numpy operations.

    Used by ``PerpPortfolioEnv`` (B = 1) and ``BatchedPerpPortfolioVecEnv``, so both share the
    same math. Randomness only enters through ``reset_env``, from a generator the caller owns.
    """

    def __init__(
        self,
        market: MarketData,
        config: EnvConfig,
        n_envs: int,
        normalizer: FeatureNormalizer | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        market.validate()
        stop = market.n_bars if stop is None else stop
        self.first = start + config.window - 1
        self.last = stop - 1  # last bar whose close ends a step
        available = self.last - self.first
        self.interval = k = config.decision_interval
        if available < k or (config.episode_length or 0) * k > available:
            raise ValueError(
                f"bars [{start}, {stop}) leave {available} steps after a window of "
                f"{config.window}; episode_length={config.episode_length} decisions of "
                f"decision_interval={k} bars"
            )
        self.market, self.config, self.n_envs = market, config, n_envs
        # bars per episode: whole decisions only
        self.length = config.episode_length * k if config.episode_length else available // k * k
        self.n_assets = n = market.n_assets
        if normalizer is None:
            normalizer = FeatureNormalizer.fit(market.features[start:stop])
        self.builder = ObservationBuilder(
            market.feature_names, n, config.window, normalizer, config.obs_clip
        )
        self.normalized = self.builder.normalize(market.features)
        self.packed = Bars.pack(market)
        self.series = Bars.of(self.packed)  # (T, N) views of each column
        tradable = market.tradable  # (T, N) bars whose close may decide orders; None: all
        self.tradable = None if tradable is None or tradable.all() else tradable
        self.table: MarginTable = config.margin.table(market.symbols)
        self.reward_fn = make_reward(config, n_envs)
        r = config.randomization
        self.randomized = (
            r.basis_noise_std > 0 or r.funding_noise_std > 0 or r.funding_shift_max_bars > 0
        )
        self.slip_randomized = r.slippage_mult_range != (1.0, 1.0)
        b = n_envs
        self.t = np.full(b, self.first, dtype=np.int64)
        self.steps = np.zeros(b, dtype=np.int64)
        self.cash = np.full(b, config.initial_equity)
        self.equity = self.cash.copy()
        self.qty = np.zeros((b, n))
        self.entry = np.zeros((b, n))
        self.entry_basis = np.zeros((b, n))
        self.fee_rate = np.full(b, config.fees.rate)  # per-episode multiplier applied
        self._fee_col = self.fee_rate[:, None]  # (B, 1) view: ``reset_env`` writes in place
        self._no_funding = np.zeros((b, n))
        self._no_funding.flags.writeable = False  # shared by every step without a settlement
        self.slip_mult = np.ones((b, 1))
        self.shift = np.zeros(b, dtype=np.int64)
        noise_shape = (b, self.length + 1, n)  # indexed by episode step of the bar
        self.basis_noise = np.zeros(noise_shape) if r.basis_noise_std > 0 else None
        self.funding_noise = np.zeros(noise_shape) if r.funding_noise_std > 0 else None
        self._rows = np.arange(b)
        self._initial_equity = np.array(config.initial_equity)
        self._min_equity = np.array(1e-9 * config.initial_equity)
        self._now_packed = self.packed[self.t]
        self._now = Bars.of(self._now_packed)
        self.portfolio = self._marked_portfolio(self._now)

    # ----------------------------------------------------------------- episodes
    def reset_env(self, i: int, rng: np.random.Generator) -> None:
        """Start a new episode for account ``i``, drawing from ``rng`` in a fixed order."""
        cfg, r, n = self.config, self.config.randomization, self.n_assets
        if cfg.random_start and cfg.episode_length is not None:
            t0 = int(rng.integers(self.first, self.last - self.length + 1))
        else:
            t0 = self.first
        self.t[i], self.steps[i] = t0, 0
        self.fee_rate[i] = cfg.fees.rate * _draw_uniform(rng, r.fee_mult_range)
        self.slip_mult[i] = _draw_uniform(rng, r.slippage_mult_range)
        if r.funding_shift_max_bars > 0:
            m = r.funding_shift_max_bars
            self.shift[i] = rng.integers(-m, m + 1)
        if self.basis_noise is not None:
            self.basis_noise[i] = rng.normal(0.0, r.basis_noise_std, (self.length + 1, n))
        if self.funding_noise is not None:
            self.funding_noise[i] = rng.normal(0.0, r.funding_noise_std, (self.length + 1, n))
        self.cash[i] = self.equity[i] = cfg.initial_equity
        self.qty[i] = self.entry[i] = self.entry_basis[i] = 0.0
        mask = self._rows == i
        self.reward_fn.reset(mask, self.equity)

    def refresh(self, mask: np.ndarray | None = None) -> None:
        """Recompute the portfolio state of reset accounts (all, or where ``mask``)."""
        packed = self._gather(self.t)
        fresh = self._marked_portfolio(Bars.of(packed))
        if mask is not None:
            col = mask[:, None]
            packed = np.where(col[..., None], packed, self._now_packed)
            fresh = PortfolioState(
                *(
                    np.where(col if np.ndim(v) == 2 else mask, v, o)
                    for v, o in zip(_fields(fresh), _fields(self.portfolio), strict=True)
                )
            )
        self._now_packed, self._now, self.portfolio = packed, Bars.of(packed), fresh

    def observations(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Observations at the current decision bars, of all accounts (B, D) or of ``idx``."""
        if idx is None:
            return self.builder.build_batch(self.normalized, self.t, self.portfolio)
        rows = PortfolioState(*(v[idx] if np.ndim(v) else v for v in _fields(self.portfolio)))
        return self.builder.build_batch(self.normalized, self.t[idx], rows)

    def portfolio_of(self, i: int) -> PortfolioState:
        """Account ``i``'s state as its observation sees it (unbatched)."""
        return PortfolioState(*(np.asarray(v)[i] for v in _fields(self.portfolio)))

    # -------------------------------------------------------------------- step
    def step(
        self, actions: np.ndarray, hold: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every account one bar; returns (reward, terminated, info arrays).

        ``hold``: optional (B, N) bool, True where an asset keeps its quantity (no order), like
        a bar that is not tradable. The ``asset_*`` info arrays (B, N) attribute the step per
        asset: realized PnL, fees, slippage and funding cash flow (zeros without a settlement).
        """
        eq0, t1 = self.equity, self.t + _BAR
        now, packed = self._now, self._gather(t1)
        bar = Bars.of(packed)
        per_asset = np.empty((N_TERMS, self.n_envs, self.n_assets))
        terms = AssetTerms._make(per_asset)

        qty = self._targets(actions, now, self.t)
        if hold is not None:
            qty = np.where(hold, self.qty, qty)
        fill = self._fill(qty, now, bar, terms)
        self._mark(terms, qty, fill.entry, bar.mark, fill.mm_rate, fill.mm_cum)
        totals = np.add.reduce(per_asset, -1)
        sums = AssetTerms._make(totals)
        fees = self.fee_rate * sums.traded
        cash = self.cash + sums.realized - fees - sums.slippage
        liquidated = cash + sums.surplus_at_adverse < _ZERO  # equity - MM is lowest there
        if np.count_nonzero(liquidated):
            fill, cash, liquidation_fee = self._liquidate(fill, cash, liquidated, bar, terms)
            totals[MARKED] = np.add.reduce(per_asset[MARKED], -1)
        else:
            liquidation_fee = np.zeros(self.n_envs)
        cash, funding, asset_funding = self._settle_funding(cash, fill.qty, bar)

        self.cash, self.qty, self.entry, self.entry_basis = cash, *fill[:3]
        equity = cash + sums.unrealized
        self.equity = equity
        self.t = t1
        self.steps = self.steps + _BAR
        self._now_packed, self._now = packed, bar
        self.portfolio = self._portfolio(bar, terms, sums)
        reward = self.reward_fn(eq0, equity, sums.slippage, liquidated)
        turnover = sums.traded / eq0
        if self.config.turnover_penalty:
            reward = reward - self.config.turnover_penalty * turnover
        if self.config.reward_scale != 1.0:
            reward = reward * self.config.reward_scale
        info = {
            "equity": equity,
            "cash": cash,
            "fees": fees,
            "slippage": sums.slippage,
            "funding": funding,
            "turnover": turnover,
            "liquidated": liquidated,
            "liquidation_fee": liquidation_fee,
            "weights": self.portfolio.weights,
            "unrealized_pnl": terms.unrealized,
            "asset_realized": terms.realized,
            "asset_fees": self._fee_col * terms.traded,
            "asset_slippage": terms.slippage,
            "asset_funding": asset_funding,
        }
        return reward, liquidated, info

    def decide(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One decision: ``step(actions)``, then ``hold(decision_interval - 1)``. Returns the
        summed reward, whether the account was liquidated and the info of the span (flows
        summed, states of its last bar).

        An account liquidated inside the span holds (flat) for the rest of it; its reward and
        flows stop at the liquidation bar."""
        first = self.step(actions)
        if self.interval == 1:
            return first
        reward, liquidated, info = first
        with np.errstate(divide="ignore", invalid="ignore"):  # a liquidated equity of 0
            bar_reward, bar_liquidated, bars = self.hold(self.interval - 1)
        # alive before each held bar: not liquidated at the decision nor at an earlier bar
        before = np.logical_or.accumulate(bar_liquidated, axis=0)
        alive = ~(liquidated | np.vstack([np.zeros_like(liquidated)[None], before[:-1]]))
        reward = reward + np.add.reduce(np.where(alive, bar_reward, 0.0), 0)
        info = dict(info)
        for key in _SUMMED:
            flow = bars[key]
            mask = alive if flow.ndim == 2 else alive[..., None]
            info[key] = info[key] + np.add.reduce(np.where(mask, flow, 0.0), 0)
        for key in _LAST:
            info[key] = bars[key][-1]
        liquidated = liquidated | np.logical_or.reduce(bar_liquidated & alive, 0)
        info["liquidated"] = liquidated
        return reward, liquidated, info

    def hold(self, bars: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every account ``bars`` bars placing no order, in one set of numpy operations
        over the whole span; returns the reward and liquidation flags (bars, B) and the info
        arrays of ``step``, one row per bar (bars, B) or (bars, B, N).

        The same accounting as ``bars`` calls of ``step(actions, hold=everything)``: positions,
        entry prices and cash stay as they are except for funding; margin is checked on each
        bar's path to its adverse extreme, and an account that breaches it is liquidated on its
        first such bar and stays flat for the rest of the span.
        """
        if bars < 1:
            raise ValueError(f"hold: bars must be >= 1, got {bars}")
        k, b, n = bars, self.n_envs, self.n_assets
        packed = self._gather(self.t[None, :] + np.arange(1, k + 1)[:, None])  # (k, B, C, N)
        bar = Bars.of(packed)
        qty, entry = self.qty, self.entry
        per_asset = np.zeros((N_TERMS, k, b, n))
        terms = AssetTerms._make(per_asset)  # traded, slippage and realized stay 0
        adverse = np.where(qty > _ZERO, bar.low, bar.high)
        mm_rate, mm_cum = self.table.lookup(qty * bar.open)
        _surplus_at_adverse(qty, entry, adverse, mm_rate, mm_cum, terms.surplus_at_adverse)
        self._mark(terms, qty, entry, bar.mark, mm_rate, mm_cum)
        sums = AssetTerms._make(np.add.reduce(per_asset, -1))  # (8, k, B)
        asset_funding = funding_cash_flow(qty, bar.mark, bar.funding_rate)
        funding = np.add.reduce(asset_funding, -1)
        # cash at each bar's margin check: funding settles after it, bar by bar
        cash = np.cumsum(np.concatenate([self.cash[None], funding]), 0)
        before_funding, cash = cash[:-1], cash[1:]
        breached = before_funding + sums.surplus_at_adverse < _ZERO
        liquidated = np.zeros((k, b), dtype=bool)
        liquidation_fee = np.zeros((k, b))
        accounts = np.flatnonzero(breached.any(0))
        if accounts.size:
            at = np.argmax(breached[:, accounts], 0)  # each account's first breach
            liquidated[at, accounts] = True
            rows = (at, accounts)
            left, liquidation_fee[rows] = self._close_out(
                before_funding[rows],
                qty[accounts],
                entry[accounts],
                bar.open[rows],
                adverse[rows],
                np.broadcast_to(mm_rate, adverse.shape)[rows],
                np.broadcast_to(mm_cum, adverse.shape)[rows],
            )
            flat = np.arange(k)[:, None] >= at  # (k, accounts): from the liquidation bar on
            cash[:, accounts] = np.where(flat, left, cash[:, accounts])
            per_asset[MARKED][:, :, accounts] *= ~flat[..., None]
            sums = AssetTerms._make(np.add.reduce(per_asset, -1))
            asset_funding = asset_funding.copy()
            asset_funding[:, accounts] *= ~flat[..., None]
            funding = np.add.reduce(asset_funding, -1)
            kept = np.ones(b, dtype=bool)
            kept[accounts] = False
            self.qty, self.entry = qty * kept[:, None], entry * kept[:, None]
            self.entry_basis = self.entry_basis * kept[:, None]
        equity = cash + sums.unrealized
        weights = terms.notional / np.maximum(equity, self._min_equity)[..., None]

        reward = np.empty((k, b))
        previous, no_cost = self.equity, np.zeros(b)
        for j in range(k):
            reward[j] = self.reward_fn(previous, equity[j], no_cost, liquidated[j])
            previous = equity[j]
        if self.config.reward_scale != 1.0:
            reward = reward * self.config.reward_scale

        self.cash, self.equity = cash[-1], equity[-1]
        self.t = self.t + k
        self.steps = self.steps + k
        self._now_packed = packed[-1]
        self._now = Bars.of(self._now_packed)
        last = AssetTerms._make(per_asset[:, -1])
        self.portfolio = self._portfolio(self._now, last, AssetTerms._make(np.add.reduce(last, -1)))
        nothing = np.zeros((k, b))
        info = {
            "equity": equity,
            "cash": cash,
            "fees": nothing,
            "slippage": nothing,
            "funding": funding,
            "turnover": nothing,
            "liquidated": liquidated,
            "liquidation_fee": liquidation_fee,
            "weights": weights,
            "unrealized_pnl": terms.unrealized,
            "asset_realized": terms.realized,
            "asset_fees": terms.traded,
            "asset_slippage": terms.slippage,
            "asset_funding": asset_funding,
        }
        return reward, liquidated, info

    def _gather(self, t: np.ndarray) -> np.ndarray:
        """Packed bars t, (B, columns, N) for t (B,) or (k, B, columns, N) for a span's t (k, B);
        funding shifted and noisy, basis noisy if randomized."""
        if self.n_envs == 1 and not self.randomized:  # a slice is cheaper than a gather
            first = t.flat[0]
            if t.ndim == 1:
                return self.packed[first : first + 1]
            return self.packed[first : first + len(t), None]
        packed = self.packed[t]
        if self.randomized:
            bar = Bars.of(packed)  # views: writing into them writes into ``packed``
            shifted = np.clip(t - self.shift, 0, self.market.n_bars - 1)
            bar.funding_rate[...] = self.series.funding_rate[shifted]
            bar.hours_to_funding[...] = self.series.hours_to_funding[shifted]
            k = t - self.t + self.steps  # episode step of bar t
            if self.funding_noise is not None:
                noise = self.funding_noise[self._rows, k]
                rate = bar.funding_rate
                rate += np.where(rate != 0, noise, 0.0)
            if self.basis_noise is not None:
                basis = bar.basis
                basis += self.basis_noise[self._rows, k]
        return packed

    def _targets(self, actions: np.ndarray, now: Bars, t: np.ndarray) -> np.ndarray:
        """Target quantities decided at the close of bar ``t`` (phase 1)."""
        cfg, q = self.config, self.qty
        eq_col = self.equity[:, None]
        w = target_weights(actions, cfg)
        qty = w * eq_col / now.close
        if cfg.no_trade_band > 0:
            keep = np.abs(w - q * now.close / eq_col) < cfg.no_trade_band
            qty = np.where(keep, q, qty)
        if self.tradable is not None:  # no new order decided on carried-forward data
            qty = np.where(self.tradable[t], qty, q)
        return qty

    def _fill(self, qty: np.ndarray, now: Bars, bar: Bars, terms: AssetTerms) -> Fill:
        """Fill at the open of bar t+1 and its margin terms (phases 2 and 3).

        Writes ``terms.traded``, ``slippage``, ``realized`` and ``surplus_at_adverse``.
        """
        cfg, q, entry0, open1 = self.config, self.qty, self.entry, bar.open
        dq = qty - q
        traded = np.abs(dq * open1, out=terms.traded)
        slippage = np.multiply(
            traded, cfg.slippage.rate(traded, bar.quote_volume), out=terms.slippage
        )
        if self.slip_randomized:  # a multiplier of 1 changes nothing
            slippage *= self.slip_mult
        entry, entry_basis = trade_positions(
            q, dq, qty, entry0, self.entry_basis, open1, now.basis, terms.realized
        )

        # cross margin from the open to each position's adverse extreme (tier fixed per bar)
        adverse = np.where(qty > _ZERO, bar.low, bar.high)
        mm_rate, mm_cum = self.table.lookup(qty * open1)  # flat assets: tier 0, cum 0
        _surplus_at_adverse(qty, entry, adverse, mm_rate, mm_cum, terms.surplus_at_adverse)
        return Fill(qty, entry, entry_basis, adverse, mm_rate, mm_cum)

    def _liquidate(
        self,
        fill: Fill,
        cash: np.ndarray,
        liquidated: np.ndarray,
        bar: Bars,
        terms: AssetTerms,
    ) -> tuple[Fill, np.ndarray, np.ndarray]:
        """Close the positions of ``liquidated`` accounts where the path crosses maintenance.

        Returns the flattened fill, cash after the liquidation and the liquidation fee (B,);
        rewrites the marked rows of ``terms``.
        """
        qty, entry, adverse = fill.qty, fill.entry, fill.adverse
        rows = np.flatnonzero(liquidated)
        shape = qty.shape
        left, fee = self._close_out(
            cash[rows],
            qty[rows],
            entry[rows],
            bar.open[rows],
            adverse[rows],
            np.broadcast_to(fill.mm_rate, shape)[rows],
            np.broadcast_to(fill.mm_cum, shape)[rows],
        )
        cash = cash.copy()
        cash[rows] = left
        liquidation_fee = np.zeros(self.n_envs)
        liquidation_fee[rows] = fee
        kept = ~liquidated[:, None]
        fill = Fill(
            qty * kept,
            entry * kept,
            fill.entry_basis * kept,
            adverse,
            fill.mm_rate,
            fill.mm_cum * kept,
        )
        self._mark(terms, fill.qty, fill.entry, bar.mark, fill.mm_rate, fill.mm_cum)
        return fill, cash, liquidation_fee

    def _close_out(
        self,
        cash: np.ndarray,
        qty: np.ndarray,
        entry: np.ndarray,
        open1: np.ndarray,
        adverse: np.ndarray,
        mm_rate: np.ndarray,
        mm_cum: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Liquidate accounts (rows): every position closes where the path from ``open1`` to
        ``adverse`` crosses maintenance. Returns the cash left (never below 0) and the fee."""
        lam = liquidation_fraction(cash, qty, entry, open1, adverse, mm_rate, mm_cum)
        p_liq = open1 + lam[:, None] * (adverse - open1)
        pnl = (qty * (p_liq - entry)).sum(-1)
        fee = self.config.margin.liquidation_fee_rate * (np.abs(qty) * p_liq).sum(-1)
        return np.maximum(cash + pnl - fee, 0.0), fee

    def _settle_funding(
        self, cash: np.ndarray, qty: np.ndarray, bar: Bars
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cash after the funding settlement at the close of bar t+1, the funding (B,) and its
        per-asset cash flows (B, N)."""
        rate = bar.funding_rate
        if not np.count_nonzero(rate):  # most bars have no settlement
            return cash, np.zeros(self.n_envs), self._no_funding
        per_asset = funding_cash_flow(qty, bar.mark, rate)
        funding = np.add.reduce(per_asset, -1)
        return cash + funding, funding, per_asset

    @staticmethod
    def _mark(
        terms: AssetTerms,
        qty: np.ndarray,
        entry: np.ndarray,
        mark: np.ndarray,
        mm_rate: np.ndarray,
        mm_cum: np.ndarray,
    ) -> None:
        """Write the positions at ``mark`` to ``terms``: notional, unrealized, gross, MM."""
        notional = np.multiply(qty, mark, out=terms.notional)
        np.multiply(qty, mark - entry, out=terms.unrealized)
        gross = np.abs(notional, out=terms.gross)
        np.subtract(gross * mm_rate, mm_cum, out=terms.maintenance)

    def _marked_portfolio(self, bar: Bars) -> PortfolioState:
        """Observed account state at the marks of ``bar``."""
        per_asset = np.zeros((N_TERMS, self.n_envs, self.n_assets))
        terms = AssetTerms._make(per_asset)
        self._mark(terms, self.qty, self.entry, bar.mark, *self.table.lookup(self.qty * bar.mark))
        return self._portfolio(bar, terms, AssetTerms._make(np.add.reduce(per_asset, -1)))

    def _portfolio(self, bar: Bars, terms: AssetTerms, sums: AssetTerms) -> PortfolioState:
        """Observed account state from the marked ``terms`` of the current positions."""
        eq = np.maximum(self.equity, self._min_equity)
        eq_col = eq[:, None]
        mm = sums.maintenance
        # flat: mm = 0 and gross -> 1e-12, so the distance saturates at 1
        dist = np.minimum(np.maximum((eq - mm) / np.maximum(sums.gross, _TINY), _ZERO), _ONE)
        # positional: the fields in declaration order (keywords cost a little per step)
        return PortfolioState(
            terms.notional / eq_col,  # weights
            terms.unrealized / eq_col,  # unrealized_pnl / equity
            self.entry_basis,
            eq / self._initial_equity,  # equity_ratio
            mm / eq,  # margin_ratio
            dist,  # distance_to_liquidation
            bar.hours_to_funding,
        )
