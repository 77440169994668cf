"""The promotion gate end to end: real policies through ``evaluate_strategies`` and the DEFAULT
``GateConfig()``, on a 5-asset hourly synthetic market of 130 days whose last 75 days are out of
sample (1 800 bars, 75 daily returns: above the default 500 bars and 60 days).

A random policy, a maximum-leverage policy, a clone of the equal-weight baseline and a tiny
trained PPO are refused; look-ahead oracles handed the next bar's return show the gate can pass.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluation.engine import PolicyActor, ScheduledWeights
from evaluation.evaluate import CANDIDATE, Evaluation, evaluate_strategies
from evaluation.gate import GateConfig, GateDecision, decide_promotion
from evaluation.strategies import BASELINES, equal_weight
from tests.support.markets import make_synthetic_market
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.market import MarketData
from training.observation import FeatureNormalizer
from training.train import TrainedPolicy, train_policy

N_ASSETS = 5
N_BARS = 24 * 130
OOS_DAYS = 75
OOS_BARS = 24 * OOS_DAYS
FIRST_BAR = N_BARS - OOS_BARS
GATE = GateConfig()
ENV = EnvConfig(window=16, max_leverage=1.0, gross_leverage_cap=3.0, no_trade_band=0.0)
TRAIN = TrainConfig(total_timesteps=4_096, seed=0, env=ENV)
ORACLE_WEIGHT = 0.002
NOISY_ORACLE_WEIGHT = 0.005
NOISY_ORACLE_HIT = 0.6


@pytest.fixture(scope="module")
def market() -> MarketData:
    return make_synthetic_market(n_assets=N_ASSETS, n_bars=N_BARS, seed=3)


@pytest.fixture(scope="module")
def normalizer(market: MarketData) -> FeatureNormalizer:
    return FeatureNormalizer.fit(market.features[:FIRST_BAR])


@pytest.fixture(scope="module")
def trained(market: MarketData) -> TrainedPolicy:
    return train_policy(market.slice(0, FIRST_BAR), TRAIN)


def evaluate(
    market: MarketData,
    normalizer: FeatureNormalizer,
    candidate: PolicyActor | ScheduledWeights,
    seed: int = 0,
) -> tuple[Evaluation, GateDecision]:
    """The candidate and every baseline out of sample, and the default gate's decision."""
    evaluation = evaluate_strategies(market, ENV, normalizer, FIRST_BAR, candidate, seed=seed)
    return evaluation, decide_promotion(evaluation.evidence, GATE)


def random_actor(seed: int = 0) -> PolicyActor:
    """Uniform actions in [-1, 1] from a seeded generator."""
    rng = np.random.default_rng(seed)
    return PolicyActor(CANDIDATE, lambda obs: rng.uniform(-1.0, 1.0, (len(obs), N_ASSETS)))


def sb3_actor(trained: TrainedPolicy) -> PolicyActor:
    """The trained agent's deterministic ``predict``."""
    algorithm = trained.algorithm
    return PolicyActor(CANDIDATE, lambda obs: algorithm.predict(obs, deterministic=True)[0])


def next_bar_return(market: MarketData) -> np.ndarray:
    """(T, N) row t: open-to-close return of bar t + 1, the bar an order decided at the close
    of bar t fills into and is held over (0 on the last row). A deliberate look-ahead."""
    ahead = np.zeros_like(market.close)
    ahead[:-1] = market.close[1:] / market.open[1:] - 1.0
    return ahead


def oracle(market: MarketData, weight: float, hit: float = 1.0, seed: int = 0) -> ScheduledWeights:
    """+-``weight`` per asset by the sign of the next bar's return, right with probability
    ``hit`` (a seeded coin flips the sign otherwise)."""
    right = np.random.default_rng(seed).random(market.close.shape) < hit
    sign = np.sign(next_bar_return(market))
    return ScheduledWeights(CANDIDATE, np.where(right, sign, -sign) * weight)


def numbers(evaluation: Evaluation, decision: GateDecision) -> str:
    """The candidate's evidence and the decision, for assertion messages."""
    evidence = evaluation.evidence
    c = evidence.candidate
    return (
        f"sharpe={c.sharpe:.4f} sortino={c.sortino:.4f} calmar={c.calmar:.4g} "
        f"max_drawdown={c.max_drawdown:.4f} turnover_cost={c.turnover_cost:.4f} "
        f"hit_rate={c.hit_rate:.3f} bars={c.n_bars} days={c.n_days} "
        f"best_baseline={evidence.best_baseline} "
        f"baseline_sharpes={ {n: round(m.sharpe, 4) for n, m in evidence.baselines.items()} } "
        f"ci={evidence.sharpe_difference_ci} dsr={evidence.deflated_sharpe:.4f} "
        f"promote={decision.promote} reasons={decision.reasons}"
    )


