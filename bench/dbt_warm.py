"""Times one dbt invocation inside a warm process: dbt imported, the manifest loaded and the
adapter warmed up by a one-view run, the counterpart of pandas' compute on frames in memory.
Prints the seconds. The pipeline runs dbt as a process; this tells dbt's work apart from its
start-up.

    .venv/bin/python bench/dbt_warm.py DBT_PROJECT_DIR WAREHOUSE run --full-refresh
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    project_dir, warehouse, *args = sys.argv[1:]
    os.environ["PERPFOLIO_WAREHOUSE"] = warehouse
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    from dbt.cli.main import dbtRunner

    common = ["--profiles-dir", project_dir, "--project-dir", project_dir, "--quiet"]
    manifest = dbtRunner().invoke(["parse", *common]).result
    runner = dbtRunner(manifest=manifest)
    runner.invoke(["run", "--select", "stg_market__data_gaps", *common])
    started = time.perf_counter()
    result = runner.invoke([*args, *common])
    seconds = time.perf_counter() - started
    if not result.success:
        sys.exit(f"dbt {' '.join(args)} failed: {result.exception}")
    print(seconds)


if __name__ == "__main__":
    main()
