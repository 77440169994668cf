"""Speed of the features step as the pipeline runs it, on a synthetic market.

Builds a synthetic raw warehouse (18 symbols x 4 years by default) and times the features step
(``features_step.py``: a process with the code location loaded materializes ``dbt_features``
through dagster-dbt's ``DbtCliResource``, which runs ``dbt build``, models and data tests) three
times: every timeframe from scratch (``full_refresh``), one new day after the stored bars (the
watermark: the run without a partition), and that day again as a daily partition run (its window
passed as dbt vars, which makes dbt parse the project again). dbt's parse from scratch, done
once per project or profile change (``make`` or ``dagster dev``), is timed apart. With
``--pandas`` (the default at 1h), a straightforward pandas implementation of the same features
(``pandas_features.py``) is timed too, as a reference: a process reading the raw tables,
computing and writing its feature table. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_features.py --timeframe 1h
    .venv/bin/python bench/bench_features.py --timeframe 10m
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingestion.warehouse import ensure_raw_schema  # noqa: E402
from orchestration.resources.dbt_cli import DBT_PROJECT_DIR, dbt_executable  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from pandas_features import BAR_MINUTES  # noqa: E402


def synthetic_raw(n_symbols: int, days: int, timeframe: str, seed: int = 0) -> dict:
    """Perp, spot and mark bars and 8h funding: random walks with a mean-reverting basis."""
    rng = np.random.default_rng(seed)
    minutes = BAR_MINUTES[timeframe]
    n = days * 1440 // minutes
    ts = pd.date_range("2021-01-01", periods=n, freq=f"{minutes}min")
    frames, funding = [], []
    for k in range(n_symbols):
        symbol = f"S{k:02d}"
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
        open_ = np.concatenate([[100.0], close[:-1]])
        basis = np.zeros(n)
        noise = rng.normal(0, 0.0002, n)
        for i in range(1, n):  # AR(1) basis
            basis[i] = 0.98 * basis[i - 1] + noise[i]
        spread = np.abs(rng.normal(0, 0.002, n))
        volume = np.exp(rng.normal(10, 0.5, n))
        for market, scale, vol in (
            ("perp", 1.0, volume),
            ("spot", 1.0 / (1.0 + basis), volume * 1.5),
            ("mark", 1.0 + rng.normal(0, 5e-5, n), np.full(n, np.nan)),
        ):
            c, o = close * scale, open_ * scale
            frames.append(
                pd.DataFrame(
                    {
                        "venue": "bench",
                        "market": market,
                        "symbol": symbol,
                        "timeframe": timeframe,
                        "ts": ts,
                        "open": o,
                        "high": np.maximum(o, c) * (1 + spread),
                        "low": np.minimum(o, c) * (1 - spread),
                        "close": c,
                        "volume": vol,
                    }
                )
            )
        settle = pd.date_range(
            "2021-01-01 08:00", ts[-1] + pd.Timedelta(minutes=minutes), freq="8h"
        )
        funding.append(
            pd.DataFrame(
                {
                    "venue": "bench",
                    "symbol": symbol,
                    "ts": settle,
                    "funding_rate": np.clip(rng.normal(1e-4, 2e-4, len(settle)), -0.003, 0.003),
                    "interval_hours": 8,
                }
            )
        )
    return {"ohlcv": pd.concat(frames, ignore_index=True), "funding": pd.concat(funding)}


def insert_raw(path: Path, ohlcv: pd.DataFrame, funding: pd.DataFrame) -> None:
    with duckdb.connect(str(path)) as con:
        ensure_raw_schema(con)
        for table, frame in (("ohlcv", ohlcv), ("funding_rates", funding)):
            con.register("frame", frame)
            con.execute(
                f"INSERT INTO raw.{table} BY NAME SELECT *, now()::TIMESTAMP AS ingested_at "
                "FROM frame"
            )
            con.unregister("frame")


GNU_TIME = Path("/usr/bin/time")


def timed_process(command: list[str], **run_kwargs) -> tuple[float, float | None, str]:
    """Seconds of ``command`` (process start-up included), its peak resident memory in GiB,
    measured by GNU time (None without it), and its standard output. The peak is measured by a
    process that execs the command: a child forked from this one would count this process's
    frames."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        if GNU_TIME.exists():
            command = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *command]
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, **run_kwargs)
        seconds = time.perf_counter() - started
        kib = rss.read().strip()
    return seconds, int(kib) / 2**20 if kib else None, done.stdout


