"""The promotion gate: a candidate becomes champion only when it beats the bar out of sample.

The gate fails closed: missing, non-finite or inconsistent evidence is a refusal with a reason,
never a pass. Its thresholds have floors (the loosest values allowed, the ``*_FLOOR``
constants); a configuration looser than a floor is an error unless it states an
``override_reason``, which every decision taken under it then names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluation.metrics import PerformanceMetrics

STATISTICAL_TESTS = ("ci_or_dsr", "ci", "dsr", "both")
"""Modes of the statistical test: the Sharpe-difference CI's lower bound above
``ci_lower_above`` or the deflated Sharpe above ``min_deflated_sharpe`` (``ci_or_dsr``), only one
of them (``ci``, ``dsr``), or both (``both``)."""

MAX_DRAWDOWN_FLOOR = 0.5
"""Loosest ``max_drawdown``: a policy that lost half its equity out of sample is never served."""
MAX_TURNOVER_COST_FLOOR = 0.25
"""Loosest ``max_turnover_cost``: fees and slippage of a quarter of the initial equity."""
MIN_SHARPE_MARGIN_FLOOR = 0.0
"""Loosest Sharpe margins (both): the candidate must at least strictly exceed the other."""
MIN_OOS_BARS_FLOOR = 100
"""Fewest out-of-sample bars a ``min_oos_bars`` may ask for."""
MIN_OOS_DAYS_FLOOR = 30
"""Fewest out-of-sample days a ``min_oos_days`` may ask for: a daily Sharpe needs a month."""
MIN_DEFLATED_SHARPE_FLOOR = 0.9
"""Loosest ``min_deflated_sharpe`` (a probability that the true Sharpe is above the expected
maximum Sharpe of the trials)."""
CI_LOWER_ABOVE_FLOOR = 0.0
"""Loosest ``ci_lower_above``: the difference's interval must at least exclude a loss."""


