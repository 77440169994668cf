"""The promotion gate fails closed: every probe of the issue is a refusal with its reason."""

import json
import math
from dataclasses import replace

import pytest

from evaluation.gate import (
    MAX_DRAWDOWN_FLOOR,
    MIN_OOS_DAYS_FLOOR,
    GateConfig,
    GateEvidence,
    decide_promotion,
)
from tests.support.gate import evidence, metrics


def test_evidence_that_beats_every_bar_is_promoted_with_the_thresholds_recorded():
    decision = decide_promotion(evidence(), GateConfig())
    assert decision.promote and decision.reasons == [] and decision.summary == "passed"
    assert decision.thresholds == GateConfig().as_dict()
    assert decision.thresholds["max_drawdown"] == 0.35
    assert decision.override is None


def test_a_sharpe_tie_refuses_even_with_zero_margins():
    config = GateConfig(min_sharpe_margin_vs_baseline=0.0, min_sharpe_margin_vs_champion=0.0)
    tie = evidence(baselines={"equal_weight": metrics(sharpe=2.0)})
    decision = decide_promotion(tie, config)
    assert not decision.promote
    assert decision.reasons == [
        "Sharpe 2.000 vs baseline equal_weight 2.000: margin +0.000 does not exceed the "
        "required +0.000"
    ]
    champion_tie = evidence(champion=metrics(sharpe=2.0), champion_version="4")
    decision = decide_promotion(champion_tie, config)
    assert not decision.promote and decision.reasons[0].startswith("Sharpe 2.000 vs champion v4")
    assert decide_promotion(replace(champion_tie, champion=metrics(sharpe=1.99)), config).promote


