"""MLflow tracking and model registry (SQLite backend, local artifacts by default)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
from mlflow.exceptions import MlflowException

from orchestration.project import CHAMPION_ALIAS

EXPERIMENT = "perpfolio"


class MlflowRegistry(dg.ConfigurableResource):
    """Where runs are tracked and policies registered under ``model_name``."""

    tracking_uri: str
    artifact_root: str
    model_name: str

    def activate(self) -> str:
        """Point MLflow at this store and return the experiment id."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(
            EXPERIMENT, artifact_location=Path(self.artifact_root).resolve().as_uri()
        )

    def client(self) -> mlflow.MlflowClient:
        self.activate()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def champion_version(self) -> str | None:
        """The version number holding the champion alias, as a string, or None."""
        try:
            champion = self.client().get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except MlflowException:
            return None
        return str(champion.version)

    def model_uri(self, version: str) -> str:
        return f"models:/{self.model_name}/{version}"
