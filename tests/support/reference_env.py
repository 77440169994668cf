"""Slow pandas reference of ``PerpPortfolioEnv`` (one DataFrame row per step, per-asset loops).

Written the way a first implementation usually is; used only by the benchmark (speed baseline)
and by tests (an independent re-implementation of the same logic). It supports the default
"pnl" reward without domain randomization.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import BASIS_SCALE, FUNDING_HOURS_SCALE, FeatureNormalizer

_FIELDS = ("open", "high", "low", "close", "mark", "volume", "funding_rate", "hours_to_funding")


class ReferencePerpEnv(gym.Env):
    """Same MDP as ``PerpPortfolioEnv`` (pnl reward, no randomization), in pandas."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        market: MarketData,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        self.config = cfg = config or EnvConfig()
        if cfg.reward != "pnl":
            raise ValueError("the reference env implements the pnl reward only")
        stop = market.n_bars if stop is None else stop
        self.symbols = list(market.symbols)
        self.frames = {
            name: pd.DataFrame(getattr(market, name), columns=self.symbols) for name in _FIELDS
        }
        self.frames["basis"] = pd.DataFrame(market.basis, columns=self.symbols)
        t, n, f = market.features.shape
        columns = pd.MultiIndex.from_product([self.symbols, market.feature_names])
        self.features = pd.DataFrame(market.features.reshape(t, n * f), columns=columns)
        normalizer = normalizer or FeatureNormalizer.fit(market.features[start:stop])
        self.mean = pd.Series(np.broadcast_to(normalizer.mean, (n, f)).ravel(), index=columns)
        self.std = pd.Series(np.broadcast_to(normalizer.std, (n, f)).ravel(), index=columns)
        self.first, self.last = start + cfg.window - 1, stop - 1
        self.length = cfg.episode_length or (self.last - self.first)
        self.tiers = {s: self._tiers(s) for s in self.symbols}
        self.timestamps = market.timestamps
        self.tradable = pd.DataFrame(market.tradable, columns=self.symbols)
        dim = cfg.window * n * f + 4 * n + 3
        self.observation_space = gym.spaces.Box(-cfg.obs_clip, cfg.obs_clip, (dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)

    def _tiers(self, symbol: str) -> list[tuple[float, float, float]]:
        m = self.config.margin
        tiers = m.major_tiers if symbol.upper().startswith(m.majors) else m.alt_tiers
        out, cum, prev = [], 0.0, 0.0
        for floor, rate in tiers:
            cum += floor * (rate - prev)
            out.append((floor, rate, cum))
            prev = rate
        return out

    def _tier(self, symbol: str, notional: float) -> tuple[float, float]:
        rate, cum = 0.0, 0.0
        for floor, r, c in self.tiers[symbol]:
            if abs(notional) >= floor:
                rate, cum = r, c
        return rate, cum

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (same draws as ``PerpPortfolioEnv``)."""
        super().reset(seed=seed)
        cfg = self.config
        if cfg.random_start and cfg.episode_length is not None:
            self.t = int(self.np_random.integers(self.first, self.last - self.length + 1))
        else:
            self.t = self.first
        self.steps = 0
        self.cash = self.equity = cfg.initial_equity
        self.pos = {s: {"qty": 0.0, "entry": 0.0, "basis": 0.0} for s in self.symbols}
        return self._observation(self._row(self.t)), {"equity": self.equity, "bar": self.t}

    def _row(self, t: int) -> dict[str, pd.Series]:
        return {name: frame.iloc[t] for name, frame in self.frames.items()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide at the close of bar t, fill at the open of t+1, settle at its close."""
        cfg = self.config
        now, nxt = self._row(self.t), self._row(self.t + 1)
        eq0 = self.equity
        w = np.clip(np.asarray(action, dtype=float), -1, 1) * cfg.max_leverage
        gross = float(np.abs(w).sum())
        if gross > cfg.gross_leverage_cap:
            w = w * cfg.gross_leverage_cap / gross
        fees = slip = traded_total = 0.0
        for i, s in enumerate(self.symbols):
            p = self.pos[s]
            target = w[i] * eq0 / now["close"][s]
            if abs(w[i] - p["qty"] * now["close"][s] / eq0) < cfg.no_trade_band:
                target = p["qty"]
            if not self.tradable.iloc[self.t][s]:  # no new order decided on carried data
                target = p["qty"]
            dq = target - p["qty"]
            price = nxt["open"][s]
            traded = abs(dq * price)
            fee = traded * cfg.fees.rate
            participation = traded / max(nxt["volume"][s] * price, 1e-12)
            sm = cfg.slippage
            impact = min(sm.impact_coef * participation**sm.impact_exponent, sm.max_impact)
            cost = traded * (sm.half_spread + impact)
            closing = dq * p["qty"] < 0
            closed = math.copysign(min(abs(dq), abs(p["qty"])), p["qty"]) if closing else 0.0
            self.cash += closed * (price - p["entry"]) - fee - cost
            remaining, opened = p["qty"] - closed, dq + closed
            if target != 0:
                p["entry"] = (remaining * p["entry"] + opened * price) / target
                p["basis"] = (remaining * p["basis"] + opened * now["basis"][s]) / target
            else:
                p["entry"] = p["basis"] = 0.0
            p["qty"] = target
            fees, slip, traded_total = fees + fee, slip + cost, traded_total + traded

        g0, g1, path = self.cash, self.cash, {}
        for s in self.symbols:
            p = self.pos[s]
            rate, cum = self._tier(s, p["qty"] * nxt["open"][s])  # tier fixed for the bar
            p["tier"] = (rate, cum)
            p0 = nxt["open"][s]
            p1 = nxt["low"][s] if p["qty"] > 0 else nxt["high"][s]
            path[s] = (p0, p1)
            g0 += p["qty"] * (p0 - p["entry"]) - (abs(p["qty"]) * p0 * rate - cum)
            g1 += p["qty"] * (p1 - p["entry"]) - (abs(p["qty"]) * p1 * rate - cum)
        liquidated, liq_fee = g1 < 0, 0.0
        if liquidated:
            lam = 0.0 if g0 < 0 else min(max(g0 / (g0 - g1), 0.0), 1.0)
            for s in self.symbols:
                p = self.pos[s]
                p0, p1 = path[s]
                p_liq = p0 + lam * (p1 - p0)
                self.cash += p["qty"] * (p_liq - p["entry"])
                liq_fee += cfg.margin.liquidation_fee_rate * abs(p["qty"]) * p_liq
                p.update(qty=0.0, entry=0.0, basis=0.0)
            self.cash = max(self.cash - liq_fee, 0.0)

        funding = 0.0
        for s in self.symbols:
            funding -= self.pos[s]["qty"] * nxt["mark"][s] * nxt["funding_rate"][s]
        self.cash += funding
        upnl = [p["qty"] * (nxt["mark"][s] - p["entry"]) for s, p in self.pos.items()]
        self.equity = self.cash + sum(upnl)
        self.t += 1
        self.steps += 1
        reward = (self.equity - eq0 - cfg.alpha * slip) / eq0 - cfg.beta * liquidated
        truncated = not liquidated and self.steps >= self.length
        info = {
            "equity": self.equity,
            "cash": self.cash,
            "fees": fees,
            "slippage": slip,
            "funding": funding,
            "turnover": traded_total / eq0,
            "liquidated": liquidated,
            "liquidation_fee": liq_fee,
            "bar": self.t,
            "timestamp": self.timestamps[self.t],
        }
        return self._observation(nxt), float(reward), liquidated, truncated, info

    def _observation(self, row: dict[str, pd.Series]) -> np.ndarray:
        cfg = self.config
        window = self.features.iloc[self.t - cfg.window + 1 : self.t + 1]
        z = ((window - self.mean) / self.std).fillna(0.0).clip(-cfg.obs_clip, cfg.obs_clip)
        eq = max(self.equity, 1e-9 * cfg.initial_equity)
        per_asset: dict[str, list[float]] = {"w": [], "u": [], "b": [], "h": []}
        mm = gross = 0.0
        for s, p in self.pos.items():
            notional = p["qty"] * row["mark"][s]
            rate, cum = p.get("tier") or self._tier(s, notional)
            mm += abs(notional) * rate - cum * (p["qty"] != 0)
            gross += abs(notional)
            per_asset["w"].append(notional / eq)
            per_asset["u"].append(p["qty"] * (row["mark"][s] - p["entry"]) / eq)
            per_asset["b"].append(p["basis"] * BASIS_SCALE)
            per_asset["h"].append(row["hours_to_funding"][s] / FUNDING_HOURS_SCALE)
        dist = min(max((eq - mm) / gross, 0.0), 1.0) if gross > 0 else 1.0
        state = [*per_asset["w"], *per_asset["u"], *per_asset["b"], *per_asset["h"]]
        state += [math.log(eq / cfg.initial_equity), mm / eq, dist]
        state = np.clip(state, -cfg.obs_clip, cfg.obs_clip)
        return np.concatenate([z.to_numpy(np.float32).ravel(), state]).astype(np.float32)