@pytest.mark.parametrize("field", ["sharpe", "max_drawdown", "turnover_cost", "total_return"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_candidate_metric_refuses_naming_it(field, value):
    decision = decide_promotion(evidence(candidate=metrics(**{field: value})), GateConfig())
    assert not decision.promote
    assert f"candidate {field} is {value} (not finite)" in decision.reasons


@pytest.mark.parametrize("field", ["sortino", "calmar"])
def test_a_ratio_undefined_without_a_losing_day_does_not_refuse(field):
    """Sortino and Calmar are NaN without a losing day or a drawdown: reported, not decided on."""
    assert decide_promotion(evidence(candidate=metrics(**{field: math.nan})), GateConfig()).promote


def test_non_finite_baseline_champion_or_statistics_refuse_naming_them():
    bad = evidence(
        baselines={"cash": metrics(sharpe=0.0), "equal_weight": metrics(max_drawdown=math.nan)},
        champion=metrics(sharpe=math.nan),
        champion_version="2",
        sharpe_difference_ci=(math.nan, 1.0),
        deflated_sharpe=math.nan,
    )
    reasons = decide_promotion(bad, GateConfig()).reasons
    assert "baseline equal_weight max_drawdown is nan (not finite)" in reasons
    assert "champion v2 sharpe is nan (not finite)" in reasons
    assert "Sharpe-difference CI lower bound is nan (not finite)" in reasons
    assert "deflated Sharpe is nan (not finite)" in reasons


def test_a_flat_policy_does_not_beat_cash_and_fails_the_statistical_test():
    flat = evidence(
        candidate=metrics(sharpe=0.0, sortino=0.0, total_return=0.0, max_drawdown=0.0),
        baselines={"cash": metrics(sharpe=0.0), "equal_weight": metrics(sharpe=-0.4)},
        sharpe_difference_ci=(0.0, 0.0),
        best_baseline="cash",
        deflated_sharpe=0.5,
    )
    decision = decide_promotion(flat, GateConfig(min_sharpe_margin_vs_baseline=0.0))
    assert not decision.promote
    assert len(decision.reasons) == 2
    assert decision.reasons[0].startswith("Sharpe 0.000 vs baseline cash 0.000")
    assert decision.reasons[1].startswith("statistical test (ci_or_dsr) failed")
    assert "deflated Sharpe 0.500 (N=3) is not above 0.95" in decision.reasons[1]


def test_one_out_of_sample_bar_refuses():
    one = {"n_bars": 1, "n_days": 1}
    short = evidence(
        candidate=metrics(**one),
        baselines={"cash": metrics(sharpe=0.0, **one), "equal_weight": metrics(sharpe=1, **one)},
    )
    reasons = decide_promotion(short, GateConfig()).reasons
    assert reasons[0] == "1 out-of-sample bars, fewer than the required 500"
    assert reasons[1] == "1 out-of-sample days, fewer than the required 60"
    assert len(reasons) == 2


def test_baselines_on_other_bars_or_none_at_all_refuse():
    reasons = decide_promotion(evidence(baselines={}), GateConfig()).reasons
    assert reasons == ["no baselines to compare against"]
    other_bars = evidence(
        baselines={"cash": metrics(sharpe=0.0), "equal_weight": metrics(sharpe=1.0, n_bars=9)}
    )
    assert decide_promotion(other_bars, GateConfig()).reasons == [
        "baseline equal_weight has 9 bars, the candidate 2000"
    ]
    unknown = decide_promotion(evidence(best_baseline="momentum"), GateConfig())
    assert unknown.reasons == ["best baseline 'momentum' is not among the baselines"]


def test_a_champion_on_other_bars_refuses():
    champion = {"champion": metrics(sharpe=1.0), "champion_version": "7"}
    assert decide_promotion(evidence(**champion), GateConfig()).promote
    for changed in (
        evidence(**champion, champion_same_bars=False),
        evidence(champion=metrics(sharpe=1.0, n_bars=1_999), champion_version="7"),
    ):
        decision = decide_promotion(changed, GateConfig())
        assert not decision.promote
        assert decision.reasons[0].startswith("champion v7 was not backtested on the candidate's")


def test_every_baseline_must_be_beaten_by_the_margin():
    close = evidence(
        baselines={"cash": metrics(sharpe=0.0), "momentum": metrics(sharpe=1.95)},
        best_baseline="momentum",
    )
    decision = decide_promotion(close, GateConfig())
    assert decision.reasons == [
        "Sharpe 2.000 vs baseline momentum 1.950: margin +0.050 does not exceed the required +0.100"
    ]


def test_liquidation_drawdown_and_turnover_cost_refuse_each_with_a_reason():
    risky = evidence(
        candidate=metrics(liquidated=True, liquidations=2, max_drawdown=0.36, turnover_cost=0.06)
    )
    assert decide_promotion(risky, GateConfig()).reasons == [
        "candidate was liquidated out of sample (2 liquidations)",
        "max drawdown 36.0% exceeds the limit 35.0%",
        "turnover cost 6.00% of initial equity exceeds the limit 5.00%",
    ]
    at_limits = evidence(candidate=metrics(max_drawdown=0.35, turnover_cost=0.05))
    assert decide_promotion(at_limits, GateConfig()).promote


@pytest.mark.parametrize(
    ("ci_low", "dsr", "expected"),
    [
        (0.2, 0.97, {"ci_or_dsr": True, "ci": True, "dsr": True, "both": True}),
        (0.2, 0.90, {"ci_or_dsr": True, "ci": True, "dsr": False, "both": False}),
        (-0.1, 0.97, {"ci_or_dsr": True, "ci": False, "dsr": True, "both": False}),
        (0.0, 0.95, {"ci_or_dsr": False, "ci": False, "dsr": False, "both": False}),
    ],
)
def test_statistical_test_modes(ci_low, dsr, expected):
    probe = evidence(sharpe_difference_ci=(ci_low, 1.0), deflated_sharpe=dsr)
    for mode, promote in expected.items():
        decision = decide_promotion(probe, GateConfig(statistical_test=mode))
        assert decision.promote is promote, mode
        if not promote:
            assert decision.reasons == [decision.reasons[0]]
            assert decision.reasons[0].startswith(f"statistical test ({mode}) failed")


def test_malformed_statistics_refuse():
    assert decide_promotion(evidence(sharpe_difference_ci=(1.0, 0.5)), GateConfig()).reasons == [
        "Sharpe-difference CI [1.0, 0.5] has its bounds reversed"
    ]
    assert decide_promotion(evidence(n_trials=0), GateConfig()).reasons == [
        "n_trials is 0: the deflated Sharpe needs at least 1"
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_sharpe_margin_vs_baseline": -100.0}, "min_sharpe_margin_vs_baseline"),
        ({"min_sharpe_margin_vs_champion": -0.01}, "min_sharpe_margin_vs_champion"),
        ({"max_drawdown": 1.0}, "max_drawdown"),
        ({"max_turnover_cost": 0.3}, "max_turnover_cost"),
        ({"min_oos_bars": 1}, "min_oos_bars"),
        ({"min_oos_days": 1}, "min_oos_days"),
        ({"min_deflated_sharpe": 0.5}, "min_deflated_sharpe"),
        ({"ci_lower_above": -1.0}, "ci_lower_above"),
    ],
)
def test_thresholds_looser_than_their_floors_need_an_override(changes, field):
    with pytest.raises(ValueError, match=f"looser than its floors: {field} "):
        GateConfig(**changes)
    config = GateConfig(**changes, override_reason="research run")
    decision = decide_promotion(evidence(), config)
    assert decision.override == f"{config.loosened()[0]} (reason: research run)"
    assert field in decision.override and decision.thresholds[field] == changes[field]


def test_an_override_lets_the_loosened_thresholds_pass_and_names_itself():
    config = GateConfig(
        min_sharpe_margin_vs_baseline=-100.0, max_drawdown=1.0, override_reason="paper trading"
    )
    deep = evidence(
        candidate=metrics(sharpe=0.5, max_drawdown=0.9),
        baselines={"cash": metrics(sharpe=0.0), "equal_weight": metrics(sharpe=1.0)},
    )
    assert not decide_promotion(deep, GateConfig()).promote
    decision = decide_promotion(deep, config)
    assert decision.promote
    assert decision.override == (
        f"max_drawdown 1.0 > floor {MAX_DRAWDOWN_FLOOR}; "
        "min_sharpe_margin_vs_baseline -100.0 < floor 0.0 (reason: paper trading)"
    )
    assert decision.summary == f"passed [override: {decision.override}]"
    assert decision.thresholds["override_reason"] == "paper trading"


def test_invalid_configs_raise_whatever_the_override():
    with pytest.raises(ValueError, match="override_reason must say why"):
        GateConfig(max_drawdown=1.0, override_reason="  ")
    with pytest.raises(ValueError, match="max_drawdown must be finite"):
        GateConfig(max_drawdown=math.nan, override_reason="x")
    with pytest.raises(ValueError, match="statistical_test must be one of"):
        GateConfig(statistical_test="none")
    assert GateConfig(min_oos_days=MIN_OOS_DAYS_FLOOR).loosened() == []


def test_every_failed_condition_is_a_reason():
    everything_wrong = evidence(
        candidate=metrics(
            sharpe=-1.0, n_bars=10, n_days=1, liquidated=True, max_drawdown=0.9, turnover_cost=1
        ),
        baselines={"cash": metrics(sharpe=0.0, n_bars=10)},
        best_baseline="cash",
        champion=metrics(sharpe=0.5, n_bars=10),
        champion_version="1",
        champion_same_bars=False,
        sharpe_difference_ci=(-2.0, -0.5),
        deflated_sharpe=0.1,
    )
    reasons = decide_promotion(everything_wrong, GateConfig()).reasons
    assert len(reasons) == 9, reasons


def test_evidence_round_trips_through_json():
    with_champion = evidence(champion=metrics(sharpe=1.5), champion_version="3")
    for value in (evidence(), with_champion):
        restored = GateEvidence.from_dict(json.loads(json.dumps(value.to_dict())))
        assert restored == value
    with pytest.raises(KeyError, match="n_trials"):
        GateEvidence.from_dict({k: v for k, v in evidence().to_dict().items() if k != "n_trials"})