def has_reason(decision: GateDecision, *fragments: str) -> bool:
    """Whether some reason contains every fragment."""
    return any(all(f in reason for f in fragments) for reason in decision.reasons)


def test_candidate_and_baselines_are_on_the_same_out_of_sample_bars(market, normalizer):
    evaluation, _ = evaluate(market, normalizer, random_actor())
    ledgers = evaluation.ledgers
    assert list(ledgers) == [CANDIDATE, *BASELINES]
    expected = market.close_times[FIRST_BAR:]
    for name, ledger in ledgers.items():
        np.testing.assert_array_equal(ledger.close_times, expected, err_msg=name)
        assert ledger.start_time == market.close_times[FIRST_BAR - 1], name
    assert evaluation.first_oos_timestamp == market.timestamps[FIRST_BAR]
    for name, metrics in evaluation.metrics.items():
        assert (metrics.n_bars, metrics.n_days) == (OOS_BARS, OOS_DAYS), name
    assert GATE.min_oos_bars <= OOS_BARS and GATE.min_oos_days <= OOS_DAYS


def test_random_policy_is_refused_for_drawdown_costs_sharpe_and_statistics(market, normalizer):
    evaluation, decision = evaluate(market, normalizer, random_actor())
    c = evaluation.evidence.candidate
    text = numbers(evaluation, decision)
    assert not decision.promote, text
    assert c.max_drawdown > GATE.max_drawdown and has_reason(decision, "max drawdown"), text
    assert c.turnover_cost > GATE.max_turnover_cost and has_reason(decision, "turnover cost"), text
    assert has_reason(decision, "vs baseline equal_weight", "does not exceed"), text
    assert has_reason(decision, "statistical test (ci_or_dsr) failed"), text
    assert evaluation.evidence.sharpe_difference_ci[0] < 0.0, text


def test_maximum_leverage_policy_is_refused_it_only_scales_equal_weight(market, normalizer):
    actor = PolicyActor(CANDIDATE, lambda obs: np.ones((len(obs), N_ASSETS)))
    evaluation, decision = evaluate(market, normalizer, actor)
    c = evaluation.evidence.candidate
    text = numbers(evaluation, decision)
    weights = evaluation.ledgers[CANDIDATE].weights
    cap = ENV.gross_leverage_cap / N_ASSETS
    assert np.abs(weights - cap).max() < 0.05 * cap, text
    assert c.avg_gross_exposure == pytest.approx(ENV.gross_leverage_cap, rel=0.02), text
    assert not decision.promote, text
    equal = evaluation.evidence.baselines["equal_weight"].sharpe
    assert c.sharpe <= equal + GATE.min_sharpe_margin_vs_baseline, text
    assert has_reason(decision, "vs baseline equal_weight", "does not exceed"), text
    assert has_reason(decision, "statistical test (ci_or_dsr) failed"), text


def test_equal_weight_clone_ties_exactly_and_the_strict_margin_refuses(market, normalizer):
    clone = equal_weight(market, name=CANDIDATE)
    np.testing.assert_array_equal(clone.targets, equal_weight(market).targets)
    evaluation, decision = evaluate(market, normalizer, clone)
    evidence = evaluation.evidence
    text = numbers(evaluation, decision)
    np.testing.assert_array_equal(
        evaluation.ledgers[CANDIDATE].equity, evaluation.ledgers["equal_weight"].equity
    )
    assert evidence.best_baseline == "equal_weight", text
    assert evidence.candidate.sharpe == evidence.baselines["equal_weight"].sharpe, text
    assert evidence.sharpe_difference_ci == (0.0, 0.0), text
    assert not decision.promote, text
    assert has_reason(decision, "vs baseline equal_weight", "margin +0.000", "does not exceed"), (
        text
    )
    assert has_reason(decision, "[0.000, 0.000] does not have its lower bound above 0.0"), text


def test_perfect_next_bar_oracle_is_promoted(market, normalizer):
    evaluation, decision = evaluate(market, normalizer, oracle(market, ORACLE_WEIGHT))
    assert decision.promote and decision.reasons == [], numbers(evaluation, decision)


