"""Out-of-sample evaluation: a candidate against every baseline and the champion, on one window.

Every contender is replayed by ``evaluation.engine.backtest`` over exactly the same bars; the
metrics come from daily returns (``evaluation.metrics``), the statistics from a stationary block
bootstrap and the deflated Sharpe ratio (``evaluation.statistics``), and the result carries the
``GateEvidence`` the promotion gate decides on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from evaluation.engine import PolicyActor, ScheduledWeights, backtest
from evaluation.gate import GateEvidence
from evaluation.ledger import Ledger
from evaluation.metrics import PerformanceMetrics, compute_metrics, daily_returns
from evaluation.statistics import (
    ConfidenceInterval,
    bootstrap_sharpe_ci,
    bootstrap_sharpe_difference_ci,
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
)
from evaluation.strategies import BASELINES, baseline_env
from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import FeatureNormalizer
from training.policy_model import PolicyModel

CANDIDATE = "candidate"
CHAMPION = "champion"


@dataclass(frozen=True)
class Comparison:
    """Metrics and statistics of ledgers over the same bars: the candidate (``CANDIDATE``)
    against baselines (and a champion)."""

    metrics: dict[str, PerformanceMetrics]
    """Metrics of each ledger."""
    sharpe_ci: dict[str, ConfidenceInterval]
    """Bootstrap confidence interval of each ledger's Sharpe ratio (daily returns)."""
    best_baseline: str
    """The baseline with the highest Sharpe ratio (a NaN Sharpe counts as the lowest)."""
    sharpe_difference_ci: ConfidenceInterval
    """Bootstrap interval of the candidate's Sharpe minus the best baseline's (paired days)."""
    probabilistic_sharpe: float
    """Probability that the candidate's true Sharpe ratio exceeds 0."""
    deflated_sharpe: float
    """The probabilistic Sharpe ratio against the expected maximum Sharpe of ``n_trials``."""
    n_trials: int
    """Configurations and versions evaluated on these data (the deflated ratio's N)."""


def compare(
    ledgers: Mapping[str, Ledger],
    baselines: Sequence[str],
    *,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
    n_resamples: int = 1_000,
    seed: int = 0,
) -> Comparison:
    """Metrics of every ledger, bootstrap intervals of their Sharpe ratios, and the candidate's
    difference against the best of ``baselines``, probabilistic and deflated Sharpe ratios."""
    if not baselines:
        raise ValueError("compare: no baselines to compare the candidate with")
    metrics = {name: compute_metrics(ledger) for name, ledger in ledgers.items()}
    returns = {name: daily_returns(ledger) for name, ledger in ledgers.items()}
    sharpe_ci = {
        name: bootstrap_sharpe_ci(r.to_numpy(), n_resamples=n_resamples, seed=seed)
        for name, r in returns.items()
    }
    best = max(baselines, key=lambda n: _finite_or(metrics[n].sharpe, -np.inf))
    candidate = returns[CANDIDATE].to_numpy()
    return Comparison(
        metrics=metrics,
        sharpe_ci=sharpe_ci,
        best_baseline=best,
        sharpe_difference_ci=bootstrap_sharpe_difference_ci(
            returns[CANDIDATE], returns[best], n_resamples=n_resamples, seed=seed
        ),
        probabilistic_sharpe=probabilistic_sharpe_ratio(candidate),
        deflated_sharpe=deflated_sharpe_ratio(candidate, n_trials, trial_sharpe_variance),
        n_trials=n_trials,
    )


@dataclass(frozen=True)
class Evaluation:
    """Ledgers, metrics and statistics of every contender over the same out-of-sample bars."""

    first_oos_timestamp: np.datetime64
    """Open time of the first out-of-sample bar (its return is the first one earned)."""
    ledgers: dict[str, Ledger]
    """Per-bar accounting of each contender: the candidate, the baselines, the champion."""
    comparison: Comparison
    """Metrics and statistics of the ledgers."""
    evidence: GateEvidence
    """What the promotion gate decides on."""

    @property
    def metrics(self) -> dict[str, PerformanceMetrics]:
        """Metrics of each contender."""
        return self.comparison.metrics


