"""Walk-forward evaluation: purged folds over the bars, one fresh policy per fold, stitched OOS.

A fold is ``train -> purge -> validation -> purge -> test`` over bar indices ``[start, stop)``;
with no validation bars it is ``train -> purge -> test``. The folds' test windows are consecutive
and cover the last bars of the data, so chaining the folds' test ledgers (``stitch``) gives one
out-of-sample curve where every bar was traded by a policy that never trained on it.

Purge. The first decision of a window is taken at the close of the bar before its start, on an
observation of the ``env.window`` bars before the start, and each of those bars' features reads
up to ``feature_lookback_bars(timeframe)`` bars further back. A purge of at least
``min_purge_bars(window, lookback)`` bars between two windows therefore keeps every raw bar that
a validation or test observation reads out of the windows before it: the policy is scored on
inputs it never trained on, and the window's warm-up observations come from the purge gap,
never from test bars.

Embargo. For folds ``i < j``, the ``embargo_bars`` bars right after fold ``i``'s test window,
``[test_i.stop, test_i.stop + embargo_bars)``, are never the first bars of fold ``j``'s train or
validation window: a window that would start inside them starts at ``test_i.stop +
embargo_bars`` instead (and is that much shorter). A window that spans them (an expanding train
window from bar 0) keeps them. In the forward walk a fold never trains or validates on bars
after its own test window, so its own out-of-sample claim rests on the purge alone; the embargo
never moves an expanding train start (bar 0). What it protects is a later fold's validation
score (and a rolling train window): neither begins on the bars whose observations and features
still read an earlier fold's last test bars, the bars the stitched OOS curve reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from evaluation.engine import PolicyActor, ScheduledWeights, Strategy, backtest
from evaluation.ledger import Ledger
from evaluation.metrics import compute_metrics
from evaluation.strategies import BASELINES, baseline_env
from ingestion.universe import timeframe as timeframe_of
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.market import MarketData
from training.onnx_export import onnx_policy
from training.train import TrainedPolicy, train_policy

FEATURE_WINDOW_BARS = 24
"""Longest feature window counted in bars (dbt vars ``basis_zscore_window``,
``volatility_window``, ``volume_zscore_window``, the longest ``return_horizons`` and
``basis_velocity_lags``: 24 each)."""
FUNDING_ZSCORE_SETTLEMENTS = 21
"""Funding settlements in the funding-rate z-score (dbt var ``funding_zscore_window``)."""
FUNDING_INTERVAL_HOURS = 8.0
"""Hours between funding settlements (the usual perpetual schedule, 00/08/16 UTC)."""

Window = tuple[int, int]
Baseline = Callable[[MarketData], ScheduledWeights]
MetricValues = dict[str, float | int | bool]


def feature_lookback_bars(timeframe: str) -> int:
    """Bars of history the longest feature of the mart reads at ``timeframe``.

    The larger of the bar-counted windows (24) and the funding z-score's 21 settlements of 8h
    in bars: 168 at 1h (the funding z-score), 1008 at 10m, 336 at 30m, 24 at 1d.
    """
    hours = timeframe_of(timeframe).hours
    funding_bars = math.ceil(FUNDING_ZSCORE_SETTLEMENTS * FUNDING_INTERVAL_HOURS / hours)
    return max(FEATURE_WINDOW_BARS, funding_bars)


def min_purge_bars(env_window: int, feature_window: int) -> int:
    """Smallest purge that keeps a window's inputs out of the window before it.

    The observation window plus the longest feature window: 32 + 168 = 200 bars at 1h.
    """
    return env_window + feature_window


DEFAULT_PURGE_BARS = min_purge_bars(EnvConfig().window, feature_lookback_bars("1h"))
"""200: the default observation window (32) plus the 1h feature lookback (168)."""


@dataclass(frozen=True)
class WalkForwardConfig:
    """How the bars are cut into walk-forward folds (all lengths in bars)."""

    n_folds: int = 4
    """Number of folds, hence of consecutive test windows."""
    scheme: Literal["expanding", "rolling"] = "expanding"
    """``expanding``: every train window starts at bar 0; ``rolling``: each has ``train_bars``."""
    test_fraction: float = 0.25
    """Trailing fraction of all bars the test windows cover together when ``test_bars`` is
    None: the last ``n_bars - round(n_bars * (1 - test_fraction))`` bars, split into
    ``n_folds`` windows whose lengths differ by at most one bar (the later ones are the
    longer)."""
    test_bars: int | None = None
    """Bars per test window; when set, the test windows cover the last ``n_folds * test_bars``
    bars and ``test_fraction`` is ignored."""
    validation_bars: int = 0
    """Bars of each fold's validation window (0: no validation window, train -> purge -> test)."""
    train_bars: int | None = None
    """Bars of each train window in the rolling scheme (required there, unused when expanding)."""
    min_train_bars: int = 1
    """Fewest train bars any fold may have; a fold with fewer is an error."""
    purge_bars: int = DEFAULT_PURGE_BARS
    """Bars left out between train and validation and between validation and test; at least
    ``min_purge_bars(env.window, feature_lookback_bars(timeframe))`` (see ``check_purge``)."""
    embargo_bars: int = 0
    """Bars after each test window that no later fold's train or validation window starts on
    (see the module docstring)."""

    def __post_init__(self) -> None:
        if self.n_folds < 1:
            raise ValueError(f"n_folds must be >= 1, got {self.n_folds}")
        if self.scheme not in ("expanding", "rolling"):
            raise ValueError(f"scheme must be 'expanding' or 'rolling', got {self.scheme!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.test_bars is not None and self.test_bars < 1:
            raise ValueError(f"test_bars must be >= 1, got {self.test_bars}")
        for name in ("validation_bars", "purge_bars", "embargo_bars"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.min_train_bars < 1:
            raise ValueError(f"min_train_bars must be >= 1, got {self.min_train_bars}")
        if self.scheme == "rolling":
            if self.train_bars is None or self.train_bars < self.min_train_bars:
                raise ValueError(
                    f"the rolling scheme needs train_bars >= min_train_bars="
                    f"{self.min_train_bars}, got {self.train_bars}"
                )
        elif self.train_bars is not None:
            raise ValueError(
                "train_bars is the rolling scheme's window; the expanding one has none"
            )

    def check_purge(self, env_window: int, feature_window: int) -> None:
        """Raise ``ValueError`` when ``purge_bars`` is below ``min_purge_bars``."""
        needed = min_purge_bars(env_window, feature_window)
        if self.purge_bars < needed:
            raise ValueError(
                f"purge_bars={self.purge_bars} is below the minimum {needed}: the observation "
                f"window {env_window} + the longest feature window {feature_window} bars"
            )


@dataclass(frozen=True)
class Fold:
    """One fold's windows as bar indices ``[start, stop)``."""

    index: int
    """Position of the fold, 0 first; its test window is the ``index``-th from the start."""
    train: Window
    """Bars the fold's policy trains on (its normalizer is fitted on them too)."""
    validation: Window | None
    """Bars held out for model selection (early stopping, issue 14); None without validation."""
    test: Window
    """Bars the fold's out-of-sample ledgers cover."""

    @property
    def name(self) -> str:
        """Partition key of the fold: ``fold-<index>``."""
        return f"fold-{self.index}"

    def windows(self) -> dict[str, Window]:
        """``train``, ``validation`` (when there is one) and ``test`` windows, in time order."""
        out = {"train": self.train}
        if self.validation is not None:
            out["validation"] = self.validation
        out["test"] = self.test
        return out

    def times(self, market: MarketData) -> dict[str, tuple[np.datetime64, np.datetime64]]:
        """Each window's (open of its first bar, close of its last bar) in ``market``."""
        opens, closes = market.timestamps, market.close_times
        return {k: (opens[a], closes[b - 1]) for k, (a, b) in self.windows().items()}

    def describe(self, market: MarketData) -> dict[str, object]:
        """One flat row for a fold table: bar counts and ISO times of each window."""
        row: dict[str, object] = {"fold": self.name}
        for key, (start, stop) in self.windows().items():
            first, last = self.times(market)[key]
            row[f"{key}_bars"] = stop - start
            row[f"{key}_from"] = _iso(first)
            row[f"{key}_to"] = _iso(last)
        return row


def make_folds(n_bars: int, config: WalkForwardConfig) -> list[Fold]:
    """The folds of ``n_bars`` bars; a ``ValueError`` naming the numbers when they do not fit.

    Test windows are consecutive and end at the last bar. Each fold then steps back from its
    test start: ``purge_bars``, the validation window, ``purge_bars`` again, and the train
    window ends there. With ``n_folds=1``, ``validation_bars=0`` and ``purge_bars=0`` the one
    fold is a plain split: train ``[0, cut)``, test ``[cut, n_bars)`` with ``cut =
    round(n_bars * (1 - test_fraction))``.
    """
    k, purge, val = config.n_folds, config.purge_bars, config.validation_bars
    if config.test_bars is None:
        cut = int(round(n_bars * (1.0 - config.test_fraction)))
        span = n_bars - cut
    else:
        span = k * config.test_bars
        cut = n_bars - span
    if span < k or cut < 0:
        raise ValueError(
            f"{n_bars} bars cannot hold {k} test windows (test span {span} bars from bar {cut})"
        )
    bounds = [cut + (i * span) // k for i in range(k + 1)]
    tests = list(zip(bounds[:-1], bounds[1:], strict=True))
    folds = []
    for index, (test_start, test_stop) in enumerate(tests):
        validation = (test_start - purge - val, test_start - purge) if val else None
        train_stop = test_start - purge - (val + purge if val else 0)
        train_start = 0 if config.scheme == "expanding" else train_stop - (config.train_bars or 0)
        earlier = [stop for _, stop in tests[:index]]
        train_start = _embargoed(train_start, earlier, config.embargo_bars)
        if validation is not None:
            validation = (_embargoed(validation[0], earlier, config.embargo_bars), validation[1])
        need = (
            f"(n_bars={n_bars}, test windows from bar {cut}, validation_bars={val}, "
            f"purge_bars={purge}, embargo_bars={config.embargo_bars})"
        )
        if train_start < 0:
            raise ValueError(
                f"fold {index}: a rolling train window of {config.train_bars} bars ending at bar "
                f"{train_stop} would start at bar {train_start} {need}"
            )
        if train_stop - train_start < config.min_train_bars:
            raise ValueError(
                f"fold {index}: {max(train_stop - train_start, 0)} train bars before bar "
                f"{train_stop}, fewer than min_train_bars={config.min_train_bars} {need}"
            )
        if validation is not None and validation[0] >= validation[1]:
            raise ValueError(f"fold {index}: the embargo leaves no validation bars {need}")
        folds.append(Fold(index, (train_start, train_stop), validation, (test_start, test_stop)))
    return folds


def _embargoed(start: int, earlier_test_stops: Sequence[int], embargo: int) -> int:
    """``start`` moved past the embargo of every earlier test window it would start inside."""
    for stop in earlier_test_stops:
        if stop <= start < stop + embargo:
            start = stop + embargo
    return start


def fold_partition_keys(config: WalkForwardConfig) -> list[str]:
    """``["fold-0", ..., "fold-<n_folds - 1>"]``: static partition keys of the folds."""
    return [f"fold-{i}" for i in range(config.n_folds)]


def stitch(ledgers: Sequence[Ledger]) -> Ledger:
    """Chain one strategy's per-fold test ledgers, in time order, into one OOS ledger.

    Equity compounds: fold ``k``'s curve is rescaled by ``s_k = E / equity_k[0]``, where ``E`` is
    the stitched equity at the end of the folds before it (the first fold keeps its scale), so
    the stitched bar returns are exactly the folds' bar returns. The quote-currency columns
    (fees, slippage, funding, asset_pnl) are rescaled by the same ``s_k``, so each row still
    sums to the step's equity change; the ratios (weights, turnover) and ``liquidated`` are
    kept. A gap between two folds is allowed (no bars there); an overlap or a fold out of
    order is a ``ValueError``.
    """
    if not ledgers:
        raise ValueError("stitch needs at least one ledger")
    first = ledgers[0]
    for k, ledger in enumerate(ledgers):
        if ledger.n_bars == 0 or not ledger.equity[0] > 0:
            raise ValueError(f"ledger {k} of {ledger.name!r} is empty or starts without equity")
        if (ledger.name, ledger.symbols, ledger.bar_hours) != (
            first.name,
            first.symbols,
            first.bar_hours,
        ):
            raise ValueError(
                f"ledger {k} ({ledger.name!r}, {ledger.symbols}, {ledger.bar_hours}h) is not the "
                f"strategy of ledger 0 ({first.name!r}, {first.symbols}, {first.bar_hours}h)"
            )
    for k, (prev, nxt) in enumerate(zip(ledgers[:-1], ledgers[1:], strict=True)):
        if nxt.start_time < prev.close_times[-1]:
            what = "out of order" if nxt.close_times[-1] <= prev.start_time else "overlap"
            raise ValueError(
                f"ledgers {k} and {k + 1} of {first.name!r} {what}: ledger {k + 1} starts at "
                f"{nxt.start_time}, before ledger {k} ends at {prev.close_times[-1]}"
            )
    running = float(first.equity[0])
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("equity", "fees", "slippage", "funding", "asset_pnl")
    }
    for ledger in ledgers:
        scale = running / float(ledger.equity[0])
        parts["equity"].append(ledger.equity[1:] * scale)
        for name in ("fees", "slippage", "funding", "asset_pnl"):
            parts[name].append(np.asarray(getattr(ledger, name), dtype=float) * scale)
        running = float(parts["equity"][-1][-1])

    def cat(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(ledger, name)) for ledger in ledgers])

    return Ledger(
        name=first.name,
        symbols=first.symbols,
        bar_hours=first.bar_hours,
        start_time=first.start_time,
        close_times=cat("close_times"),
        equity=np.concatenate([first.equity[:1].astype(float), *parts["equity"]]),
        weights=cat("weights"),
        fees=np.concatenate(parts["fees"]),
        slippage=np.concatenate(parts["slippage"]),
        funding=np.concatenate(parts["funding"]),
        turnover=cat("turnover"),
        liquidated=cat("liquidated"),
        asset_pnl=np.concatenate(parts["asset_pnl"]),
    )


