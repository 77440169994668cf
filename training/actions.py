"""The one mapping from policy actions to target leverage, used by the env and by serving."""

from __future__ import annotations

from typing import Protocol

import numpy as np

ACTION_BASELINES = ("none", "equal_weight")


class LeverageLimits(Protocol):
    """Anything with a per-asset and a gross leverage limit and an action baseline
    (``EnvConfig``)."""

    @property
    def max_leverage(self) -> float: ...

    @property
    def gross_leverage_cap(self) -> float: ...

    @property
    def action_baseline(self) -> str: ...


def baseline_weight(limits: LeverageLimits, n_assets: int) -> float:
    """Each asset's target weight at an action of 0: 0, or 1/N for ``equal_weight``."""
    return 1.0 / n_assets if limits.action_baseline == "equal_weight" else 0.0


def target_weights(actions: np.ndarray, limits: LeverageLimits) -> np.ndarray:
    """Actions in [-1, 1] (last axis: assets) -> target weights in [-L, L], gross-capped.

    An action of +-1 moves an asset's target by +-L times equity from the baseline (0, or the
    equal-weight long book 1/N for ``action_baseline="equal_weight"``); the target is clipped to
    [-L, L], and when sum_i |w_i| exceeds the cap, every weight is scaled down by the same factor.
    """
    w = np.minimum(np.maximum(actions, -1.0), 1.0) * limits.max_leverage  # np.clip, cheaper
    offset = baseline_weight(limits, np.shape(actions)[-1])
    if offset:
        w = np.minimum(np.maximum(w + offset, -limits.max_leverage), limits.max_leverage)
    gross = np.add.reduce(np.abs(w), -1, keepdims=True)
    return w * np.minimum(1.0, limits.gross_leverage_cap / np.maximum(gross, 1e-12))


def actions_for_weights(weights: np.ndarray, limits: LeverageLimits) -> np.ndarray:
    """The actions whose target is ``weights`` (within the limits): the inverse of the
    baseline shift and the leverage scale, for strategies that decide in weights."""
    offset = baseline_weight(limits, np.shape(weights)[-1])
    return (np.asarray(weights, dtype=np.float64) - offset) / limits.max_leverage
