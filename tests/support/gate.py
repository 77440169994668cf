"""Gate evidence and metrics for tests: every field filled, passing the default gate unless
changed."""

from dataclasses import fields, replace

from evaluation.gate import GateEvidence
from evaluation.metrics import PerformanceMetrics

GOOD = {
    "sharpe": 2.0,
    "sortino": 2.5,
    "calmar": 3.0,
    "total_return": 0.12,
    "max_drawdown": 0.1,
    "turnover_cost": 0.01,
    "liquidated": False,
    "liquidations": 0,
    "n_bars": 2_000,
    "n_days": 84,
}


def metrics(**values) -> PerformanceMetrics:
    """Metrics with every scalar field filled: ``values``, else ``GOOD``, else a zero of the
    field's type (so that a field added to ``PerformanceMetrics`` later does not break these
    tests); mapping fields stay empty."""
    zeros = {"bool": False, "int": 0, "str": ""}
    filled = {
        f.name: values.get(f.name, GOOD.get(f.name, zeros.get(str(f.type), 0.0)))
        for f in fields(PerformanceMetrics)
        if not str(f.type).startswith("dict")
    }
    return PerformanceMetrics.from_dict(filled)


def evidence(**changes) -> GateEvidence:
    """Evidence that passes the default gate, with ``changes``."""
    base = GateEvidence(
        candidate=metrics(),
        baselines={"cash": metrics(sharpe=0.0), "equal_weight": metrics(sharpe=1.0)},
        champion=None,
        champion_version=None,
        champion_same_bars=True,
        sharpe_difference_ci=(0.2, 1.8),
        best_baseline="equal_weight",
        deflated_sharpe=0.97,
        n_trials=3,
    )
    return replace(base, **changes)