@dataclass(frozen=True)
class FoldResult:
    """One fold's fresh policy and its ledgers on the fold's validation and test windows."""

    fold: Fold
    """The fold's windows."""
    ledgers: dict[str, Ledger]
    """Test-window ledgers by strategy name: the candidate and every baseline."""
    validation_ledgers: dict[str, Ledger]
    """The same strategies over the validation window (empty without one)."""
    validation_metrics: dict[str, MetricValues]
    """``compute_metrics(...).as_dict()`` of each validation ledger (empty without one)."""
    train_seconds: float
    """Wall time of ``model.learn`` for the fold's policy."""
    policy: TrainedPolicy
    """The fold's trained policy and its observation builder (normalizer fitted on train)."""
    summary: dict[str, object]
    """``fold.describe(market)``: bar counts and times of the windows."""


VALIDATION_DAYS = 60
"""Days of a validation window when one is used for early stopping."""


def validation_bars(timeframe: str, days: int = VALIDATION_DAYS) -> int:
    """Bars of a validation window of ``days`` at ``timeframe``: 1,440 at 1h."""
    return int(round(days * 24 / timeframe_of(timeframe).hours))


def validation_scorer(
    market: MarketData, window: Window, train_config: TrainConfig, candidate: str = "candidate"
) -> Callable[[TrainedPolicy], float]:
    """Scores a policy by its Sharpe over ``window`` (backtested on the bars up to its end, with
    the policy's own normalizer): what early stopping maximizes; -inf when not finite."""

    def validate(trained: TrainedPolicy) -> float:
        visible = market.slice(0, window[1])
        actor = PolicyActor(candidate, trained.act)
        normalizer = trained.builder.normalizer
        ledgers = backtest(visible, train_config.env, normalizer, [actor], window[0])
        sharpe = compute_metrics(ledgers[candidate]).sharpe
        return sharpe if math.isfinite(sharpe) else -math.inf

    return validate


