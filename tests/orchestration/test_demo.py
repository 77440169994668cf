"""`perpfolio demo` on the embedded default (the `local` resources), run twice in one folder."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.strategies import BASELINES

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _demo(home: Path, *options: str) -> str:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PERPFOLIO_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "PERPFOLIO_ENV": "local",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        [str(bin_dir / "perpfolio"), "demo", *options],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


def _field(output: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no '{name}' line in:\n{output}"
    return match.group(1)


def test_demo_runs_the_pipeline_twice_with_idempotent_ingestion(tmp_path):
    # The demo's code path with a smaller training budget than its default 20k steps: the test
    # checks the pipeline and its summary, not what PPO learns (README, "Measured figures").
    first = _demo(tmp_path, "--timesteps", "8192")
    assert "(ok)" in _field(first, "retraining run")
    assert _field(first, "quality checks").endswith("0 failed")
    assert _field(first, "model registered") == "perpfolio-policy v2"  # v1: the day-one champion
    assert _field(first, "training").startswith("PPO, 8,192 steps")
    for name in ("candidate", *BASELINES):
        line = re.search(rf"^  {name}( \(benchmark\))?\s+(-?[\d.]+)\s+\[(.+?)\]", first, re.M)
        assert line, f"no metrics line with a Sharpe interval for {name}:\n{first}"
        low, high = map(float, line.group(3).split(","))
        assert low <= high
    statistics = re.search(r"PSR (\S+), DSR (\S+) over \d+ trials", _field(first, "statistics"))
    assert statistics, _field(first, "statistics")
    candidate = re.search(r"^  candidate\s+(-?[\d.]+)\s+\[.+?\]\s+(\S+)", first, re.M)
    assert candidate
    if "nan" in statistics.groups():  # only a flat candidate (constant returns) has none
        assert statistics.groups() == ("nan", "nan")
        assert float(candidate.group(1)) == 0.0 and candidate.group(2) == "0.00%"
    else:
        assert all(0.0 <= float(v) <= 1.0 for v in statistics.groups())
    assert _field(first, "promotion")
    champion = _field(first, "champion alias")
    assert champion in ("@champion -> v1", "@champion -> v2")
    pattern = r"v(\d) \((fixed|onnxruntime)\) at the close of (\S+): (decided|held)"
    serving = re.match(pattern, _field(first, "serving"))
    assert serving, _field(first, "serving")
    assert champion.endswith(f"v{serving.group(1)}")
    assert int(_field(first, "orders").split()[0]) >= 0
    paper = re.match(r"equity ([\d,.]+) over (\d+) bar", _field(first, "paper account"))
    assert paper and float(paper.group(1).replace(",", "")) > 0
    rows_first = ast.literal_eval(_field(first, "raw rows"))
    assert rows_first["ohlcv"] == 4 * 5 * 24 * 365, "perp, spot, mark, index bars of a year"

    second = _demo(tmp_path, "--timesteps", "2048")
    assert _field(second, "model registered") == "perpfolio-policy v3"
    assert _field(second, "training").startswith("PPO, 2,048 steps")
    assert ast.literal_eval(_field(second, "raw rows")) == rows_first
    assert (tmp_path / "dagster" / "dagster.yaml").exists()
    # the same bar served again: the paper account neither trades twice nor processes a bar
    assert _field(second, "paper account") == _field(first, "paper account")
