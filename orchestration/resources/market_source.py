"""Market-data sources behind one interface, so the assets cannot tell them apart.

* ``SyntheticMarketSource``: the embedded default, a seeded calibrated synthetic market;
* ``CcxtMarketSource``: real exchanges through ccxt (Binance USD-M + spot; OKX, Bybit);
* ``LocalCcxtMarketSource``: the same ccxt code path against an in-process local
  Binance-compatible exchange on 127.0.0.1 serving a synthetic market (no internet; for tests,
  demos and dry runs).

Every source answers ``fetch(start, end, resume)`` with raw-table frames for bars opening in
[start, end) (``None``: the source's whole configured window). ``market_source_for`` picks one
per environment, overridable with ``PERPFOLIO_MARKET_SOURCE`` (synthetic | ccxt | ccxt-local).
API keys are read from environment variables at fetch time, never stored in config or metadata.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from ingestion.ccxt_source import FetchPlan, RetryPolicy, fetcher_for
from ingestion.frames import MarketFrames
from ingestion.synthetic import (
    SyntheticMarketConfig,
    generate_market,
)
from ingestion.universe import VENUES, resolve_symbols, timeframe_delta

__all__ = [
    "CcxtMarketSource",
    "LocalCcxtMarketSource",
    "MarketSource",
    "SyntheticMarketSource",
    "market_source_for",
]


class MarketSource(dg.ConfigurableResource):
    """Base of the market-data resources."""

    def fetch(
        self,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        resume: Mapping[tuple, pd.Timestamp] | None = None,
    ) -> MarketFrames:
        raise NotImplementedError

    @property
    def incremental(self) -> bool:
        """True when an un-partitioned run should resume after the last stored bar."""
        return False

    @property
    def timeframe_name(self) -> str:
        return "1h"

    @property
    def venue(self) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """Safe-to-publish description (no secrets) for Dagster metadata."""
        return {"source": type(self).__name__}


class SyntheticMarketSource(MarketSource):
    """The embedded default: a seeded synthetic market of USDT perpetuals.

    ``symbols`` (comma-separated or a preset such as ``chun_lee_2025``) overrides
    ``n_symbols``; ``venues`` (comma-separated, e.g. ``binance,okx,bybit``) overrides the single
    venue ``synthetic``.
    """

    n_symbols: int = 5
    n_bars: int = 24 * 365
    start: str = "2024-01-01"
    seed: int = 7
    symbols: str | None = None
    venues: str | None = None
    timeframe: str = "1h"
    order_book_levels: int = 5

    def config(self) -> SyntheticMarketConfig:
        return SyntheticMarketConfig(
            n_symbols=self.n_symbols,
            n_bars=self.n_bars,
            start=self.start,
            seed=self.seed,
            symbols=resolve_symbols(self.symbols) if self.symbols else None,
            venues=tuple(v.strip() for v in self.venues.split(",")) if self.venues else None,
            timeframe=self.timeframe,
            order_book_levels=self.order_book_levels,
        )

    def fetch(self, start=None, end=None, resume=None) -> MarketFrames:
        market = generate_market(self.config())
        if start is None and end is None:
            return market
        return market.window(start, end)

    @property
    def timeframe_name(self) -> str:
        return self.timeframe

    @property
    def venue(self) -> str:
        return self.config().venue_names[0]

    def describe(self) -> dict[str, str]:
        c = self.config()
        return {
            "source": "synthetic",
            "seed": str(c.seed),
            "symbols": ", ".join(c.universe),
            "venues": ", ".join(c.venue_names),
            "timeframe": c.timeframe,
        }


class CcxtMarketSource(MarketSource):
    """Real exchanges through ccxt. Public market data needs no API key; if one is set in the
    environment variables named by ``api_key_env``/``secret_env`` (``{VENUE}`` is replaced by the
    venue in upper case) it is passed to ccxt and redacted from every message."""

    venues: str = "binance"
    symbols: str = "default"
    timeframe: str = "1h"
    start: str = "2024-01-01"
    spot: bool = True
    mark_index: bool = True
    funding: bool = True
    open_interest: bool = True
    order_book_levels: int = 5
    max_retries: int = 5
    backoff_seconds: float = 0.5
    timeout_ms: int = 10_000
    rate_limit_ms: int | None = None
    page_limit: int = 1000
    api_key_env: str = "PERPFOLIO_{VENUE}_API_KEY"
    secret_env: str = "PERPFOLIO_{VENUE}_SECRET"

    def _base_url(self) -> str | None:
        return None

    def venue_list(self) -> tuple[str, ...]:
        venues = tuple(v.strip() for v in self.venues.split(",") if v.strip())
        unknown = [v for v in venues if v not in VENUES]
        if unknown:
            raise ValueError(f"unknown venue(s) {unknown}; supported: {sorted(VENUES)}")
        return venues

    def plan(self) -> FetchPlan:
        timeframe_delta(self.timeframe)
        return FetchPlan(
            symbols=resolve_symbols(self.symbols),
            timeframe=self.timeframe,
            spot=self.spot,
            mark_index=self.mark_index,
            funding=self.funding,
            open_interest=self.open_interest,
            order_book_levels=self.order_book_levels,
        )

    def _credentials(self, venue: str) -> dict[str, str]:
        key = os.environ.get(self.api_key_env.replace("{VENUE}", venue.upper()), "")
        secret = os.environ.get(self.secret_env.replace("{VENUE}", venue.upper()), "")
        return {"apiKey": key, "secret": secret} if key and secret else {}

    def _now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC").tz_localize(None)

    def fetch(self, start=None, end=None, resume=None) -> MarketFrames:
        step = timeframe_delta(self.timeframe)
        start = pd.Timestamp(start) if start is not None else pd.Timestamp(self.start)
        latest = self._now().floor(step)
        end = min(pd.Timestamp(end), latest) if end is not None else latest
        parts = []
        for venue in self.venue_list():
            fetcher = fetcher_for(
                venue,
                base_url=self._base_url(),
                retry=RetryPolicy(
                    max_retries=self.max_retries, backoff_seconds=self.backoff_seconds
                ),
                timeout_ms=self.timeout_ms,
                rate_limit_ms=self.rate_limit_ms,
                credentials=self._credentials(venue),
                spot=self.spot,
                page_limit=self.page_limit,
            )
            parts.append(fetcher.fetch(self.plan(), start, end, resume))
        return MarketFrames.concat(parts)

    @property
    def incremental(self) -> bool:
        return True

    @property
    def timeframe_name(self) -> str:
        return self.timeframe

    @property
    def venue(self) -> str:
        return self.venue_list()[0]

    def describe(self) -> dict[str, str]:
        return {
            "source": "ccxt" if self._base_url() is None else "ccxt (local exchange)",
            "venues": ", ".join(self.venue_list()),
            "symbols": ", ".join(resolve_symbols(self.symbols)),
            "timeframe": self.timeframe,
        }


class LocalCcxtMarketSource(CcxtMarketSource):
    """ccxt against an in-process local Binance-compatible exchange on 127.0.0.1 serving a seeded
    synthetic market (``n_bars`` bars from ``start``; "now" is the end of that market)."""

    venues: str = "binance"
    n_bars: int = 24 * 60
    seed: int = 7
    rate_limit_ms: int | None = 1
    backoff_seconds: float = 0.01
    _server: Any = PrivateAttr(default=None)

    def _market(self) -> MarketFrames:
        return generate_market(
            SyntheticMarketConfig(
                symbols=resolve_symbols(self.symbols),
                n_bars=self.n_bars,
                start=self.start,
                seed=self.seed,
                venue="binance",
                timeframe="5m" if self.timeframe == "10m" else self.timeframe,
                order_book_levels=self.order_book_levels,
            )
        )

    def _now(self) -> pd.Timestamp:
        return pd.Timestamp(self.start) + self.n_bars * timeframe_delta(self.timeframe)

    def _base_url(self) -> str | None:
        if self._server is None:
            from ingestion.local_exchange import LocalBinance

            self._server = LocalBinance(self._market(), now=self._now()).start()
        return self._server.base_url

    def teardown_after_execution(self, context) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def market_source_for(environment: str) -> MarketSource:
    """The market source of an environment; ``PERPFOLIO_MARKET_SOURCE`` overrides the kind
    (synthetic | ccxt | ccxt-local) and ``PERPFOLIO_SYMBOLS``/``PERPFOLIO_VENUES`` the universe."""
    kind = os.environ.get("PERPFOLIO_MARKET_SOURCE", "synthetic")
    symbols = os.environ.get("PERPFOLIO_SYMBOLS") or None
    venues = os.environ.get("PERPFOLIO_VENUES") or None
    test = environment == "test"
    if kind == "synthetic":
        return SyntheticMarketSource(
            n_symbols=5, n_bars=24 * 60 if test else 24 * 365, seed=7, symbols=symbols,
            venues=venues,
        )  # fmt: skip
    if kind == "ccxt":
        return CcxtMarketSource(venues=venues or "binance", symbols=symbols or "default")
    if kind == "ccxt-local":
        return LocalCcxtMarketSource(symbols=symbols or "default", n_bars=24 * 60)
    raise ValueError(f"PERPFOLIO_MARKET_SOURCE must be synthetic, ccxt or ccxt-local, got {kind!r}")
