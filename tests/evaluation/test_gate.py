import numpy as np

from evaluation.gate import GateConfig, decide_promotion
from evaluation.metrics import compute_metrics


def _metrics(sharpe_scale: float, liquidated: bool = False):
    rng = np.random.default_rng(0)
    returns = 0.001 * sharpe_scale + 0.01 * rng.standard_normal(500)
    return compute_metrics(100 * np.cumprod(np.r_[1.0, 1 + returns]), 1.0, liquidated=liquidated)


def test_gate_promotes_only_a_candidate_that_beats_baseline_and_champion():
    good, mid, bad = _metrics(3.0), _metrics(1.0), _metrics(-1.0)
    assert decide_promotion(good, mid, bad, GateConfig(max_drawdown=1.0)).promote
    beaten = decide_promotion(bad, mid, None, GateConfig(max_drawdown=1.0))
    assert not beaten.promote
    assert "equal-weight baseline" in beaten.reasons[0]
    vs_champion = decide_promotion(mid, bad, good, GateConfig(max_drawdown=1.0))
    assert not vs_champion.promote and "champion" in vs_champion.summary


def test_gate_rejects_liquidation_and_deep_drawdown_with_reasons():
    liquidated = _metrics(3.0, liquidated=True)
    decision = decide_promotion(liquidated, _metrics(-1.0), None, GateConfig(max_drawdown=0.0))
    assert not decision.promote
    assert any("liquidated" in r for r in decision.reasons)
    assert any("max drawdown" in r for r in decision.reasons)
