"""Ingestion speed and size: synthetic generation + load, and importing the real sample.

Prints figures; never asserts on time.
Usage: python bench/bench_ingestion.py [--10m] [--quick] [--only-10m]

* 18 symbols (Chun & Lee 2025), 4 years of 1h bars: generation + load into a fresh DuckDB file,
  against a reference implementation in the same run (row-wise ``INSERT ... ON CONFLICT DO UPDATE``
  of the same frames, the first version's upsert) on the OHLCV table;
* with ``--10m``, the same at 10m bars (3.8M rows per series table);
* importing ../shared/data/binance-sample (freqtrade layout), when present.
Peak memory is the process's max RSS (ru_maxrss).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.importers import import_directory  # noqa: E402
from ingestion.synthetic import SyntheticMarketConfig, iter_market  # noqa: E402
from ingestion.universe import CHUN_LEE_2025, TIMEFRAMES  # noqa: E402
from ingestion.warehouse import (  # noqa: E402
    OHLCV,
    ensure_raw_schema,
    row_counts,
    write_batch,
)

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-sample"
REAL_1H = SAMPLE.parent / "binance-1h-2020-2023"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_universe(timeframe: str, years: float, directory: str) -> tuple[float, dict, float]:
    bars_per_year = 365 * 24 / TIMEFRAMES[timeframe].hours
    config = SyntheticMarketConfig(
        symbols=CHUN_LEE_2025, n_bars=int(bars_per_year * years), timeframe=timeframe
    )
    path = Path(directory) / f"bench-{timeframe}.duckdb"
    started = time.perf_counter()
    gen = 0.0
    with duckdb.connect(str(path)) as con:
        con.execute("SET memory_limit = '1GB'")
        ensure_raw_schema(con)
        t0 = time.perf_counter()
        for chunk in iter_market(config, symbols_per_chunk=3 if timeframe == "1h" else 1):
            gen += time.perf_counter() - t0
            write_batch(con, chunk.tables())
            t0 = time.perf_counter()
        counts = row_counts(con)
    return time.perf_counter() - started, counts, gen


def reference_upsert(directory: str, n_symbols: int, years: float) -> tuple[float, float, int]:
    """A plain INSERT ... ON CONFLICT upsert (the reference) vs ``write_batch``, same rows."""
    config = SyntheticMarketConfig(
        symbols=CHUN_LEE_2025[:n_symbols], n_bars=int(24 * 365 * years), order_book_levels=0
    )
    frame = next(iter_market(config, symbols_per_chunk=n_symbols)).ohlcv
    cols = OHLCV.frame_columns
    names = ", ".join(cols)
    updates = ", ".join(f"{c} = excluded.{c}" for c in OHLCV.value_columns)
    with duckdb.connect(str(Path(directory) / "ref.duckdb")) as con:
        ensure_raw_schema(con)
        con.register("b", frame[cols])
        t = time.perf_counter()
        con.execute(
            f"INSERT INTO raw.ohlcv ({names}, ingested_at) SELECT {names}, now()::TIMESTAMP "
            f"FROM b ON CONFLICT ({', '.join(OHLCV.key)}) DO UPDATE SET {updates}, "
            "ingested_at = excluded.ingested_at"
        )
        reference = time.perf_counter() - t
    with duckdb.connect(str(Path(directory) / "cur.duckdb")) as con:
        ensure_raw_schema(con)
        t = time.perf_counter()
        write_batch(con, {OHLCV: frame})
        current = time.perf_counter() - t
    return reference, current, len(frame)


def main() -> None:
    if "--only-10m" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, counts, gen = load_universe("10m", 4.0, tmp)
        print(f"18 symbols x 4 y of 10m bars: {elapsed:.1f} s total "
              f"({gen:.1f} s generation), peak RSS {peak_mib():.0f} MiB")  # fmt: skip
        print(f"  rows: {counts}")
        return
    quick = "--quick" in sys.argv
    years = 0.5 if quick else 4.0
    with tempfile.TemporaryDirectory() as tmp:
        ref, cur, n = reference_upsert(tmp, 18, 1.0 if not quick else 0.25)
        print(f"upsert {n:,} OHLCV rows: reference ON CONFLICT {ref:.2f} s, "
              f"anti-join+update {cur:.2f} s, ratio {ref / cur:.2f}x")  # fmt: skip
        elapsed, counts, gen = load_universe("1h", years, tmp)
        print(f"18 symbols x {years:g} y of 1h bars: {elapsed:.1f} s total "
              f"({gen:.1f} s generation), peak RSS {peak_mib():.0f} MiB")  # fmt: skip
        print(f"  rows: {counts}")
        if "--10m" in sys.argv:  # its own process, so that its peak memory is its own
            import subprocess

            subprocess.run([sys.executable, __file__, "--only-10m"], check=True)
        if (SAMPLE / "futures").is_dir():
            with duckdb.connect(str(Path(tmp) / "sample.duckdb")) as con:
                t = time.perf_counter()
                report = import_directory(con, "freqtrade", SAMPLE)
                took = time.perf_counter() - t
            print(f"import real sample (freqtrade, {report.files} files): {took:.2f} s, "
                  f"rows {report.rows_written}")  # fmt: skip
        else:
            print(f"real sample not found at {SAMPLE}: import not measured")
        if (REAL_1H / "futures").is_dir():
            with duckdb.connect(str(Path(tmp) / "real.duckdb")) as con:
                for what in ("first import", "identical re-import (conflict check, no-op)"):
                    t = time.perf_counter()
                    report = import_directory(con, "freqtrade", REAL_1H)
                    print(f"real 4 years x 5 symbols, {what}: {time.perf_counter() - t:.2f} s, "
                          f"rows {report.rows_written}")  # fmt: skip


if __name__ == "__main__":
    main()
