"""Promotion: move the ``champion`` alias only when the evaluation gate passes."""

import dagster as dg

from evaluation.gate import decide_promotion
from evaluation.metrics import PerformanceMetrics
from orchestration.project import CHAMPION_ALIAS
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import PromotionGateSettings


def _metrics(values: dict | None) -> PerformanceMetrics | None:
    return PerformanceMetrics(**values) if values is not None else None


@dg.asset(group_name="promotion", kinds={"mlflow"})
def champion_model(
    policy_evaluation: dict, mlflow_registry: MlflowRegistry, promotion_gate: PromotionGateSettings
) -> dg.Output[dict]:
    """The registry's champion after this run's decision, and the reasons for it."""
    decision = decide_promotion(
        _metrics(policy_evaluation["candidate"]),
        _metrics(policy_evaluation["baseline"]),
        _metrics(policy_evaluation["champion"]),
        promotion_gate.gate_config(),
    )
    client = mlflow_registry.client()
    name, version = mlflow_registry.model_name, policy_evaluation["version"]
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    client.set_model_version_tag(name, version, "promotion_decision", decision.summary)
    summary = {
        "candidate_version": version,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "champion_version": mlflow_registry.champion_version(),
    }
    return dg.Output(
        summary,
        metadata={
            "candidate_version": version,
            "promoted": decision.promote,
            "decision": decision.summary,
            "champion_version": summary["champion_version"] or "none",
        },
    )
