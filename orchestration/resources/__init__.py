"""Dagster resources, chosen per environment by ``build_resources``."""

from __future__ import annotations

import os
import shutil
import sys

from orchestration.resources.dbt_fork import ForkedDbt
from orchestration.resources.market_source import market_source_for
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import PromotionGateSettings, TrainingSettings
from orchestration.resources.warehouse import DuckDBWarehouse
from orchestration.settings import MODEL_NAME, ProjectPaths

DBT_PROJECT_DIR = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "dbt_project")
)

ENVIRONMENTS = ("local", "test")


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (the venv need not be on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "dbt")
    return beside if os.path.exists(beside) else shutil.which("dbt") or "dbt"


def build_resources(environment: str | None = None) -> dict[str, object]:
    """Resources for ``environment`` (default: ``PERPFOLIO_ENV`` or ``local``).

    ``local`` is the embedded default: a year of synthetic hourly bars for 5 perpetuals and a
    training budget that learns something in a minute or two. ``test`` is the same pipeline
    shrunk to run in seconds.
    """
    environment = environment or os.environ.get("PERPFOLIO_ENV", "local")
    if environment not in ENVIRONMENTS:
        raise ValueError(f"PERPFOLIO_ENV must be one of {ENVIRONMENTS}, got {environment!r}")
    paths = ProjectPaths.from_env().ensure()
    shared = {
        "warehouse": DuckDBWarehouse(path=str(paths.warehouse)),
        "dbt": ForkedDbt(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR),
        "mlflow_registry": MlflowRegistry(
            tracking_uri=paths.mlflow_tracking_uri,
            artifact_root=str(paths.mlflow_artifacts),
            model_name=MODEL_NAME,
        ),
    }
    if environment == "test":
        return {
            **shared,
            "market_source": market_source_for("test"),
            "training": TrainingSettings(
                total_timesteps=1_024, n_envs=2, n_steps=128, batch_size=128, episode_length=128
            ),
            "promotion_gate": PromotionGateSettings(),
        }
    return {
        **shared,
        "market_source": market_source_for("local"),
        "training": TrainingSettings(),
        "promotion_gate": PromotionGateSettings(),
    }
