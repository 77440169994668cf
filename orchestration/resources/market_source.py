"""Market-data sources behind one interface, so the assets cannot tell them apart."""

from __future__ import annotations

import dagster as dg

from orchestration.ingestion.synthetic import (
    SyntheticMarket,
    SyntheticMarketConfig,
    generate_market,
)


class SyntheticMarketSource(dg.ConfigurableResource):
    """The embedded default: a seeded synthetic market of USDT perpetuals."""

    n_symbols: int = 5
    n_bars: int = 24 * 365
    start: str = "2024-01-01"
    seed: int = 7

    def fetch(self) -> SyntheticMarket:
        return generate_market(
            SyntheticMarketConfig(
                n_symbols=self.n_symbols, n_bars=self.n_bars, start=self.start, seed=self.seed
            )
        )

    @property
    def venue(self) -> str:
        return SyntheticMarketConfig().venue
