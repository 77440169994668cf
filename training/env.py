"""Perpetual-futures portfolio MDP: a batched numpy simulator and its single-env gym wrapper.

Timing of one step (decision at the close of bar t, see docs/environment.md):

1. the action maps to target weights; target quantities are sized with equity at mark[t] and
   close[t] (both known), and filled at open[t+1] with fees and slippage;
2. the account is checked against maintenance margin on the path from open[t+1] to each
   position's adverse extreme (low for longs, high for shorts) and liquidated if it breaches;
3. at the close of bar t+1 positions are marked at mark[t+1] and funding settles if due.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from training.actions import target_weights
from training.costs import FeeModel, SlippageModel, funding_cash_flow
from training.margin import MarginModel, MarginTable, liquidation_fraction
from training.market import MarketData
from training.observation import FeatureNormalizer, ObservationBuilder, PortfolioState
from training.rewards import DelayedReward, PnLReward, SortinoReward

REWARDS = ("pnl", "sortino", "delayed")


@dataclass(frozen=True)
class RandomizationConfig:
    """Per-episode domain randomization; everything is off by default."""

    basis_noise_std: float = 0.0
    """Std of Gaussian noise added to the basis series (fraction), per bar and asset."""
    funding_noise_std: float = 0.0
    """Std of Gaussian noise added to the funding rate at each settlement."""
    funding_shift_max_bars: int = 0
    """Settlement schedule (rates and hours-to-funding) shifted by s ~ U{-m..m} bars."""
    fee_mult_range: tuple[float, float] = (1.0, 1.0)
    """Fee multiplier drawn uniformly per episode."""
    slippage_mult_range: tuple[float, float] = (1.0, 1.0)
    """Slippage multiplier drawn uniformly per episode."""


@dataclass(frozen=True)
class EnvConfig:
    """Configuration of the trading environment (single and batched)."""

    window: int = 32
    """K, bars of feature history in each observation."""
    max_leverage: float = 3.0
    """L: an action of +-1 targets +-L x equity notional in that asset."""
    gross_leverage_cap: float = 3.0
    """Cap on sum_i |w_i|; larger targets are scaled down proportionally."""
    no_trade_band: float = 0.0
    """Keep an asset's position when |target weight - current weight| is below this."""
    episode_length: int | None = 256
    """Decisions per episode (then truncated); None = from the first possible bar to the end."""
    random_start: bool = True
    """Draw the first decision bar uniformly inside [start, stop) (ignored if length is None)."""
    initial_equity: float = 10_000.0
    """Starting account equity in quote currency (USDT)."""
    fees: FeeModel = field(default_factory=FeeModel)
    """Exchange fee model."""
    slippage: SlippageModel = field(default_factory=SlippageModel)
    """Half-spread + impact slippage model."""
    margin: MarginModel = field(default_factory=MarginModel)
    """Maintenance margin tiers and liquidation fee."""
    reward: str = "pnl"
    """One of "pnl", "sortino", "delayed"."""
    alpha: float = 0.0
    """Extra penalty per unit of slippage / equity (slippage is already inside dEquity)."""
    beta: float = 1.0
    """Penalty on the step that ends in liquidation."""
    delay_k: int = 24
    """k for the delayed reward: bars between a decision and its delayed credit."""
    delay_weight: float = 1.0
    """Weight of the delayed term in the delayed reward."""
    sortino_eta: float = 0.01
    """EMA rate of the differential Sortino reward."""
    sortino_init_dd: float = 0.01
    """Initial downside deviation of the differential Sortino reward."""
    reward_clip: float = 10.0
    """Clip of the differential Sortino term."""
    obs_clip: float = 10.0
    """Every observation entry is clipped to [-obs_clip, obs_clip]."""
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    """Domain randomization knobs."""

    def __post_init__(self) -> None:
        if self.reward not in REWARDS:
            raise ValueError(f"reward: {self.reward!r} not in {REWARDS}")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError("episode_length: must be >= 1 or None")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serializable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnvConfig:
        """Inverse of ``to_dict``; nested sections may be dicts or missing."""
        nested = {
            "fees": FeeModel,
            "slippage": SlippageModel,
            "margin": MarginModel,
            "randomization": RandomizationConfig,
        }
        kwargs = dict(d)
        for key, kind in nested.items():
            if isinstance(kwargs.get(key), dict):
                sub = {
                    k: tuple(map(_tuple, v)) if isinstance(v, list) else v
                    for k, v in kwargs[key].items()
                }
                kwargs[key] = kind(**sub)
        return cls(**kwargs)


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _draw_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Uniform draw in ``bounds``; a degenerate range draws nothing (keeps streams aligned)."""
    lo, hi = bounds
    return lo if lo == hi else float(rng.uniform(lo, hi))


# Packed per-bar market rows: one fancy index gathers everything a step needs.
_OPEN, _HIGH, _LOW, _CLOSE, _MARK, _QVOL, _FUND, _HOURS, _BASIS = range(9)


def _pack(market: MarketData) -> np.ndarray:
    return np.stack(
        [
            market.open,
            market.high,
            market.low,
            market.close,
            market.mark,
            market.volume * market.open,
            market.funding_rate,
            market.hours_to_funding,
            market.basis,
        ],
        axis=1,
    ).astype(np.float64)


# 0-d float64 operands for the step's hot path: numpy converts a Python float operand on every
# call, a noticeable share of an operation on (1, N) arrays. Same dtype, same results.
_ZERO, _ONE, _TINY = np.array(0.0), np.array(1.0), np.array(1e-12)
_BAR = np.array(1, dtype=np.int64)  # one bar / one step


def _fields(state: PortfolioState) -> list[Any]:
    """Field values of a ``PortfolioState`` in declaration order (no copies)."""
    return [getattr(state, f.name) for f in dataclasses.fields(state)]


def _sum(x: np.ndarray) -> np.ndarray:
    """Sum over assets (last axis)."""
    return np.add.reduce(x, -1)


def make_reward(config: EnvConfig, n_envs: int) -> PnLReward:
    """Reward function of ``config`` for ``n_envs`` accounts."""
    if config.reward == "sortino":
        return SortinoReward(
            n_envs,
            config.alpha,
            config.beta,
            config.sortino_eta,
            config.sortino_init_dd,
            config.reward_clip,
        )
    if config.reward == "delayed":
        return DelayedReward(n_envs, config.alpha, config.beta, config.delay_k, config.delay_weight)
    return PnLReward(n_envs, config.alpha, config.beta)


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
        if available < 1 or (config.episode_length or 0) > available:
            raise ValueError(
                f"bars [{start}, {stop}) leave {available} steps after a window of "
                f"{config.window}; episode_length={config.episode_length}"
            )
        self.market, self.config, self.n_envs = market, config, n_envs
        self.length = config.episode_length or available
        self.n_assets = n = market.n_assets
        if normalizer is None:
            normalizer = FeatureNormalizer.fit(market.features[start:stop])
        self.builder = ObservationBuilder(
            market.feature_names, n, config.window, normalizer, config.obs_clip
        )
        self.normalized = self.builder.normalize(market.features)
        self.bars = _pack(market)
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
        self.slip_mult = np.ones((b, 1))
        self.shift = np.zeros(b, dtype=np.int64)
        noise_shape = (b, self.length + 1, n)  # indexed by episode step of the bar
        self.basis_noise = np.zeros(noise_shape) if r.basis_noise_std > 0 else None
        self.funding_noise = np.zeros(noise_shape) if r.funding_noise_std > 0 else None
        self._rows = np.arange(b)
        self._initial_equity = np.array(config.initial_equity)
        self._min_equity = np.array(1e-9 * config.initial_equity)
        self._now = self.bars[self.t]
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
        now = self._gather(self.t)
        fresh = self._marked_portfolio(now)
        if mask is not None:
            col = mask[:, None]
            now = np.where(col[..., None], now, self._now)
            fresh = PortfolioState(
                *(
                    np.where(col if np.ndim(v) == 2 else mask, v, o)
                    for v, o in zip(_fields(fresh), _fields(self.portfolio), strict=True)
                )
            )
        self._now, self.portfolio = now, fresh

    def _marked_portfolio(self, rows: np.ndarray) -> PortfolioState:
        """Observed account state at the marks of packed bar ``rows``."""
        mark = rows[:, _MARK]
        marked = np.empty((4, self.n_envs, self.n_assets))
        self._mark(marked, self.qty, self.entry, mark, *self.table.lookup(self.qty * mark))
        return self._portfolio(rows, marked, np.add.reduce(marked, -1))

    def observations(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Observations at the current decision bars, of all accounts (B, D) or of ``idx``."""
        if idx is None:
            return self.builder.build_batch(self.normalized, self.t, self.portfolio)
        rows = PortfolioState(*(v[idx] if np.ndim(v) else v for v in _fields(self.portfolio)))
        return self.builder.build_batch(self.normalized, self.t[idx], rows)

    # -------------------------------------------------------------------- step
    def _gather(self, t: np.ndarray) -> np.ndarray:
        """(B, 9, N) packed market rows at bars t, with shifted/noisy funding if randomized."""
        if self.n_envs == 1 and not self.randomized:  # a slice is cheaper than a gather
            return self.bars[t[0] : t[0] + 1]
        rows = self.bars[t]
        if self.randomized:
            shifted = np.clip(t - self.shift, 0, self.market.n_bars - 1)
            rows[:, _FUND] = self.bars[shifted, _FUND]
            rows[:, _HOURS] = self.bars[shifted, _HOURS]
            k = t - self.t + self.steps  # episode step of bar t
            if self.funding_noise is not None:
                noise = self.funding_noise[self._rows, k]
                rows[:, _FUND] += np.where(rows[:, _FUND] != 0, noise, 0.0)
            if self.basis_noise is not None:
                rows[:, _BASIS] += self.basis_noise[self._rows, k]
        return rows

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advance every account one bar; returns (reward, terminated, info arrays)."""
        cfg = self.config
        now, t1 = self._now, self.t + _BAR
        nxt = self._gather(t1)
        close_t, basis_t = now[:, _CLOSE], now[:, _BASIS]
        open1, mark1 = nxt[:, _OPEN], nxt[:, _MARK]
        eq0 = self.equity
        eq_col = eq0[:, None]
        q, entry0 = self.qty, self.entry

        # 1. action -> target weights -> target quantity (sized with known prices)
        w = target_weights(actions, cfg)
        qty = w * eq_col / close_t
        if cfg.no_trade_band > 0:
            keep = np.abs(w - q * close_t / eq_col) < cfg.no_trade_band
            qty = np.where(keep, q, qty)

        # 2. fill at the next open: fees, slippage, realized PnL and average entry price.
        # Per-asset terms are written to rows of one array, summed over assets in one call:
        # 0-3 fill and margin terms, 4-7 the positions marked at the close (``_mark``).
        per = np.empty((8, self.n_envs, self.n_assets))
        dq = qty - q
        traded = np.abs(dq * open1, out=per[0])
        slip_assets = np.multiply(traded, cfg.slippage.rate(traded, nxt[:, _QVOL]), out=per[1])
        if self.slip_randomized:  # a multiplier of 1 changes nothing
            slip_assets *= self.slip_mult
        closed = np.minimum(np.maximum(-dq, np.minimum(q, _ZERO)), np.maximum(q, _ZERO))
        opened = dq + closed
        remaining = q - closed
        np.multiply(closed, open1 - entry0, out=per[2])
        denom = np.where(qty != _ZERO, qty, _ONE)  # flat: remaining = opened = 0
        entry = (remaining * entry0 + opened * open1) / denom
        ebasis = (remaining * self.entry_basis + opened * basis_t) / denom

        # 3. cross margin from the open to each position's adverse extreme (tier fixed per bar)
        adverse = np.where(qty > _ZERO, nxt[:, _LOW], nxt[:, _HIGH])
        mm_rate, mm_cum = self.table.lookup(qty * open1)  # flat assets: tier 0, cum 0
        abs_qty = np.abs(qty)
        np.add(qty * (adverse - entry) - abs_qty * adverse * mm_rate, mm_cum, out=per[3])
        marked = per[4:]
        self._mark(marked, qty, entry, mark1, mm_rate, mm_cum)
        sums = np.add.reduce(per, -1)
        traded_sum, slip, realized, g_assets = sums[:4]
        fees = self.fee_rate * traded_sum
        cash = self.cash + realized - fees - slip
        liquidated = cash + g_assets < _ZERO  # equity - MM is lowest at the adverse extremes
        liq_fee = np.zeros(self.n_envs)
        if np.count_nonzero(liquidated):
            lam = liquidation_fraction(cash, qty, entry, open1, adverse, mm_rate, mm_cum)
            lam_col = np.where(liquidated, lam, 0.0)[:, None]
            p_liq = open1 + lam_col * (adverse - open1)
            pnl = (qty * (p_liq - entry)).sum(-1)
            fee = cfg.margin.liquidation_fee_rate * (abs_qty * p_liq).sum(-1)
            liq_fee = np.where(liquidated, fee, 0.0)
            cash = np.where(liquidated, np.maximum(cash + pnl - fee, 0.0), cash)
            flat = ~liquidated[:, None]
            qty, entry, ebasis, mm_cum = qty * flat, entry * flat, ebasis * flat, mm_cum * flat
            self._mark(marked, qty, entry, mark1, mm_rate, mm_cum)
            sums[4:] = np.add.reduce(marked, -1)

        # 4. close of bar t+1: funding settlement, mark to market
        rate = nxt[:, _FUND]
        if np.count_nonzero(rate):  # most bars have no settlement
            funding = _sum(funding_cash_flow(qty, mark1, rate))
            cash = cash + funding
        else:
            funding = np.zeros(self.n_envs)
        self.cash, self.qty, self.entry, self.entry_basis = cash, qty, entry, ebasis
        equity = cash + sums[5]
        self.equity = equity
        self.t = t1
        self.steps = self.steps + _BAR
        self._now = nxt
        self.portfolio = self._portfolio(nxt, marked, sums[4:])
        reward = self.reward_fn(eq0, equity, slip, liquidated)
        info = {
            "equity": equity,
            "cash": cash,
            "fees": fees,
            "slippage": slip,
            "funding": funding,
            "turnover": traded_sum / eq0,
            "liquidated": liquidated,
            "liquidation_fee": liq_fee,
            "weights": self.portfolio.weights,
            "unrealized_pnl": marked[1],
        }
        return reward, liquidated, info

    @staticmethod
    def _mark(
        out: np.ndarray,
        qty: np.ndarray,
        entry: np.ndarray,
        mark: np.ndarray,
        mm_rate: np.ndarray,
        mm_cum: np.ndarray,
    ) -> None:
        """Write positions at ``mark`` to ``out`` (4, B, N): notional, upnl, |notional|, MM."""
        notional = np.multiply(qty, mark, out=out[0])
        np.multiply(qty, mark - entry, out=out[1])
        size = np.abs(notional, out=out[2])
        np.subtract(size * mm_rate, mm_cum, out=out[3])

    def _portfolio(self, rows: np.ndarray, marked: np.ndarray, sums: np.ndarray) -> PortfolioState:
        """Observed account state from the ``_mark`` arrays of the current positions."""
        eq = np.maximum(self.equity, self._min_equity)
        weights, upnl = marked[:2] / eq[:, None]
        gross, mm = sums[2:]
        # flat: mm = 0 and gross -> 1e-12, so the distance saturates at 1
        dist = np.minimum(np.maximum((eq - mm) / np.maximum(gross, _TINY), _ZERO), _ONE)
        # positional: the fields in declaration order (keywords cost a little per step)
        return PortfolioState(
            weights,
            upnl,  # unrealized_pnl / equity
            self.entry_basis,
            eq / self._initial_equity,  # equity_ratio
            mm / eq,  # margin_ratio
            dist,  # distance_to_liquidation
            rows[:, _HOURS],  # hours_to_funding
        )


class PerpPortfolioEnv(gym.Env):
    """Single-account gymnasium env over bars ``[start, stop)`` of ``market``.

    Observation: see ``training.observation``. Action: ``Box(-1, 1, (N,))`` -> target leverage
    per asset in [-L, L]. Reward: see ``training.rewards``. ``info`` carries per-step equity,
    fees, funding, slippage, turnover, liquidation flag, weights and the bar timestamp.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        market: MarketData,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        self.config = config or EnvConfig()
        self.sim = BatchedSimulator(market, self.config, 1, normalizer, start, stop)
        self.market = market
        self.builder = self.sim.builder
        self.observation_space = self.builder.observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (market.n_assets,), np.float32)

    @property
    def normalizer(self) -> FeatureNormalizer:
        """Feature normalizer (fitted on the training window unless given)."""
        return self.builder.normalizer

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the start bar and randomization come from ``self.np_random``."""
        super().reset(seed=seed)
        self.sim.reset_env(0, self.np_random)
        self.sim.refresh()
        t = int(self.sim.t[0])
        info = {
            "equity": float(self.sim.equity[0]),
            "timestamp": self.market.timestamps[t],
            "bar": t,
        }
        return self._obs(), info

    def _obs(self) -> np.ndarray:
        sim = self.sim
        return sim.builder.build_batch(sim.normalized, sim.t, sim.portfolio)[0]

    def portfolio_state(self) -> PortfolioState:
        """Current account state as the observation sees it (unbatched)."""
        return PortfolioState(*(np.asarray(v)[0] for v in _fields(self.sim.portfolio)))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide at the close of the current bar, simulate the next bar."""
        sim = self.sim
        reward, terminated, arrays = sim.step(np.asarray(action, dtype=np.float64)[None])
        t = int(sim.t[0])
        info = {k: v[0] for k, v in arrays.items()}  # np.float64 is a float
        info["liquidated"] = bool(info["liquidated"])
        info["timestamp"] = self.market.timestamps[t]
        info["bar"] = t
        terminated = bool(terminated[0])
        truncated = not terminated and int(sim.steps[0]) >= sim.length
        return self._obs(), float(reward[0]), terminated, truncated, info
