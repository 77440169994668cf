"""The promotion gate: a candidate becomes champion only when it beats the bar out of sample."""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluation.metrics import PerformanceMetrics


@dataclass(frozen=True)
class GateConfig:
    """Thresholds a candidate must meet on the out-of-sample window."""

    min_sharpe_margin_vs_baseline: float = 0.0
    """Candidate Sharpe minus the equal-weight baseline's Sharpe must be at least this."""
    min_sharpe_margin_vs_champion: float = 0.0
    """Candidate Sharpe minus the current champion's Sharpe (same window) must be at least this."""
    max_drawdown: float = 0.5
    """Largest peak-to-trough loss allowed, as a fraction of equity."""


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote, and every reason that blocked it (empty when promoted)."""

    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "passed" if self.promote else "; ".join(self.reasons)


def decide_promotion(
    candidate: PerformanceMetrics,
    baseline: PerformanceMetrics,
    champion: PerformanceMetrics | None,
    config: GateConfig,
) -> GateDecision:
    """Apply the gate; every failed condition is named in the decision."""
    reasons = []
    if candidate.liquidated:
        reasons.append("candidate was liquidated out of sample")
    if candidate.max_drawdown > config.max_drawdown:
        reasons.append(
            f"max drawdown {candidate.max_drawdown:.1%} exceeds limit {config.max_drawdown:.1%}"
        )
    margin = candidate.sharpe - baseline.sharpe
    if margin < config.min_sharpe_margin_vs_baseline:
        reasons.append(
            f"Sharpe {candidate.sharpe:.2f} vs equal-weight baseline {baseline.sharpe:.2f}: "
            f"margin {margin:+.2f} < required {config.min_sharpe_margin_vs_baseline:+.2f}"
        )
    if champion is not None:
        margin = candidate.sharpe - champion.sharpe
        if margin < config.min_sharpe_margin_vs_champion:
            reasons.append(
                f"Sharpe {candidate.sharpe:.2f} vs champion {champion.sharpe:.2f}: "
                f"margin {margin:+.2f} < required {config.min_sharpe_margin_vs_champion:+.2f}"
            )
    return GateDecision(promote=not reasons, reasons=reasons)
