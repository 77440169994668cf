"""Speed of the dbt feature build against a straightforward pandas implementation.

Builds a synthetic raw warehouse (18 symbols x 4 years by default), then times the feature
build (every timeframe) and an incremental refresh after one new day two ways:
- as the pipeline runs dbt (``dbt_forked.py``): from a process that has loaded the code location,
  as a Dagster step has, dbt parses the project and runs in a forked child: parse, adapter,
  materializations, tests and artifacts included, the imports being the step's;
- as a ``dbt`` process of its own, start-up and imports included, with its peak memory.
`dbt run` builds the models; `dbt build` (the pipeline's arguments) also runs the data tests.
The same features in pandas are timed three ways: end to end as a process that starts, reads
the raw tables from the warehouse and writes its feature table back; the same without the
process's start-up and imports; and in this process on frames already in memory (compute only).
Prints figures; asserts nothing.

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
from orchestration.assets.features import FeatureBuildConfig, dbt_build_args  # noqa: E402
from orchestration.resources import DBT_PROJECT_DIR, dbt_executable  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from pandas_features import BAR_MINUTES, pandas_features  # noqa: E402


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


def run_dbt(path: Path, *args: str) -> tuple[float, float | None]:
    """Seconds and peak GiB of a ``dbt <args>`` process on the warehouse."""
    env = {
        **os.environ,
        "PERPFOLIO_WAREHOUSE": str(path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    }
    command = [
        dbt_executable(),
        *args,
        "--profiles-dir",
        DBT_PROJECT_DIR,
        "--project-dir",
        DBT_PROJECT_DIR,
    ]
    seconds, peak, _ = timed_process(command, env=env, cwd=DBT_PROJECT_DIR)
    return seconds, peak


def run_dbt_forked(path: Path, *args: str) -> tuple[float, float, float]:
    """Seconds of ``dbt <args>`` as the pipeline runs it (``dbt_forked.py``), the peak GiB of the
    step's process and that of the forked child (shared pages included). Started through
    ``timed_process`` so the step's peak does not count this process's frames."""
    script = Path(__file__).with_name("dbt_forked.py")
    _, _, stdout = timed_process([sys.executable, str(script), str(path), *args])
    seconds, step, child = map(float, stdout.split()[-3:])
    return seconds, step, child


def run_pandas_end_to_end(path: Path, base: str) -> tuple[float, float | None, float]:
    """Seconds and peak GiB of the pandas build as its own process, reading and writing ``path``,
    and its seconds after its imports."""
    script = Path(__file__).with_name("pandas_features.py")
    seconds, peak, stdout = timed_process([sys.executable, str(script), str(path), base])
    return seconds, peak, float(stdout.strip().splitlines()[-1])


def drop_day(path: Path, day: pd.Timestamp) -> None:
    """Delete the incremental tables' rows from ``day`` on, so dbt builds that day again."""
    with duckdb.connect(str(path)) as con:
        for table in ("intermediate.int_bars_aligned", "marts.fct_features"):
            con.execute(f"DELETE FROM {table} WHERE ts >= ?", [day])


def gib(peak: float | None) -> str:
    return "peak n/a: no GNU time" if peak is None else f"peak {peak:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeframe", choices=["10m", "1h"], default="1h")
    parser.add_argument("--symbols", type=int, default=18)
    parser.add_argument("--days", type=int, default=4 * 365)
    args = parser.parse_args()
    raw = synthetic_raw(args.symbols, args.days, args.timeframe)
    ohlcv, funding = raw["ohlcv"], raw["funding"]
    last_day = ohlcv.ts.max().normalize()
    per_table = len(ohlcv) // 3
    shape = f"{args.symbols} symbols x {args.days} days of {args.timeframe} bars"
    print(f"{shape}: {per_table:,} rows per market")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        insert_raw(path, ohlcv[ohlcv.ts < last_day], funding[funding.ts <= last_day])
        parse, _ = run_dbt(path, "parse")
        full_build_args = dbt_build_args(FeatureBuildConfig(full_refresh=True))
        forked_run, step_peak, child_peak = run_dbt_forked(path, "run", "--full-refresh")
        forked_build, *_ = run_dbt_forked(path, *full_build_args)
        full_run, run_peak = run_dbt(path, "run", "--full-refresh")
        full_build, build_peak = run_dbt(path, *full_build_args)
        insert_raw(path, ohlcv[ohlcv.ts >= last_day], funding[funding.ts > last_day])
        day_build_args = dbt_build_args(FeatureBuildConfig())
        day_forked_build, *_ = run_dbt_forked(path, *day_build_args)
        drop_day(path, last_day)
        day_forked_run, *_ = run_dbt_forked(path, "run")
        drop_day(path, last_day)
        day_build, _ = run_dbt(path, *day_build_args)
        drop_day(path, last_day)
        day_run, _ = run_dbt(path, "run")
        with duckdb.connect(str(path), read_only=True) as con:
            rows = con.execute("SELECT count(*) FROM marts.fct_features").fetchall()[0][0]
        pandas_process, pandas_peak, pandas_warm = run_pandas_end_to_end(path, args.timeframe)
    started = time.perf_counter()
    reference_rows = len(pandas_features(ohlcv, funding, args.timeframe))
    pandas_compute = time.perf_counter() - started
    print(f"dbt parse (once per project change): {parse:6.1f} s")
    print(f"mart: {rows:,} rows; pandas reference: {reference_rows:,} rows")
    print("as the pipeline runs dbt (forked from the loaded code location, parse included):")
    print(f"  dbt run, every timeframe:          {forked_run:6.1f} s")
    print(f"    (peak: the step {step_peak:.2f} GiB, the forked dbt {child_peak:.2f} GiB)")
    print(f"  dbt build (+ data tests):           {forked_build:6.1f} s")
    print(f"  +1 day: dbt run {day_forked_run:.1f} s, dbt build {day_forked_build:.1f} s")
    print("as a dbt process (start-up and imports included):")
    print(f"  dbt run, every timeframe:          {full_run:6.1f} s  ({gib(run_peak)})")
    print(f"  dbt build (+ data tests):           {full_build:6.1f} s  ({gib(build_peak)})")
    print(f"  +1 day: dbt run {day_run:.1f} s, dbt build {day_build:.1f} s")
    print("pandas:")
    print(f"  process (start-up, read, compute, write): {pandas_process:6.1f} s")
    print(f"    ({gib(pandas_peak)})")
    print(f"  after imports (read, compute, write):     {pandas_warm:6.1f} s")
    print(f"  compute only, frames in memory:           {pandas_compute:6.1f} s")
    print("ratios, pandas time / dbt time:")
    print(f"  pandas after imports / pipeline dbt run: {pandas_warm / forked_run:6.2f}x")
    print(f"  pandas process / dbt process:            {pandas_process / full_run:6.2f}x")
    print(f"  pandas compute / pipeline dbt run:       {pandas_compute / forked_run:6.2f}x")


if __name__ == "__main__":
    main()
