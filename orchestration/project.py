"""The project's names, and where it keeps its state: one folder (``PERPFOLIO_HOME``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_NAME = "perpfolio-policy"
CHAMPION_ALIAS = "champion"
PREVIOUS_ALIAS = "previous"
"""Registry alias of the champion that the current one replaced (what a rollback restores)."""


@dataclass(frozen=True)
class ProjectPaths:
    """Locations of the embedded warehouse, MLflow store and Dagster home."""

    home: Path

    @classmethod
    def from_env(cls) -> ProjectPaths:
        home = os.environ.get("PERPFOLIO_HOME") or str(Path.cwd() / ".perpfolio")
        return cls(home=Path(home).resolve())

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def ensure(self) -> ProjectPaths:
        for path in (self.home, self.mlflow_dir, self.mlflow_artifacts, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        return self
