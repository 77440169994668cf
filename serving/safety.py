"""The hard-coded safety layer between any policy and the target-weight table.

It is deliberately independent of training configuration: the limits are constants here, so a
mis-configured or broken model cannot loosen them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ABS_WEIGHT = 2.0
"""Largest leverage allowed on any single asset."""
MAX_GROSS_LEVERAGE = 3.0
"""Largest sum of absolute weights allowed across the portfolio."""


@dataclass(frozen=True)
class SafeWeights:
    """Clamped target weights and what the clamp changed."""

    weights: np.ndarray
    interventions: tuple[str, ...]


def enforce_limits(raw_weights: np.ndarray, symbols: tuple[str, ...]) -> SafeWeights:
    """Clamp per-asset and gross leverage; a non-finite weight flattens the whole book."""
    raw = np.asarray(raw_weights, dtype=float)
    if raw.shape != (len(symbols),):
        raise ValueError(f"expected {len(symbols)} weights for {symbols}, got shape {raw.shape}")
    notes: list[str] = []
    bad = [s for s, w in zip(symbols, raw, strict=True) if not np.isfinite(w)]
    if bad:
        return SafeWeights(np.zeros_like(raw), (f"non-finite weight for {bad}: flattened",))
    weights = np.clip(raw, -MAX_ABS_WEIGHT, MAX_ABS_WEIGHT)
    for symbol, before, after in zip(symbols, raw, weights, strict=True):
        if before != after:
            notes.append(f"{symbol} weight {before:+.3f} clamped to {after:+.3f}")
    gross = float(np.abs(weights).sum())
    if gross > MAX_GROSS_LEVERAGE:
        weights = weights * (MAX_GROSS_LEVERAGE / gross)
        notes.append(f"gross leverage {gross:.3f} scaled to {MAX_GROSS_LEVERAGE:.1f}")
    return SafeWeights(weights, tuple(notes))