@dataclass(frozen=True)
class GateConfig:
    """Thresholds a candidate must meet on the out-of-sample window, and any override of floors.

    The defaults are meant for hourly bars and an out-of-sample quarter of a year of data.
    """

    max_drawdown: float = 0.35
    """Largest peak-to-trough loss allowed, as a fraction of equity (refused when above). A third
    of the equity: a leveraged book that loses more out of sample is not one to serve."""
    max_turnover_cost: float = 0.05
    """Largest fees plus slippage over the window, as a fraction of initial equity (refused when
    above). 5% over a few months is already a heavy drag; more means the policy churns."""
    min_sharpe_margin_vs_baseline: float = 0.1
    """The candidate's Sharpe must exceed every baseline's Sharpe plus this (strictly: a tie
    refuses). 0.1 keeps rounding-level wins out; the statistical test handles the noise."""
    min_sharpe_margin_vs_champion: float = 0.1
    """The candidate's Sharpe must exceed the champion's Sharpe (same bars) plus this, strictly.
    As large as the baseline margin: replacing a served policy has a cost too."""
    min_oos_bars: int = 500
    """Fewest out-of-sample bars (about three weeks of hourly bars)."""
    min_oos_days: int = 60
    """Fewest out-of-sample UTC days: two months of daily returns for the Sharpe and its CI."""
    statistical_test: str = "ci_or_dsr"
    """Which statistical test must pass, one of ``STATISTICAL_TESTS``."""
    min_deflated_sharpe: float = 0.95
    """The deflated Sharpe ratio must exceed this (the usual 95% confidence)."""
    ci_lower_above: float = 0.0
    """The lower bound of the bootstrap CI of candidate minus best-baseline Sharpe must exceed
    this."""
    override_reason: str | None = None
    """Why thresholds looser than their floors are accepted; ``None`` forbids such thresholds."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, int | float) and not math.isfinite(value):
                raise ValueError(f"GateConfig.{name} must be finite, got {value}")
        if self.statistical_test not in STATISTICAL_TESTS:
            raise ValueError(
                f"GateConfig.statistical_test must be one of {STATISTICAL_TESTS}, "
                f"got {self.statistical_test!r}"
            )
        if self.override_reason is not None and not self.override_reason.strip():
            raise ValueError("GateConfig.override_reason must say why (it is empty)")
        loosened = self.loosened()
        if loosened and self.override_reason is None:
            raise ValueError(
                "GateConfig looser than its floors: "
                + "; ".join(loosened)
                + " (set override_reason to accept it)"
            )

    def loosened(self) -> list[str]:
        """Every threshold looser than its floor, named with its value and the floor."""
        checks = [
            ("max_drawdown", self.max_drawdown > MAX_DRAWDOWN_FLOOR, ">", MAX_DRAWDOWN_FLOOR),
            (
                "max_turnover_cost",
                self.max_turnover_cost > MAX_TURNOVER_COST_FLOOR,
                ">",
                MAX_TURNOVER_COST_FLOOR,
            ),
            (
                "min_sharpe_margin_vs_baseline",
                self.min_sharpe_margin_vs_baseline < MIN_SHARPE_MARGIN_FLOOR,
                "<",
                MIN_SHARPE_MARGIN_FLOOR,
            ),
            (
                "min_sharpe_margin_vs_champion",
                self.min_sharpe_margin_vs_champion < MIN_SHARPE_MARGIN_FLOOR,
                "<",
                MIN_SHARPE_MARGIN_FLOOR,
            ),
            ("min_oos_bars", self.min_oos_bars < MIN_OOS_BARS_FLOOR, "<", MIN_OOS_BARS_FLOOR),
            ("min_oos_days", self.min_oos_days < MIN_OOS_DAYS_FLOOR, "<", MIN_OOS_DAYS_FLOOR),
            (
                "min_deflated_sharpe",
                self.min_deflated_sharpe < MIN_DEFLATED_SHARPE_FLOOR,
                "<",
                MIN_DEFLATED_SHARPE_FLOOR,
            ),
            (
                "ci_lower_above",
                self.ci_lower_above < CI_LOWER_ABOVE_FLOOR,
                "<",
                CI_LOWER_ABOVE_FLOOR,
            ),
        ]
        return [
            f"{name} {getattr(self, name)} {op} floor {floor}"
            for name, looser, op, floor in checks
            if looser
        ]

    def as_dict(self) -> dict[str, Any]:
        """The thresholds as plain JSON-able values."""
        return asdict(self)


@dataclass(frozen=True)
class GateEvidence:
    """Everything the gate decides on, from one out-of-sample evaluation."""

    candidate: PerformanceMetrics
    """Metrics of the candidate policy over the out-of-sample bars."""
    baselines: dict[str, PerformanceMetrics]
    """Metrics of each baseline strategy over the same bars, by name."""
    champion: PerformanceMetrics | None
    """Metrics of the current champion over the candidate's bars, or ``None`` without one."""
    champion_version: str | None
    """Registry version of that champion, or ``None``."""
    champion_same_bars: bool
    """Whether the champion and the candidate were backtested on exactly the same bars."""
    sharpe_difference_ci: tuple[float, float]
    """Bootstrap confidence interval (low, high) of candidate minus best-baseline daily Sharpe."""
    best_baseline: str
    """Name of the baseline with the highest Sharpe: the one the interval is against."""
    deflated_sharpe: float
    """Deflated Sharpe ratio of the candidate: the probability that its true Sharpe is above
    the expected maximum Sharpe of ``n_trials`` tries."""
    n_trials: int
    """Number of versions tried on the same data (the deflated Sharpe's N)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; ``from_dict`` reads them back."""
        return {
            "candidate": self.candidate.as_dict(),
            "baselines": {name: m.as_dict() for name, m in self.baselines.items()},
            "champion": self.champion.as_dict() if self.champion is not None else None,
            "champion_version": self.champion_version,
            "champion_same_bars": self.champion_same_bars,
            "sharpe_difference_ci": [float(v) for v in self.sharpe_difference_ci],
            "best_baseline": self.best_baseline,
            "deflated_sharpe": float(self.deflated_sharpe),
            "n_trials": int(self.n_trials),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GateEvidence:
        """The evidence ``to_dict`` wrote; a missing key raises ``KeyError``."""
        champion = values["champion"]
        low, high = values["sharpe_difference_ci"]
        return cls(
            candidate=PerformanceMetrics.from_dict(values["candidate"]),
            baselines={
                name: PerformanceMetrics.from_dict(m) for name, m in values["baselines"].items()
            },
            champion=PerformanceMetrics.from_dict(champion) if champion is not None else None,
            champion_version=values["champion_version"],
            champion_same_bars=bool(values["champion_same_bars"]),
            sharpe_difference_ci=(float(low), float(high)),
            best_baseline=str(values["best_baseline"]),
            deflated_sharpe=float(values["deflated_sharpe"]),
            n_trials=int(values["n_trials"]),
        )


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote, every reason that blocked it, and the thresholds it was taken under."""

    promote: bool
    """True only when no condition failed."""
    reasons: list[str] = field(default_factory=list)
    """One entry per failed condition (empty when promoted)."""
    thresholds: dict[str, Any] = field(default_factory=dict)
    """The ``GateConfig`` in force, as a dict."""
    override: str | None = None
    """The thresholds looser than their floors and the stated reason, or ``None``."""

    @property
    def summary(self) -> str:
        """``passed`` or the reasons, with the override when there was one."""
        text = "passed" if self.promote else "; ".join(self.reasons)
        return f"{text} [override: {self.override}]" if self.override else text


DECIDED_METRICS = ("sharpe", "max_drawdown", "turnover_cost", "total_return")
"""The metrics the gate decides on: each must be finite. The others (a Sortino or Calmar ratio
without a losing day or a drawdown is undefined) are reported, not decided on."""


def _non_finite(label: str, metrics: PerformanceMetrics) -> list[str]:
    values = metrics.as_dict()
    return [
        f"{label} {name} is {values[name]} (not finite)"
        for name in DECIDED_METRICS
        if not math.isfinite(float(values[name]))
    ]


def _sharpe_margin(
    candidate: PerformanceMetrics, label: str, other: PerformanceMetrics, required: float
) -> str | None:
    margin = candidate.sharpe - other.sharpe
    if margin > required:
        return None
    return (
        f"Sharpe {candidate.sharpe:.3f} vs {label} {other.sharpe:.3f}: margin {margin:+.3f} "
        f"does not exceed the required {required:+.3f}"
    )


def _statistical_test(evidence: GateEvidence, config: GateConfig) -> str | None:
    low, high = evidence.sharpe_difference_ci
    ci_passes = low > config.ci_lower_above
    dsr_passes = evidence.deflated_sharpe > config.min_deflated_sharpe
    ci_text = (
        f"Sharpe-difference CI vs {evidence.best_baseline} [{low:.3f}, {high:.3f}] "
        f"{'has' if ci_passes else 'does not have'} its lower bound above {config.ci_lower_above}"
    )
    dsr_text = (
        f"deflated Sharpe {evidence.deflated_sharpe:.3f} (N={evidence.n_trials}) "
        f"{'is' if dsr_passes else 'is not'} above {config.min_deflated_sharpe}"
    )
    mode = config.statistical_test
    passes = {
        "ci": ci_passes,
        "dsr": dsr_passes,
        "both": ci_passes and dsr_passes,
        "ci_or_dsr": ci_passes or dsr_passes,
    }[mode]
    if passes:
        return None
    parts = {"ci": [ci_text], "dsr": [dsr_text]}.get(mode, [ci_text, dsr_text])
    return f"statistical test ({mode}) failed: " + "; ".join(parts)


def _evidence_problems(evidence: GateEvidence) -> list[str]:
    """Reasons the evidence itself cannot support a promotion."""
    candidate = evidence.candidate
    reasons = _non_finite("candidate", candidate)
    for name, metrics in evidence.baselines.items():
        reasons += _non_finite(f"baseline {name}", metrics)
        if metrics.n_bars != candidate.n_bars:
            reasons.append(
                f"baseline {name} has {metrics.n_bars} bars, the candidate {candidate.n_bars}"
            )
    if not evidence.baselines:
        reasons.append("no baselines to compare against")
    elif evidence.best_baseline not in evidence.baselines:
        reasons.append(f"best baseline {evidence.best_baseline!r} is not among the baselines")
    champion = evidence.champion
    if champion is not None:
        reasons += _non_finite(f"champion v{evidence.champion_version}", champion)
        if not evidence.champion_same_bars or champion.n_bars != candidate.n_bars:
            counts = (
                f" ({champion.n_bars} bars vs {candidate.n_bars})"
                if champion.n_bars != candidate.n_bars
                else ""
            )
            reasons.append(
                f"champion v{evidence.champion_version} was not backtested on the candidate's "
                f"bars{counts}: no like-for-like comparison"
            )
    low, high = evidence.sharpe_difference_ci
    for label, value in (
        ("Sharpe-difference CI lower bound", low),
        ("Sharpe-difference CI upper bound", high),
        ("deflated Sharpe", evidence.deflated_sharpe),
    ):
        if not math.isfinite(value):
            reasons.append(f"{label} is {value} (not finite)")
    if low > high:
        reasons.append(f"Sharpe-difference CI [{low}, {high}] has its bounds reversed")
    if evidence.n_trials < 1:
        reasons.append(f"n_trials is {evidence.n_trials}: the deflated Sharpe needs at least 1")
    return reasons


def decide_promotion(evidence: GateEvidence, config: GateConfig) -> GateDecision:
    """Apply the gate; every failed condition is a reason, and any reason refuses."""
    candidate = evidence.candidate
    reasons = _evidence_problems(evidence)
    if candidate.n_bars < config.min_oos_bars:
        reasons.append(
            f"{candidate.n_bars} out-of-sample bars, fewer than the required {config.min_oos_bars}"
        )
    if candidate.n_days < config.min_oos_days:
        reasons.append(
            f"{candidate.n_days} out-of-sample days, fewer than the required {config.min_oos_days}"
        )
    if candidate.liquidated or candidate.liquidations > 0:
        reasons.append(
            f"candidate was liquidated out of sample ({candidate.liquidations} liquidations)"
        )
    if not candidate.max_drawdown <= config.max_drawdown:
        reasons.append(
            f"max drawdown {candidate.max_drawdown:.1%} exceeds the limit {config.max_drawdown:.1%}"
        )
    if not candidate.turnover_cost <= config.max_turnover_cost:
        reasons.append(
            f"turnover cost {candidate.turnover_cost:.2%} of initial equity exceeds the limit "
            f"{config.max_turnover_cost:.2%}"
        )
    for name, baseline in evidence.baselines.items():
        reason = _sharpe_margin(
            candidate, f"baseline {name}", baseline, config.min_sharpe_margin_vs_baseline
        )
        if reason:
            reasons.append(reason)
    if evidence.champion is not None:
        reason = _sharpe_margin(
            candidate,
            f"champion v{evidence.champion_version}",
            evidence.champion,
            config.min_sharpe_margin_vs_champion,
        )
        if reason:
            reasons.append(reason)
    reason = _statistical_test(evidence, config)
    if reason:
        reasons.append(reason)
    loosened = config.loosened()
    override = f"{'; '.join(loosened)} (reason: {config.override_reason})" if loosened else None
    return GateDecision(
        promote=not reasons, reasons=reasons, thresholds=config.as_dict(), override=override
    )
