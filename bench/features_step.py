"""Times one run of the features step as the pipeline runs it: a process that has loaded the
code location, as a Dagster step has, materializes ``dbt_features`` with dagster-dbt's
``DbtCliResource`` (a ``dbt build`` process: models and data tests, parse included) against
``$PERPFOLIO_HOME/warehouse.duckdb``, artifacts in ``$DBT_TARGET_PATH``. Prints the step's
seconds, dbt's own elapsed seconds (``run_results.json``), and the peak resident memory in GiB
of this process and of its largest child (the dbt process).

    .venv/bin/python bench/features_step.py [--full-refresh] [--window START END]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--window", nargs=2, metavar=("START", "END"))
    args = parser.parse_args()

    import dagster as dg

    import orchestration.definitions  # noqa: F401  (the code location, loaded as in a step)
    from orchestration.assets.features import FeatureBuildConfig, dbt_features
    from orchestration.resources.dbt_cli import dbt_resource, dbt_warehouse_path
    from orchestration.resources.warehouse import DuckDBWarehouse

    start, end = args.window or (None, None)
    config = FeatureBuildConfig(full_refresh=args.full_refresh, window_start=start, window_end=end)
    warehouse = DuckDBWarehouse(path=str(dbt_warehouse_path()))
    resources = {"dbt": dbt_resource(), "warehouse": warehouse}
    started = time.perf_counter()
    result = dg.materialize(
        [dbt_features], resources=resources, run_config=dg.RunConfig({"dbt_features": config})
    )
    seconds = time.perf_counter() - started
    target = Path(os.environ["DBT_TARGET_PATH"])
    [run_results] = target.glob(f"dbt_features-{result.run_id[:7]}-*/run_results.json")
    dbt_seconds = json.loads(run_results.read_text())["elapsed_time"]
    step, child = (
        resource.getrusage(who).ru_maxrss / 2**20  # KiB on Linux
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    print(seconds, dbt_seconds, step, child)


if __name__ == "__main__":
    main()
