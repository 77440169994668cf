"""Times one dbt command as the pipeline runs it (``orchestration.resources.dbt_fork``): from a
process that has loaded the code location, as a Dagster step has, in a forked child that parses
the project and then runs the command. Prints the seconds (dbt's parse, adapter, materializations,
tests and artifacts included; the imports are the code location's, paid once per step), then the
peak resident memory in GiB of this process before the fork and of the forked child. The child's
figure counts the pages it shares with this process.

    .venv/bin/python bench/dbt_forked.py WAREHOUSE build --full-refresh
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    warehouse, *args = sys.argv[1:]
    os.environ["PERPFOLIO_WAREHOUSE"] = warehouse
    import orchestration.definitions  # noqa: F401  (the code location, loaded as in a step)
    from orchestration.resources import DBT_PROJECT_DIR
    from orchestration.resources.dbt_fork import run_dbt

    with tempfile.TemporaryDirectory() as target:
        started = time.perf_counter()
        outcome = run_dbt(args, DBT_PROJECT_DIR, DBT_PROJECT_DIR, Path(target))
        seconds = time.perf_counter() - started
    if not outcome.success:
        sys.exit(f"dbt {' '.join(args)} failed: {outcome.failures}")
    step, child = (
        resource.getrusage(who).ru_maxrss / 2**20  # KiB on Linux
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    print(seconds, step, child)


if __name__ == "__main__":
    main()
