"""Dagster resources, chosen per environment by ``build_resources``."""

from __future__ import annotations

import os

import dagster as dg

from orchestration.project import MODEL_NAME, ProjectPaths
from orchestration.resources.dbt_cli import dbt_resource
from orchestration.resources.market_source import market_source_for
from orchestration.resources.mlflow_registry import MlflowRegistry
from orchestration.resources.settings import (
    PromotionGateSettings,
    ServingSettings,
    TrainingSettings,
    WalkForwardSettings,
)
from orchestration.resources.warehouse import DuckDBWarehouse

ENVIRONMENTS = ("local", "test")


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
        # Asset outputs as files under the Dagster home, also for in-process runs (the CLI, the
        # demo), so a later run reads them: the walk-forward report reads every fold's output.
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.dagster_home / "storage")),
        "warehouse": DuckDBWarehouse(path=str(paths.warehouse)),
        "dbt": dbt_resource(),
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
                total_timesteps=1_024,
                n_envs=2,
                n_steps=128,
                batch_size=128,
                episode_length=8,
                validation_every=0,
            ),
            "promotion_gate": PromotionGateSettings(),
            "walk_forward": WalkForwardSettings(),
            "serving": ServingSettings(clock=_serving_clock()),
        }
    return {
        **shared,
        "market_source": market_source_for("local"),
        "training": TrainingSettings(),
        "promotion_gate": PromotionGateSettings(),
        "walk_forward": WalkForwardSettings(),
        "serving": ServingSettings(clock=_serving_clock()),
    }


def _serving_clock() -> str:
    """``wall`` for data fetched live from an exchange (ccxt); ``data`` for the rest, which is
    a replay (the synthetic market, files, the local exchange's fixed history)."""
    return "wall" if os.environ.get("PERPFOLIO_MARKET_SOURCE") == "ccxt" else "data"