def dbt_parse(env: dict[str, str]) -> float:
    """Seconds of ``dbt parse`` from scratch into ``$DBT_TARGET_PATH``, as ``make`` prepares the
    project (the steps start from its partial-parse state)."""
    command = [dbt_executable(), "parse", "--quiet"]
    command += ["--profiles-dir", DBT_PROJECT_DIR, "--project-dir", DBT_PROJECT_DIR]
    seconds, _, _ = timed_process(command, env=env, cwd=DBT_PROJECT_DIR)
    return seconds


def features_step(env: dict[str, str], *args: str) -> tuple[float, float, float, float]:
    """The step's seconds, dbt's elapsed seconds, and the peak GiB of the step's process and of
    the dbt process (``features_step.py``), started through ``timed_process`` so the step's peak
    does not count this process's frames."""
    script = Path(__file__).with_name("features_step.py")
    _, _, stdout = timed_process([sys.executable, str(script), *args], env=env)
    seconds, dbt_seconds, step, child = map(float, stdout.split()[-4:])
    return seconds, dbt_seconds, step, child


def run_pandas_end_to_end(path: Path, base: str) -> tuple[float, float | None, float]:
    """Seconds and peak GiB of the pandas build as its own process, reading and writing ``path``,
    and its seconds after its imports."""
    script = Path(__file__).with_name("pandas_features.py")
    seconds, peak, stdout = timed_process([sys.executable, str(script), str(path), base])
    return seconds, peak, float(stdout.strip().splitlines()[-1])


def gib(peak: float | None) -> str:
    return "peak n/a: no GNU time" if peak is None else f"peak {peak:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeframe", choices=["10m", "1h"], default="1h")
    parser.add_argument("--symbols", type=int, default=18)
    parser.add_argument("--days", type=int, default=4 * 365)
    parser.add_argument("--pandas", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    with_pandas = args.timeframe == "1h" if args.pandas is None else args.pandas
    raw = synthetic_raw(args.symbols, args.days, args.timeframe)
    ohlcv, funding = raw["ohlcv"], raw["funding"]
    last_day = ohlcv.ts.max().normalize()
    window = [str(last_day), str(last_day + pd.Timedelta(days=1))]
    per_table = len(ohlcv) // 3
    print(f"{args.symbols} symbols x {args.days} days of {args.timeframe} bars: ", end="")
    print(f"{per_table:,} rows per market")
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "warehouse.duckdb"
        target = str(Path(home) / "dbt-target")
        env = {
            **os.environ,
            "PERPFOLIO_HOME": home,
            "DBT_TARGET_PATH": target,
            "DBT_LOG_PATH": target,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        }
        insert_raw(path, ohlcv[ohlcv.ts < last_day], funding[funding.ts <= last_day])
        del raw
        parse = dbt_parse(env)
        full, full_dbt, step_peak, dbt_peak = features_step(env, "--full-refresh")
        insert_raw(path, ohlcv[ohlcv.ts >= last_day], funding[funding.ts > last_day])
        day, day_dbt, *_ = features_step(env)
        partition, partition_dbt, *_ = features_step(env, "--window", *window)
        with duckdb.connect(str(path), read_only=True) as con:
            rows = con.execute("SELECT count(*) FROM marts.fct_features").fetchall()[0][0]
        if with_pandas:
            pandas_process, pandas_peak, pandas_warm = run_pandas_end_to_end(path, args.timeframe)
    print(f"mart: {rows:,} rows")
    print(f"dbt parse from scratch (once per project or profile change): {parse:6.1f} s")
    print("the features step as the pipeline runs it (dbt build: models and data tests):")
    print(
        f"  every timeframe, full refresh:          {full:6.1f} s  (dbt's elapsed {full_dbt:.1f} s)"
    )
    print(f"    (peak: the step {step_peak:.2f} GiB, dbt {dbt_peak:.2f} GiB)")
    print(
        f"  +1 day after the stored bars:           {day:6.1f} s  (dbt's elapsed {day_dbt:.1f} s)"
    )
    print(
        f"  +1 day as a daily partition (re-parse): {partition:6.1f} s  "
        f"(dbt's elapsed {partition_dbt:.1f} s)"
    )
    if with_pandas:
        print("pandas reference (bench/pandas_features.py):")
        print(f"  process (start-up, read, compute, write): {pandas_process:6.1f} s  ", end="")
        print(f"({gib(pandas_peak)})")
        print(f"  after imports (read, compute, write):     {pandas_warm:6.1f} s")


if __name__ == "__main__":
    main()
