"""dbt run from the step's process: forked, parsed once per project change, the file let go."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orchestration.assets.features import FeatureBuildConfig, dbt_build_args
from orchestration.resources import DBT_PROJECT_DIR
from orchestration.resources.dbt_fork import DbtInvocation, run_dbt
from tests.support.warehouses import synthetic_raw, write_raw

BUILD = dbt_build_args(FeatureBuildConfig())


@pytest.fixture
def warehouse(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    write_raw(path, synthetic_raw(n_symbols=1, days=5))
    monkeypatch.setenv("PERPFOLIO_WAREHOUSE", str(path))
    return path


def _window(day: str) -> list[str]:
    return ["--vars", json.dumps({"window_start": day})]


def _dbt(args: list[str], target: Path) -> DbtInvocation:
    return run_dbt(args, DBT_PROJECT_DIR, DBT_PROJECT_DIR, target)


def _run_script(script: str, target: Path, warehouse: Path, **env: str) -> str:
    """Standard output of ``script`` run as ``python -c script PROJECT TARGET WAREHOUSE``."""
    done = subprocess.run(
        [sys.executable, "-c", script, DBT_PROJECT_DIR, str(target), str(warehouse)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(DBT_PROJECT_DIR).parent), **env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_forked_build_writes_the_mart_and_reports_each_model(warehouse, tmp_path):
    outcome = _dbt(BUILD, tmp_path / "target")
    assert outcome.success and outcome.failures == []
    finished = [m for m in outcome.messages if m["info"]["name"] == "LogModelResult"]
    assert len(finished) == 10
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.fct_features").fetchone()[0] == 5 * 24 + 5


def test_a_failing_model_is_named_with_dbt_s_message(warehouse, tmp_path):
    outcome = _dbt(["run", *_window("not a time")], tmp_path / "target")
    assert not outcome.success
    [failure] = [f for f in outcome.failures if f.startswith("model.perpfolio.int_bars_aligned")]
    assert "not a time" in failure


def test_a_new_window_reuses_the_parsed_project(warehouse, tmp_path):
    logs = []
    for run, day in enumerate(("2024-01-02", "2024-01-03")):
        target = tmp_path / f"target-{run}"
        args = ["run", "--select", "stg_market__data_gaps", *_window(day)]
        assert _dbt(args, target).success
        logs.append((target / "dbt.log").read_text())
    # The first build may re-parse (a new warehouse is a new profile); its state is kept, and
    # the second, with other vars, parses nothing.
    assert "Unable to do partial parsing" not in logs[1]
    assert "no changes found, skipping parsing" in logs[1]


def test_in_the_step_s_own_process_dbt_lets_go_of_the_file(warehouse, tmp_path):
    """Without ``fork`` dbt runs in the caller: the caller can open the file afterwards."""
    script = (
        "import sys, duckdb\n"
        "from pathlib import Path\n"
        "from orchestration.resources.dbt_fork import invoke_dbt\n"
        "project, target, path = sys.argv[1:]\n"
        "outcome = invoke_dbt(['run', '--select', 'stg_market__ohlcv'], project, project, "
        "Path(target))\n"
        "assert outcome.success, outcome.failures\n"
        "duckdb.connect(path, config={'memory_limit': '1GB'}).close()\n"
        "print('reopened')\n"
    )
    assert _run_script(script, tmp_path / "t", warehouse).strip().endswith("reopened")


def test_a_failing_data_test_is_named_and_fails_the_build(warehouse, tmp_path):
    assert _dbt(BUILD, tmp_path / "first").success
    with duckdb.connect(str(warehouse)) as con:  # features left without the bars they came from
        con.execute("DELETE FROM raw.ohlcv")
    outcome = _dbt(["test", "--select", "fct_features"], tmp_path / "t")
    assert not outcome.success
    [failure] = outcome.failures
    assert failure.startswith("test.perpfolio.keys_exist_in_fct_features_")
    assert "Got 1 result" in failure


STOPPED_BUILD = """
import multiprocessing, os, signal, sys, threading, time
from pathlib import Path
import duckdb
from orchestration.assets.features import FeatureBuildConfig, dbt_build_args
from orchestration.resources.dbt_fork import run_dbt
project, target, warehouse = sys.argv[1:]
marker = os.environ["STOP_AT"]  # not in argv: dbt logs its argv
log = Path(target) / "dbt.log"
signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Dagster: a raise, not an exit


def interrupt_at_marker():
    while not (log.exists() and marker in log.read_text()):
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGINT)  # how Dagster stops a step on Unix


threading.Thread(target=interrupt_at_marker, daemon=True).start()
try:
    run_dbt(dbt_build_args(FeatureBuildConfig()), project, project, Path(target))
except KeyboardInterrupt:
    duckdb.connect(warehouse).close()
    print("stopped", len(multiprocessing.active_children()))
"""


@pytest.mark.parametrize("marker", ["Running with dbt", "START sql incremental model"])
def test_a_stopped_build_stops_dbt_and_lets_go_of_the_file(warehouse, tmp_path, marker):
    """A stopped Dagster run interrupts the step while dbt parses or builds: dbt is cancelled,
    the interruption goes on up, and no child keeps the warehouse."""
    stdout = _run_script(STOPPED_BUILD, tmp_path / "t", warehouse, STOP_AT=marker)
    assert stdout.strip().endswith("stopped 0")
    assert "Completed successfully" not in stdout
