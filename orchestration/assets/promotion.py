"""Promotion: move the ``champion`` alias only when the evaluation gate passes."""

from dataclasses import replace

import dagster as dg

from evaluation.gate import GateEvidence, decide_promotion
from orchestration.project import CHAMPION_ALIAS
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import PromotionGateSettings


@dg.asset(group_name="promotion", kinds={"mlflow"})
def champion_model(
    policy_evaluation: dict, mlflow_registry: MlflowRegistry, promotion_gate: PromotionGateSettings
) -> dg.Output[dict]:
    """The registry's champion after this run's decision, and every reason for it.

    The gate decides on the evaluation's ``gate_evidence`` with this environment's thresholds;
    the decision goes to the candidate version's tags and to this materialization's metadata.
    A champion that moved since the evaluation (e.g. a rollback) refuses: the evidence compared
    the candidate with another version. A registry error fails the step.
    """
    evidence = GateEvidence.from_dict(policy_evaluation["gate_evidence"])
    version = str(policy_evaluation["version"])
    decision = decide_promotion(evidence, promotion_gate.gate_config())
    champion_now = mlflow_registry.champion_version()
    if champion_now not in (evidence.champion_version, version):
        evaluated = f"v{evidence.champion_version}" if evidence.champion_version else "none"
        moved = (
            f"@{CHAMPION_ALIAS} moved since the evaluation (evaluated against {evaluated}, "
            f"now v{champion_now})"
        )
        decision = replace(decision, promote=False, reasons=[*decision.reasons, moved])
    replaced = None
    if decision.promote:
        replaced = mlflow_registry.promote(version, decision)
    else:
        mlflow_registry.record_decision(version, decision)
    champion, previous = mlflow_registry.champion_version(), mlflow_registry.previous_version()
    summary = {
        "candidate_version": version,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "thresholds": decision.thresholds,
        "override": decision.override,
        "champion_version": champion,
        "previous_version": previous,
        "replaced_version": replaced,
    }
    return dg.Output(
        summary,
        metadata={
            "candidate_version": version,
            "promoted": decision.promote,
            "decision": decision.summary,
            "reasons": dg.MetadataValue.md(
                "\n".join(f"- {r}" for r in decision.reasons) or "none: every condition passed"
            ),
            "n_reasons": len(decision.reasons),
            "thresholds": dg.MetadataValue.json(decision.thresholds),
            "override": decision.override or "none",
            "champion_version": champion or "none",
            "previous_version": previous or "none",
        },
    )
