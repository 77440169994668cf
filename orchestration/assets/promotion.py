"""Promotion: a conservative baseline holds the ``champion`` alias from the first run; the
alias moves to a trained policy only when the evaluation gate passes."""

from dataclasses import replace

import dagster as dg
import mlflow
import numpy as np

from evaluation.gate import GateEvidence, decide_promotion
from orchestration.assets.features import FEATURE_MART
from orchestration.assets.training import training_market
from orchestration.project import CHAMPION_ALIAS
from orchestration.resources.market_source import MarketSource
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import PromotionGateSettings, TrainingSettings
from orchestration.resources.warehouse import DuckDBWarehouse
from training.observation import FeatureNormalizer, ObservationBuilder
from training.policy_model import BASELINE_ALGORITHM, PolicySpec, log_baseline_policy
from training.train import train_end_timestamp

DAY_ONE_GROSS_LEVERAGE = 0.5
"""Gross leverage of the day-one champion: equal weight long at half the equity."""


@dg.asset(group_name="promotion", deps=[FEATURE_MART], kinds={"mlflow"})
def day_one_champion(
    warehouse: DuckDBWarehouse,
    market_source: MarketSource,
    training: TrainingSettings,
    mlflow_registry: MlflowRegistry,
) -> dg.MaterializeResult:
    """A conservative registered policy that holds ``@champion`` until a trained one beats it
    at the gate, so serving runs from the first demo: equal weight long at 0.5x gross,
    rebalanced at the default configuration's decision interval, on the training universe.
    Registered once (tag ``kind=baseline``); an existing champion is never replaced."""
    champion = mlflow_registry.champion_version()
    if champion is not None:
        return dg.MaterializeResult(
            metadata={"champion_version": champion, "installed": False, "registered": False}
        )
    config = training.train_config(venue=market_source.venue)
    baselines = mlflow_registry.baseline_versions()
    registered = not baselines
    if registered:
        market = training_market(warehouse, market_source, config)
        n = market.n_assets
        builder = ObservationBuilder(
            market.feature_names,
            n,
            config.env.window,
            FeatureNormalizer.fit(market.features),
            config.env.obs_clip,
        )
        spec = PolicySpec(
            algorithm=BASELINE_ALGORITHM,
            symbols=market.symbols,
            venue=config.venue,
            timeframe=config.timeframe,
            env_config=config.env,
            builder=builder,
            train_end=train_end_timestamp(market),
        )
        weights = np.full(n, DAY_ONE_GROSS_LEVERAGE / n)
        experiment_id = mlflow_registry.activate()
        with mlflow.start_run(experiment_id=experiment_id, run_name="day-one-champion"):
            mlflow.set_tags({"stage": "day_one_champion"})
            version = str(log_baseline_policy(spec, weights, mlflow_registry.model_name).version)
        client = mlflow_registry.client()
        client.set_model_version_tag(mlflow_registry.model_name, version, "kind", "baseline")
        client.update_model_version(
            mlflow_registry.model_name,
            version,
            description=(
                f"Day-one champion: equal weight long at {DAY_ONE_GROSS_LEVERAGE}x gross over "
                f"{', '.join(market.symbols)}, rebalanced every {config.env.decision_interval} "
                f"{config.timeframe} bars. Holds @{CHAMPION_ALIAS} until a trained policy beats "
                "it at the promotion gate."
            ),
        )
    else:
        version = baselines[-1]
    installed = mlflow_registry.install_day_one_champion(version)
    return dg.MaterializeResult(
        metadata={
            "champion_version": mlflow_registry.champion_version() or "none",
            "baseline_version": version,
            "installed": installed,
            "registered": registered,
            "gross_leverage": DAY_ONE_GROSS_LEVERAGE,
        }
    )


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
