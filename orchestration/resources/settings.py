"""Per-environment overrides of the training run and the promotion gate.

The defaults live in the domain dataclasses (``training.config.TrainConfig``,
``evaluation.gate.GateConfig``); a field left ``None`` here keeps the dataclass's default.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import dagster as dg

from evaluation.gate import GateConfig
from evaluation.walkforward import WalkForwardConfig
from serving.live import LiveConfig
from serving.safety import SafetyLimits
from training.config import TrainConfig, load_config


def _set(settings: dg.ConfigurableResource, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``settings`` among ``names`` that are set (not ``None``): the overrides."""
    return {n: getattr(settings, n) for n in names if getattr(settings, n) is not None}


class TrainingSettings(dg.ConfigurableResource):
    """Overrides of ``TrainConfig`` for one environment; ``None`` keeps its default.

    The config of a run is, in order: ``TrainConfig``'s defaults, the preset's YAML
    (``configs/<preset>.yaml``), these overrides, then the run's own config (``TrainingRun``)."""

    preset: str | None = None
    """Preset under ``configs/`` (``demo``, ``cpts``, ``guide``); None: the defaults alone."""
    algorithm: str | None = None
    """Stable-Baselines3 algorithm: PPO, A2C or SAC."""
    total_timesteps: int | None = None
    """Environment steps of training."""
    seed: int | None = None
    """Seeds the environment, the policy initialization and torch."""
    n_envs: int | None = None
    """Parallel environments per rollout."""
    n_steps: int | None = None
    """Rollout length per environment between updates."""
    batch_size: int | None = None
    """Minibatch size."""
    test_fraction: float | None = None
    """Trailing fraction of bars held out for out-of-sample evaluation."""
    validation_every: int | None = None
    """Timesteps between validation scores (0: no validation window, no early stopping)."""
    episode_length: int | None = None
    """Decisions per training episode (``EnvConfig.episode_length``)."""

    def train_config(self, venue: str, run: TrainingRun | None = None) -> TrainConfig:
        """The preset (the run's, else this environment's) with this environment's overrides,
        then the run's, for ``venue``."""
        names = tuple(n for n in type(self).model_fields if n not in ("episode_length", "preset"))
        overrides: dict[str, Any] = _set(self, names)
        if self.episode_length is not None:
            overrides["env"] = {"episode_length": self.episode_length}
        preset = run.preset if run is not None and run.preset is not None else self.preset
        layers = [overrides, run.overrides()] if run is not None else [overrides]
        return replace(load_config(preset, *layers), venue=venue)


class TrainingRun(dg.PermissiveConfig):
    """A training run's config from the launchpad: a ``preset`` and any ``TrainConfig`` field
    (nested ``env`` mappings too), e.g. ``{preset: cpts, total_timesteps: 50000,
    env: {decision_interval: 24}}``. Unknown fields fail the run, naming the field."""

    preset: str | None = None
    """Preset under ``configs/``; None: the environment's (``TrainingSettings.preset``)."""

    def overrides(self) -> dict[str, Any]:
        """The ``TrainConfig`` fields this run sets (everything but ``preset``)."""
        return {k: v for k, v in self.model_dump().items() if k != "preset"}


class PromotionGateSettings(dg.ConfigurableResource):
    """Overrides of the promotion gate's thresholds (``GateConfig``); ``None`` keeps its default.

    ``GateConfig`` enforces the floors: a threshold looser than its floor raises unless
    ``override_reason`` says why.
    """

    max_drawdown: float | None = None
    """Largest peak-to-trough loss allowed, as a fraction of equity."""
    max_turnover_cost: float | None = None
    """Largest fees plus slippage over the window, as a fraction of initial equity."""
    min_sharpe_margin_vs_baseline: float | None = None
    """The candidate's Sharpe must exceed every baseline's Sharpe plus this."""
    min_sharpe_margin_vs_champion: float | None = None
    """The candidate's Sharpe must exceed the current champion's Sharpe plus this."""
    min_oos_bars: int | None = None
    """Fewest out-of-sample bars."""
    min_oos_days: int | None = None
    """Fewest out-of-sample UTC days."""
    statistical_test: str | None = None
    """``ci_or_dsr``, ``ci``, ``dsr`` or ``both`` (``evaluation.gate.STATISTICAL_TESTS``)."""
    min_deflated_sharpe: float | None = None
    """The deflated Sharpe ratio must exceed this."""
    ci_lower_above: float | None = None
    """The Sharpe-difference CI's lower bound must exceed this."""
    override_reason: str | None = None
    """Why thresholds looser than their floors are accepted (named in every decision)."""

    def gate_config(self) -> GateConfig:
        """``GateConfig``'s defaults with this environment's overrides (floors enforced)."""
        return replace(GateConfig(), **_set(self, tuple(type(self).model_fields)))


class WalkForwardSettings(dg.ConfigurableResource):
    """Overrides of ``WalkForwardConfig`` for one environment; ``None`` keeps its default. The
    number of folds is the partitions' (``PERPFOLIO_WALK_FORWARD_FOLDS``), fixed at load time."""

    scheme: str | None = None
    """``expanding`` (every train window from bar 0) or ``rolling`` (``train_bars`` each)."""
    test_fraction: float | None = None
    """Trailing fraction of the bars that the folds' test windows cover together."""
    validation_bars: int | None = None
    """Bars of each fold's validation window (0: none)."""
    train_bars: int | None = None
    """Bars of each train window in the rolling scheme."""
    purge_bars: int | None = None
    """Bars left out between train, validation and test (at least the observation window
    plus the longest feature window)."""
    embargo_bars: int | None = None
    """Bars after each test window that no later fold's train or validation window starts on."""

    def walk_forward_config(self, n_folds: int) -> WalkForwardConfig:
        """``WalkForwardConfig``'s defaults with this environment's overrides, ``n_folds`` folds."""
        overrides = _set(self, tuple(type(self).model_fields))
        return replace(WalkForwardConfig(), n_folds=n_folds, **overrides)


class ServingSettings(dg.ConfigurableResource):
    """How the serving cycle trades: the paper account, the clock and tighter safety limits.

    The safety layer's limits are constants (``serving.safety``); ``limits`` may only tighten
    them (``SafetyLimits`` refuses a looser value, naming the field)."""

    account_id: str = "paper"
    """Paper account in the warehouse's ``serving`` ledger (letters and digits, no '-')."""
    clock: str = "wall"
    """``wall``: the staleness rule compares the latest bar with the wall clock (live data);
    ``data``: with the latest bar's own close (a replay, e.g. the embedded synthetic market)."""
    limits: dict[str, float] = {}
    """``SafetyLimits`` fields to tighten, e.g. ``{max_gross_leverage: 1.5}``."""
    live: bool = False
    """Trade the Binance USD-M account instead of the paper one. It also needs
    ``PERPFOLIO_LIVE=1`` and the keys in ``PERPFOLIO_BINANCE_API_KEY`` / ``_SECRET``."""
    live_demo: bool = False
    """Live on Binance's demo-trading endpoint."""
    live_base_url: str | None = None
    """A loopback address to send live requests to (the local exchange), for tests."""
    live_initial_equity: float | None = None
    """The equity the live account started with (the observation's equity ratio); None: the
    policy's ``initial_equity``."""

    def live_config(self) -> LiveConfig:
        """The live adapter's configuration (``live`` as set here)."""
        return LiveConfig(live=self.live, demo=self.live_demo, base_url=self.live_base_url)

    def safety_limits(self) -> SafetyLimits:
        """The hard limits tightened by ``limits``."""
        return SafetyLimits(**self.limits)