def run_fold(
    market: MarketData,
    fold: Fold,
    train_config: TrainConfig,
    baselines: Mapping[str, Baseline] | None = None,
    *,
    candidate: str = "candidate",
    feature_window: int | None = None,
) -> FoldResult:
    """Train a fresh policy on ``fold.train`` only, then backtest it and the baselines.

    With a validation window and ``train_config.validation_every``, training keeps the
    checkpoint with the best validation Sharpe (and stops early per its patience); the test
    window never enters that choice.

    The policy (``train_policy`` on ``market.slice(*fold.train)``) acts through its ONNX export
    (``training.onnx_export.onnx_policy``, the deterministic actor) on observations built with the
    train window's normalizer. Each evaluation window ``[start, stop)`` is backtested on
    ``market.slice(0, stop)`` from ``first_bar = start``, so no bar after the window is read and the
    ``env.window`` warm-up bars before it lie in the purge gap. ``baselines`` (default
    ``evaluation.strategies.BASELINES``) are built on that same slice. Raises ``ValueError`` when a
    purge gap of the fold is below ``min_purge_bars(env.window, feature_window)``
    (``feature_window`` defaults to ``feature_lookback_bars(train_config.timeframe)``).
    """
    lookback = (
        feature_lookback_bars(train_config.timeframe) if feature_window is None else feature_window
    )
    needed = min_purge_bars(train_config.env.window, lookback)
    after_train = fold.validation or fold.test
    gaps = {"train and the next window": after_train[0] - fold.train[1]}
    if fold.validation is not None:
        gaps["validation and test"] = fold.test[0] - fold.validation[1]
    for where, gap in gaps.items():
        if gap < needed:
            raise ValueError(
                f"{fold.name}: {gap} purge bars between {where}, below the minimum {needed}: "
                f"the observation window {train_config.env.window} + the longest feature "
                f"window {lookback} bars"
            )
    if fold.test[1] > market.n_bars:
        raise ValueError(f"{fold.name}: test window ends at bar {fold.test[1]}, after the market")
    validate = None
    if fold.validation is not None and train_config.validation_every > 0:
        validate = validation_scorer(market, fold.validation, train_config, candidate)

    policy = train_policy(market.slice(*fold.train), train_config, validate)
    exported = onnx_policy(policy)  # the deterministic actor on onnxruntime: the same actions

    def run(window: Window) -> dict[str, Ledger]:
        visible = market.slice(0, window[1])
        chosen = BASELINES if baselines is None else baselines
        env, normalizer = train_config.env, policy.builder.normalizer
        actor = PolicyActor(candidate, exported.act)
        ledgers = backtest(visible, env, normalizer, [actor], window[0])
        scheduled: list[Strategy] = [build(visible) for build in chosen.values()]
        return ledgers | backtest(visible, baseline_env(env), None, scheduled, window[0])

    validation = run(fold.validation) if fold.validation is not None else {}
    return FoldResult(
        fold=fold,
        ledgers=run(fold.test),
        validation_ledgers=validation,
        validation_metrics={k: compute_metrics(v).as_dict() for k, v in validation.items()},
        train_seconds=policy.train_seconds,
        policy=policy,
        summary=fold.describe(market),
    )


