"""The dbt project and dagster-dbt's ``DbtCliResource`` that runs it.

dbt runs as dagster-dbt runs it by default: a ``dbt`` process per command, started from the step,
its artifacts and log in ``$DBT_TARGET_PATH/<step>-<run>-<id>/`` (``dbt_project/target/`` unless
``DBT_TARGET_PATH`` says otherwise). The ``dbt`` is the one installed beside this interpreter, so
the venv need not be on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR = str(Path(__file__).resolve().parents[2] / "dbt_project")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """The dbt installed beside this interpreter (the venv need not be on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "dbt")
    return beside if os.path.exists(beside) else shutil.which("dbt") or "dbt"


def dbt_resource() -> DbtCliResource:
    """dagster-dbt's resource for the project, with the dbt beside this interpreter."""
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


def parse_dbt_project() -> None:
    """Write the manifest the code location loads (``dbt parse`` into the project's
    ``target/``), as ``DbtProject.preparer.prepare`` does, with the dbt beside this interpreter."""
    dbt_resource().cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()


def dbt_warehouse_path() -> Path:
    """The file dbt builds into: ``$PERPFOLIO_HOME/warehouse.duckdb``, as ``profiles.yml`` reads
    it (a relative path from the dbt project folder, where dagster-dbt runs dbt)."""
    home = os.environ.get("PERPFOLIO_HOME", "../.perpfolio")
    return (Path(DBT_PROJECT_DIR) / home / "warehouse.duckdb").resolve()
