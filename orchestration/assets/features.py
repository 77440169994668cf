"""Features: the dbt project (staging -> intermediate -> marts) as Dagster assets."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.resources import DBT_PROJECT_DIR
from orchestration.resources.warehouse import DuckDBWarehouse

FEATURE_MART = dg.AssetKey(["marts", "fct_features"])

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _manifest_is_stale(project: DbtProject) -> bool:
    manifest = Path(project.manifest_path)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [Path(project.project_dir) / "dbt_project.yml"]
    for folder in ("models", "macros", "tests"):
        sources.extend((Path(project.project_dir) / folder).rglob("*"))
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


if _manifest_is_stale(dbt_project):
    dbt_project.preparer.prepare(dbt_project)


class FeatureTranslator(DagsterDbtTranslator):
    """Every dbt model lands in the ``features`` group."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"


@dbt_assets(manifest=dbt_project.manifest_path, dagster_dbt_translator=FeatureTranslator())
def dbt_features(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: DuckDBWarehouse
):
    """Build and test the dbt models against the warehouse file."""
    os.environ["PERPFOLIO_WAREHOUSE"] = warehouse.path
    yield from dbt.cli(["build"], context=context).stream()
