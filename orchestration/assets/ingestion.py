"""Ingestion: market data from the configured source into the raw DuckDB tables."""

import dagster as dg

from orchestration.ingestion.warehouse import FUNDING_RATES, OHLCV, ensure_raw_schema, upsert
from orchestration.resources.market_source import SyntheticMarketSource
from orchestration.resources.warehouse import DuckDBWarehouse

RAW_OHLCV = dg.AssetKey(["raw", "ohlcv"])
RAW_FUNDING = dg.AssetKey(["raw", "funding_rates"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RAW_OHLCV, description="Perp, spot and mark bars.", kinds={"duckdb"}),
        dg.AssetSpec(RAW_FUNDING, description="Funding settlements.", kinds={"duckdb"}),
    ],
    group_name="ingestion",
)
def raw_market_data(market_source: SyntheticMarketSource, warehouse: DuckDBWarehouse):
    """Fetch the market from the source and upsert it (re-runs change no row counts)."""
    market = market_source.fetch()
    with warehouse.connect() as con:
        ensure_raw_schema(con)
        for key, table, frame in (
            (RAW_OHLCV, OHLCV, market.ohlcv),
            (RAW_FUNDING, FUNDING_RATES, market.funding_rates),
        ):
            written = upsert(con, table, frame)
            total, first, last = con.execute(
                f"SELECT count(*), min(ts), max(ts) FROM {table.qualified}"
            ).fetchall()[0]
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "rows_written": written,
                    "rows_total": total,
                    "first_ts": str(first),
                    "last_ts": str(last),
                    "symbols": ", ".join(sorted(frame["symbol"].unique())),
                },
            )
