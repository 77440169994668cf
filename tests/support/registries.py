"""A real MLflow registry (SQLite) for tests, and tiny registered versions."""

import mlflow
from mlflow.exceptions import MlflowException

from orchestration.resources.mlflow_registry import MlflowRegistry

MODEL = "test-policy"
SYMBOLS = ("BTC", "ETH")


def make_registry(tmp_path) -> MlflowRegistry:
    return MlflowRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        model_name=MODEL,
    )


def register(
    registry: MlflowRegistry,
    venue: str = "synthetic",
    timeframe: str = "1h",
    symbols: tuple[str, ...] = SYMBOLS,
    sharpe: float | None = None,
) -> str:
    """A new version of the registry's model: a run with training's data params and a tiny
    artifact."""
    experiment = registry.activate()
    client = registry.client()
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_params({"venue": venue, "timeframe": timeframe, "symbols": ",".join(symbols)})
        if sharpe is not None:
            mlflow.log_metric("oos_candidate_sharpe", sharpe)
        mlflow.log_text("tiny policy", "policy/policy.txt")
    name = registry.model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/policy", run_id=run.info.run_id
    )
    return str(version.version)
