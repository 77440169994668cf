"""Ingestion: market data from the configured source into the raw DuckDB tables.

``raw_market_data`` is daily-partitioned (single-run backfills over partition ranges):

* with a partition key or range, it writes exactly that UTC window (a backfill);
* without one (``retraining_job`` in process, the hourly schedule, ``make demo``) it writes the
  source's whole configured window - for ccxt and file sources incrementally, each series
  resuming after its last stored bar; the ``warehouse`` source writes nothing.

Either way the write is one DuckDB transaction over all five tables (all or nothing) and an
upsert (a re-run changes nothing). Each output reports rows written and the source (venue,
symbols); the bars' output also the gaps found (recorded in ``raw.data_gaps``, never filled),
the first/last timestamp of the batch, and for file sources the files read and skipped and the
symbols whose mark bars were taken from the perp close.
"""

import dagster as dg
import pandas as pd

from ingestion.warehouse import (
    DATA_GAPS,
    FUNDING_RATES,
    OHLCV,
    OPEN_INTEREST,
    ORDER_BOOK_SNAPSHOTS,
    ensure_raw_schema,
    row_counts,
)
from orchestration.resources.market_source import MarketSource
from orchestration.resources.warehouse import DuckDBWarehouse

RAW_OHLCV = dg.AssetKey(["raw", "ohlcv"])
RAW_FUNDING = dg.AssetKey(["raw", "funding_rates"])
RAW_OPEN_INTEREST = dg.AssetKey(["raw", "open_interest"])
RAW_ORDER_BOOKS = dg.AssetKey(["raw", "order_book_snapshots"])
RAW_DATA_GAPS = dg.AssetKey(["raw", "data_gaps"])

DAILY = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC")

_OUTPUTS = (
    (RAW_OHLCV, OHLCV, "ts", "Perp, spot, mark and index bars."),
    (RAW_FUNDING, FUNDING_RATES, "ts", "Funding settlements (ts = settlement time)."),
    (RAW_OPEN_INTEREST, OPEN_INTEREST, "ts", "Open interest per bar."),
    (RAW_ORDER_BOOKS, ORDER_BOOK_SNAPSHOTS, "ts", "Top-N order-book snapshots."),
    (RAW_DATA_GAPS, DATA_GAPS, "gap_start", "Missing bars found while ingesting."),
)


class IngestionConfig(dg.Config):
    """Run configuration of the ingestion."""

    replace: bool = False
    """Overwrite stored rows whose values changed (a corrected bar, another seed or file);
    without it such a row is a conflict that fails the step and writes nothing."""


@dg.multi_asset(
    specs=[dg.AssetSpec(key, description=desc, kinds={"duckdb"}) for key, _, _, desc in _OUTPUTS],
    group_name="ingestion",
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def raw_market_data(
    context: dg.AssetExecutionContext,
    config: IngestionConfig,
    market_source: MarketSource,
    warehouse: DuckDBWarehouse,
):
    """Ingest from the market source into all raw tables in one transaction."""
    partitioned = context.has_partition_key or context.has_partition_key_range
    start = end = None
    if partitioned:
        window = context.partition_time_window
        start = pd.Timestamp(window.start).tz_convert(None)
        end = pd.Timestamp(window.end).tz_convert(None)
        mode = f"window {start} .. {end}"
    else:
        mode = "incremental" if market_source.incremental else "whole configured window"
    with warehouse.connect() as con:
        ensure_raw_schema(con)
        ingested = market_source.ingest(con, start, end, replace=config.replace)
        totals = row_counts(con)
    context.log.info(f"ingested ({mode}): {ingested.written}")
    described = market_source.describe()
    symbols = ", ".join(market_source.universe())
    if ingested.details.get("mark_from_perp_close", "none") != "none":
        context.log.warning(
            "no mark-price files for "
            f"{ingested.details['mark_from_perp_close']}: their mark is the perp close"
        )
    for key, table, ts_col, _ in _OUTPUTS:
        meta = {
            "mode": mode,
            "rows_written": ingested.written[table.name],
            "rows_total": totals[table.name],
            **described,
            "venue": market_source.venue,
            "symbols": symbols,
        }
        if ingested.batch is not None:
            frame = getattr(ingested.batch, table.name)
            meta["rows_in_batch"] = len(frame)
            meta["first_ts"] = str(frame[ts_col].min()) if len(frame) else ""
            meta["last_ts"] = str(frame[ts_col].max()) if len(frame) else ""
        if table is OHLCV:
            meta.update(ingested.details)
            if ingested.batch is not None:
                gaps = ingested.batch.data_gaps
                meta["gaps_found"] = len(gaps)
                meta["missing_bars"] = int(gaps["missing_bars"].sum()) if len(gaps) else 0
        yield dg.MaterializeResult(asset_key=key, metadata=meta)
