"""The one mapping from policy actions to target leverage, used by the env and by serving."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class LeverageLimits(Protocol):
    """Anything with a per-asset and a gross leverage limit (``EnvConfig``)."""

    @property
    def max_leverage(self) -> float: ...

    @property
    def gross_leverage_cap(self) -> float: ...


def target_weights(actions: np.ndarray, limits: LeverageLimits) -> np.ndarray:
    """Actions in [-1, 1] (last axis: assets) -> target weights in [-L, L], gross-capped.

    An action of +-1 targets +-L times equity in that asset; when sum_i |w_i| exceeds the cap,
    every weight is scaled down by the same factor.
    """
    w = np.minimum(np.maximum(actions, -1.0), 1.0) * limits.max_leverage  # np.clip, cheaper
    gross = np.add.reduce(np.abs(w), -1, keepdims=True)
    return w * np.minimum(1.0, limits.gross_leverage_cap / np.maximum(gross, 1e-12))
