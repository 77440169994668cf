"""Market-data sources behind one interface, so the assets cannot tell them apart.

* ``SyntheticMarketSource``: the embedded default, a seeded calibrated synthetic market;
* ``CcxtMarketSource``: real exchanges through ccxt (Binance USD-M + spot; OKX, Bybit);
* ``LocalCcxtMarketSource``: the same ccxt code path against an in-process local
  Binance-compatible exchange on 127.0.0.1 serving a synthetic market (no internet; for tests,
  demos and dry runs);
* ``FileMarketSource``: a freqtrade or Binance bulk-data directory, through the importers;
* ``WarehouseMarketSource``: what is already in the warehouse; fetches nothing.

Every source answers ``ingest(con, start, end)`` by writing the raw tables for bars opening in
[start, end) (``None``: the source's whole configured window, incrementally where the source
can resume) in one transaction, and says which venue and symbols it provides (``venue``,
``universe()``): training, evaluation and serving use exactly those, never whatever else the
warehouse holds. ``market_source_for`` picks one per environment from ``PERPFOLIO_MARKET_SOURCE``
(synthetic | ccxt | ccxt-local | warehouse | freqtrade:PATH | binance-bulk:PATH),
``PERPFOLIO_SYMBOLS`` and ``PERPFOLIO_VENUES``. API keys are read from environment variables at
fetch time, never stored in config or metadata.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from pydantic import PrivateAttr

from ingestion.ccxt_source import FetchPlan, RetryPolicy, fetcher_for, resume_points
from ingestion.frames import MarketFrames
from ingestion.importers import (
    IMPORTERS,
    import_binance_bulk_frames,
    import_directory,
    import_freqtrade_frames,
    perpetual_symbols,
)
from ingestion.synthetic import (
    SyntheticMarketConfig,
    generate_market,
)
from ingestion.universe import VENUES, resolve_symbols, timeframe_delta
from ingestion.warehouse import OHLCV, RAW_TABLES, write_batch

__all__ = [
    "CcxtMarketSource",
    "FileMarketSource",
    "Ingested",
    "LocalCcxtMarketSource",
    "MarketSource",
    "SyntheticMarketSource",
    "WarehouseMarketSource",
    "market_source_for",
]


@dataclass(frozen=True)
class Ingested:
    """What one ingestion wrote: rows per raw table, the batch (when the source built one in
    memory) and source-specific facts for the asset's metadata."""

    written: dict[str, int]
    batch: MarketFrames | None = None
    details: dict[str, Any] = field(default_factory=dict)


class MarketSource(dg.ConfigurableResource):
    """Base of the market-data resources."""

    def fetch(
        self,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        resume: Mapping[tuple, pd.Timestamp] | None = None,
    ) -> MarketFrames:
        """Raw-table frames for bars opening in [start, end) (``None``: the whole window)."""
        raise NotImplementedError

    def ingest(
        self,
        con: duckdb.DuckDBPyConnection,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        replace: bool = False,
    ) -> Ingested:
        """Fetch [start, end) (or the whole window, resuming where ``incremental``) and write it
        in one transaction; a stored row with other values is a conflict unless ``replace``."""
        if start is None and end is None and self.incremental:
            frames = self.fetch(resume=resume_points(con, self.timeframe_name))
        else:
            frames = self.fetch(start, end)
        written = write_batch(con, frames.tables(), source=type(self).__name__, replace=replace)
        return Ingested(written=written, batch=frames)

    @property
    def incremental(self) -> bool:
        """True when an un-partitioned run should resume after the last stored bar."""
        return False

    @property
    def timeframe_name(self) -> str:
        return "1h"

    @property
    def venue(self) -> str:
        """The venue training, evaluation and serving use."""
        raise NotImplementedError

    def universe(self) -> tuple[str, ...]:
        """The symbols training, evaluation and serving use, in this order."""
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

    def universe(self) -> tuple[str, ...]:
        return tuple(self.config().universe)

    def describe(self) -> dict[str, str]:
        c = self.config()
        return {
            "source": "synthetic",
            "seed": str(c.seed),
            "symbols": ", ".join(c.universe),
            "venues": ", ".join(c.venue_names),
            "timeframe": c.timeframe,
        }


_PLAN = FetchPlan()