@dataclass(frozen=True)
class WalkForwardResult:
    """Every fold's result and each strategy's stitched out-of-sample ledger."""

    folds: list[FoldResult]
    """Per-fold results, in time order."""
    stitched: dict[str, Ledger]
    """Each strategy's test ledgers of all folds chained by ``stitch``."""
    seconds: float
    """Wall time of the whole walk (training and backtests)."""


def walk_forward(
    market: MarketData,
    config: WalkForwardConfig,
    train_config: TrainConfig,
    baselines: Mapping[str, Baseline] | None = None,
    *,
    candidate: str = "candidate",
    feature_window: int | None = None,
) -> WalkForwardResult:
    """``run_fold`` on every fold of ``make_folds(market.n_bars, config)``, then ``stitch``."""
    started = time.perf_counter()
    lookback = (
        feature_lookback_bars(train_config.timeframe) if feature_window is None else feature_window
    )
    config.check_purge(train_config.env.window, lookback)
    results = [
        run_fold(
            market, fold, train_config, baselines, candidate=candidate, feature_window=lookback
        )
        for fold in make_folds(market.n_bars, config)
    ]
    names = list(results[0].ledgers)
    stitched = {name: stitch([r.ledgers[name] for r in results]) for name in names}
    return WalkForwardResult(results, stitched, time.perf_counter() - started)


def fold_table(results: Sequence[FoldResult], candidate: str = "candidate") -> pd.DataFrame:
    """One row per fold: its windows (bars, from, to), train seconds, every strategy's test
    ``total_return`` and ``sharpe`` and the candidate's validation ones (``<name>_<metric>``)."""
    rows = []
    for result in results:
        row = dict(result.summary, train_seconds=round(result.train_seconds, 2))
        for name, ledger in result.ledgers.items():
            metrics = compute_metrics(ledger)
            row[f"{name}_total_return"] = metrics.total_return
            row[f"{name}_sharpe"] = metrics.sharpe
        if candidate in result.validation_metrics:
            for key in ("total_return", "sharpe"):
                row[f"{candidate}_validation_{key}"] = result.validation_metrics[candidate][key]
        rows.append(row)
    return pd.DataFrame(rows)


def _iso(timestamp: np.datetime64) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM`` (UTC)."""
    return str(np.datetime_as_string(timestamp, unit="m")).replace("T", " ")