def test_perfect_next_bar_oracle_passes_every_threshold_the_gate_decides_on(market, normalizer):
    evaluation, decision = evaluate(market, normalizer, oracle(market, ORACLE_WEIGHT))
    evidence = evaluation.evidence
    c = evidence.candidate
    text = numbers(evaluation, decision)
    best = max(m.sharpe for m in evidence.baselines.values())
    assert c.sharpe > best + GATE.min_sharpe_margin_vs_baseline, text
    assert evidence.sharpe_difference_ci[0] > GATE.ci_lower_above, text
    assert evidence.deflated_sharpe > GATE.min_deflated_sharpe, text
    assert c.max_drawdown <= GATE.max_drawdown, text
    assert c.turnover_cost <= GATE.max_turnover_cost, text
    assert not c.liquidated and c.hit_rate == 1.0, text


def test_noisy_next_bar_oracle_with_losing_days_is_promoted(market, normalizer):
    candidate = oracle(market, NOISY_ORACLE_WEIGHT, hit=NOISY_ORACLE_HIT)
    evaluation, decision = evaluate(market, normalizer, candidate)
    c = evaluation.evidence.candidate
    text = numbers(evaluation, decision)
    assert 0.0 < c.hit_rate < 1.0 and math.isfinite(c.sortino), text
    assert decision.promote and decision.reasons == [], text
    assert decision.override is None and decision.thresholds == GateConfig().as_dict(), text


def expected_reasons(evaluation: Evaluation) -> list[str]:
    """The default gate's failed conditions, recomputed from the evidence."""
    evidence = evaluation.evidence
    c = evidence.candidate
    values = [v for v in c.as_dict().values() if not isinstance(v, bool)]
    low, _ = evidence.sharpe_difference_ci
    failed = {
        "not finite": not all(math.isfinite(v) for v in values),
        "out-of-sample bars": c.n_bars < GATE.min_oos_bars,
        "out-of-sample days": c.n_days < GATE.min_oos_days,
        "liquidat": c.liquidations > 0,
        "max drawdown": c.max_drawdown > GATE.max_drawdown,
        "turnover cost": c.turnover_cost > GATE.max_turnover_cost,
        "does not exceed the required": any(
            c.sharpe - m.sharpe <= GATE.min_sharpe_margin_vs_baseline
            for m in evidence.baselines.values()
        ),
        "statistical test": not (
            low > GATE.ci_lower_above or evidence.deflated_sharpe > GATE.min_deflated_sharpe
        ),
    }
    return [name for name, fails in failed.items() if fails]


def test_trained_ppo_decision_is_consistent_with_its_evidence(market, trained):
    evaluation, decision = evaluate(market, trained.builder.normalizer, sb3_actor(trained))
    text = numbers(evaluation, decision)
    expected = expected_reasons(evaluation)
    assert decision.promote == (not expected), text
    for fragment in expected:
        assert has_reason(decision, fragment), f"{fragment!r} missing: {text}"
    margins = [r for r in decision.reasons if "does not exceed the required" in r]
    c = evaluation.evidence.candidate
    beaten = [
        n
        for n, m in evaluation.evidence.baselines.items()
        if c.sharpe - m.sharpe > GATE.min_sharpe_margin_vs_baseline
    ]
    assert len(margins) == len(BASELINES) - len(beaten), text


def evidence_json(evaluation: Evaluation) -> str:
    """The evidence as canonical JSON (NaN compares equal as text)."""
    return json.dumps(evaluation.evidence.to_dict(), sort_keys=True)


def test_same_config_and_seed_give_the_same_evidence(market, normalizer, trained):
    first, _ = evaluate(market, normalizer, random_actor(seed=1))
    again, _ = evaluate(market, normalizer, random_actor(seed=1))
    assert evidence_json(first) == evidence_json(again)
    other, _ = evaluate(market, normalizer, random_actor(seed=2))
    assert evidence_json(other) != evidence_json(first)
    resampled, _ = evaluate(market, normalizer, random_actor(seed=1), seed=1)
    assert resampled.evidence.candidate == first.evidence.candidate
    assert resampled.evidence.sharpe_difference_ci != first.evidence.sharpe_difference_ci

    retrained = train_policy(market.slice(0, FIRST_BAR), TRAIN)
    policy, _ = evaluate(market, trained.builder.normalizer, sb3_actor(trained))
    repeated, _ = evaluate(market, retrained.builder.normalizer, sb3_actor(retrained))
    assert evidence_json(repeated) == evidence_json(policy)