def policy_actor(name: str, policy: PolicyModel) -> PolicyActor:
    """A registered policy as an engine strategy: deterministic actions for a batch of rows,
    on onnxruntime when the version carries its ONNX export (``PolicyModel.act``)."""
    return PolicyActor(name, policy.act)


def evaluate_strategies(
    market: MarketData,
    env_config: EnvConfig,
    normalizer: FeatureNormalizer,
    first_bar: int,
    candidate: PolicyActor | ScheduledWeights,
    *,
    champion: Ledger | None = None,
    champion_version: str | None = None,
    baselines: Mapping[str, Callable[[MarketData], ScheduledWeights]] = BASELINES,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
    n_resamples: int = 1_000,
    seed: int = 0,
) -> Evaluation:
    """Backtest ``candidate`` (named ``candidate``) and every baseline from ``first_bar``, add
    the champion's ledger (backtested apart, with its own observation builder), and compute the
    metrics, the bootstrap intervals and the gate's evidence. The baselines run in one engine run
    under ``baseline_env(env_config)``: the same accounting, their own trading rule."""
    if candidate.name != CANDIDATE:
        raise ValueError(
            f"the candidate strategy must be named {CANDIDATE!r}, not {candidate.name!r}"
        )
    ledgers = backtest(market, env_config, normalizer, [candidate], first_bar)
    scheduled = [make(market) for make in baselines.values()]
    ledgers |= backtest(market, baseline_env(env_config), None, scheduled, first_bar)
    candidate_ledger = ledgers[CANDIDATE]
    same_bars = champion is None or (
        champion.symbols == candidate_ledger.symbols
        and np.array_equal(champion.close_times, candidate_ledger.close_times)
    )
    if champion is not None:
        ledgers[CHAMPION] = champion
    result = compare(
        ledgers,
        list(baselines),
        n_trials=n_trials,
        trial_sharpe_variance=trial_sharpe_variance,
        n_resamples=n_resamples,
        seed=seed,
    )
    metrics = result.metrics
    evidence = GateEvidence(
        candidate=metrics[CANDIDATE],
        baselines={n: metrics[n] for n in baselines},
        champion=metrics.get(CHAMPION),
        champion_version=champion_version if champion is not None else None,
        champion_same_bars=same_bars,
        sharpe_difference_ci=(result.sharpe_difference_ci.low, result.sharpe_difference_ci.high),
        best_baseline=result.best_baseline,
        deflated_sharpe=result.deflated_sharpe,
        n_trials=n_trials,
    )
    return Evaluation(market.timestamps[first_bar], ledgers, result, evidence)


def champion_env(champion: EnvConfig, candidate: EnvConfig) -> EnvConfig:
    """The champion's own trading rules (window, leverage, band) with the candidate's cost and
    margin models and initial equity, so both are charged alike."""
    return replace(
        champion,
        fees=candidate.fees,
        slippage=candidate.slippage,
        margin=candidate.margin,
        initial_equity=candidate.initial_equity,
    )


def champion_ledger(
    champion: PolicyModel,
    market: MarketData,
    first_bar: int,
    stop: int | None = None,
    *,
    costs_of: EnvConfig | None = None,
) -> Ledger:
    """The champion replayed on ``market`` from ``first_bar`` to ``stop`` with its own spec's
    observation builder and trading rules (named ``champion``), charged with the cost models of
    ``costs_of`` (the candidate's environment) when given."""
    spec = champion.spec
    env = spec.env_config if costs_of is None else champion_env(spec.env_config, costs_of)
    ledgers = backtest(
        market,
        env,
        spec.builder.normalizer,
        [policy_actor(CHAMPION, champion)],
        first_bar,
        stop,
    )
    return ledgers[CHAMPION]


def _finite_or(value: float, default: float) -> float:
    return value if np.isfinite(value) else default
