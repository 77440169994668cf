"""Feature drift between the live bars and a policy's training window: the population
stability index (PSI) of each feature, pooled over assets, on the training window's deciles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.market import MarketData

LIVE_DAYS = 30
"""Live window: the last 30 days of bars."""
PSI_DRIFT = 0.25
"""PSI above which a feature counts as drifted (the usual rule: < 0.1 stable, > 0.25 shifted)."""
BINS = 10
"""Quantile bins of the reference distribution."""
_FLOOR = 1e-4
"""Share given to an empty bin, so the log stays finite."""


@dataclass(frozen=True)
class DriftReport:
    """PSI of every feature between the live window and the training window."""

    psi: dict[str, float]
    """Feature name -> PSI (NaN when a window has no finite value)."""
    live_bars: int
    reference_bars: int

    @property
    def max_psi(self) -> float:
        finite = [v for v in self.psi.values() if np.isfinite(v)]
        return max(finite) if finite else float("nan")

    @property
    def drifted(self) -> list[str]:
        """Features whose PSI is above ``PSI_DRIFT``."""
        return [name for name, value in self.psi.items() if value > PSI_DRIFT]

    def summary(self) -> str:
        if self.drifted:
            top = sorted(self.drifted, key=lambda name: -self.psi[name])
            return (
                f"{len(self.drifted)} of {len(self.psi)} features drifted (PSI > {PSI_DRIFT}): "
                + ", ".join(f"{name} {self.psi[name]:.2f}" for name in top)
            )
        return f"no feature drifted: max PSI {self.max_psi:.3f} (limit {PSI_DRIFT})"


def psi(reference: np.ndarray, live: np.ndarray, bins: int = BINS) -> float:
    """Population stability index of ``live`` against ``reference`` (finite values only), on
    the reference's quantile bins: ``sum((l - r) * ln(l / r))``."""
    reference = reference[np.isfinite(reference)]
    live = live[np.isfinite(live)]
    if reference.size == 0 or live.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, reference), minlength=edges.size + 1) / reference.size
    v = np.bincount(np.searchsorted(edges, live), minlength=edges.size + 1) / live.size
    r, v = np.maximum(r, _FLOOR), np.maximum(v, _FLOOR)
    return float(((v - r) * np.log(v / r)).sum())


def feature_drift(market: MarketData, train_end: np.datetime64) -> DriftReport:
    """PSI of each feature: the last ``LIVE_DAYS`` of ``market`` against its bars up to
    ``train_end`` (the policy's training window)."""
    stamps = market.timestamps
    cut = int(np.searchsorted(stamps, train_end.astype(stamps.dtype), side="right"))
    live_bars = min(max(1, round(LIVE_DAYS * 24 / market.bar_hours)), market.n_bars)
    live = market.features[-live_bars:]
    reference = market.features[:cut]
    values = {
        name: psi(reference[..., j].ravel(), live[..., j].ravel())
        for j, name in enumerate(market.feature_names)
    }
    return DriftReport(values, live_bars, cut)