class CcxtMarketSource(MarketSource):
    """Real exchanges through ccxt. Public market data needs no API key; if one is set in the
    environment variables named by ``api_key_env``/``secret_env`` (``{VENUE}`` is replaced by the
    venue in upper case) it is passed to ccxt and redacted from every message.

    ``timeframe``, ``spot``, ``mark_index``, ``funding``, ``open_interest`` and
    ``order_book_levels`` are ``ingestion.ccxt_source.FetchPlan``'s fields, with its defaults
    and meaning; ``venues`` and ``symbols`` are its universe as comma-separated text (or a
    symbol preset such as ``chun_lee_2025``)."""

    venues: str = ",".join(_PLAN.venues)
    symbols: str = "default"
    timeframe: str = _PLAN.timeframe
    start: str = "2024-01-01"
    spot: bool = _PLAN.spot
    mark_index: bool = _PLAN.mark_index
    funding: bool = _PLAN.funding
    open_interest: bool = _PLAN.open_interest
    order_book_levels: int = _PLAN.order_book_levels
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
        universe = {"venues", "symbols"}
        return FetchPlan(
            venues=self.venue_list(),
            symbols=resolve_symbols(self.symbols),
            **{f.name: getattr(self, f.name) for f in fields(FetchPlan) if f.name not in universe},
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

    def universe(self) -> tuple[str, ...]:
        return resolve_symbols(self.symbols)

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


class FileMarketSource(MarketSource):
    """A freqtrade (``kind="freqtrade"``) or Binance bulk-data (``"binance-bulk"``) directory.

    ``ingest`` runs ``ingestion.importers.import_directory``: one transaction, identical rows
    left alone, a stored row the files would change refused. A partition imports the bars (and
    settlements) of its window only; an un-partitioned run resumes at the earliest of the
    latest stored bars of the configured symbols (all of the files for a symbol not stored yet).
    ``symbols`` (comma-separated) defaults to every symbol with perpetual bars of ``timeframe``
    in the directory; ``venue`` is the venue the rows are stored (and trained) under.
    """

    kind: str
    path: str
    venue_name: str = "binance"
    symbols: str | None = None
    timeframe: str = "1h"

    def universe(self) -> tuple[str, ...]:
        if self.symbols:
            return resolve_symbols(self.symbols)
        found = perpetual_symbols(self.kind, self.path, self.timeframe)
        if not found:
            raise ValueError(
                f"{self.kind} directory {self.path}: no perpetual {self.timeframe} files found"
            )
        return found

    @property
    def venue(self) -> str:
        return self.venue_name

    @property
    def timeframe_name(self) -> str:
        return self.timeframe

    @property
    def incremental(self) -> bool:
        return True

    def fetch(self, start=None, end=None, resume=None) -> MarketFrames:
        read = import_freqtrade_frames if self.kind == "freqtrade" else import_binance_bulk_frames
        return read(self.path, self.venue_name, self.universe()).window(start, end)

    def resume_from(self, con: duckdb.DuckDBPyConnection) -> pd.Timestamp | None:
        """The earliest of the latest stored bars of each configured symbol and market; None when
        a symbol has no stored perpetual bars."""
        symbols = self.universe()
        latest = con.execute(
            f"SELECT symbol, market, max(ts) FROM {OHLCV.qualified} "
            "WHERE venue = ? AND timeframe = ? AND list_contains(?, symbol) GROUP BY ALL",
            [self.venue_name, self.timeframe, list(symbols)],
        ).fetchall()
        with_perp = {symbol for symbol, market, _ in latest if market == "perp"}
        if with_perp != set(symbols):
            return None
        return pd.Timestamp(min(ts for _, _, ts in latest))

    def ingest(self, con, start=None, end=None, replace=False) -> Ingested:
        mode_start = start if start is not None or end is not None else self.resume_from(con)
        report = import_directory(
            con,
            self.kind,
            self.path,
            self.venue_name,
            start=mode_start,
            end=end,
            symbols=self.universe(),
            replace=replace,
        )
        return Ingested(
            written={name: report.rows_written.get(name, 0) for name in RAW_TABLES},
            details={
                "files_read": report.files,
                "files_skipped": len(report.skipped),
                "skipped": "; ".join(report.skipped) or "none",
                "gaps_found": report.gaps,
                "mark_from_perp_close": ", ".join(report.mark_from_perp_close) or "none",
                "imported_from": str(mode_start) if mode_start is not None else "",
            },
        )

    def describe(self) -> dict[str, str]:
        return {
            "source": self.kind,
            "path": self.path,
            "venue": self.venue_name,
            "symbols": ", ".join(self.universe()),
            "timeframe": self.timeframe,
        }


class WarehouseMarketSource(MarketSource):
    """What the warehouse already holds (imported before, e.g. with ``perpfolio import``):
    ingestion writes nothing. ``symbols`` (comma-separated or a preset) and ``venue_name`` say
    what to train on; they are required, not read from the warehouse."""

    venue_name: str = "binance"
    symbols: str
    timeframe: str = "1h"

    def universe(self) -> tuple[str, ...]:
        return resolve_symbols(self.symbols)

    @property
    def venue(self) -> str:
        return self.venue_name

    @property
    def timeframe_name(self) -> str:
        return self.timeframe

    def ingest(self, con, start=None, end=None, replace=False) -> Ingested:
        return Ingested(written={name: 0 for name in RAW_TABLES})

    def describe(self) -> dict[str, str]:
        return {
            "source": "warehouse (nothing fetched)",
            "venue": self.venue_name,
            "symbols": ", ".join(self.universe()),
            "timeframe": self.timeframe,
        }


KINDS = ("synthetic", "ccxt", "ccxt-local", "warehouse", "freqtrade:PATH", "binance-bulk:PATH")


def market_source_for(environment: str) -> MarketSource:
    """The market source of an environment; ``PERPFOLIO_MARKET_SOURCE`` overrides the kind
    (one of ``KINDS``) and ``PERPFOLIO_SYMBOLS``/``PERPFOLIO_VENUES`` the universe."""
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
    if kind == "warehouse":
        if not symbols:
            raise ValueError(
                "PERPFOLIO_MARKET_SOURCE=warehouse needs PERPFOLIO_SYMBOLS: the symbols to train "
                "on (e.g. BTC,ETH), which are not taken from whatever the warehouse holds"
            )
        return WarehouseMarketSource(venue_name=_one_venue(kind, venues), symbols=symbols)
    file_kind, _, path = kind.partition(":")
    if file_kind in IMPORTERS and path:
        return FileMarketSource(
            kind=file_kind,
            path=str(Path(path).expanduser().resolve()),
            venue_name=_one_venue(kind, venues),
            symbols=symbols,
        )
    raise ValueError(f"PERPFOLIO_MARKET_SOURCE must be one of {', '.join(KINDS)}; got {kind!r}")


def _one_venue(kind: str, venues: str | None) -> str:
    names = [v.strip() for v in (venues or "binance").split(",") if v.strip()]
    if len(names) != 1:
        raise ValueError(
            f"PERPFOLIO_MARKET_SOURCE={kind} takes one venue, PERPFOLIO_VENUES={venues!r}"
        )
    return names[0]
