"""Market data from real exchanges through ccxt: paginated, rate-limited, retried, validated.

``CcxtFetcher`` fetches, per venue and symbol, perpetual and spot OHLCV (``since`` pagination),
mark and index price bars, funding-rate history, open-interest history and a top-N order-book
snapshot, and returns them as raw-table frames (the same tables the synthetic market and the
importers write). Timeframes 10m, 30m, 1h, 1d (and 5m); 10m is built from 5m candles.

Transient failures (``NetworkError`` and its subclasses ``RateLimitExceeded``, ``DDoSProtection``,
``ExchangeNotAvailable``, ``RequestTimeout``, plus ``OperationFailed`` and unparsable answers) are
retried with bounded exponential backoff; permanent ones (``BadSymbol``, ``AuthenticationError``,
other ``ExchangeError``) fail at once with ``IngestionError`` naming venue, symbol, series and
time. Candles with NaN or non-positive prices are dropped and show up as recorded gaps; duplicate
and overlapping pages collapse; missing bars are recorded in ``raw.data_gaps``.

Every series here is public, so the exchanges are built without API keys even when the caller
has some: with keys, ccxt's ``load_markets`` calls private endpoints (Binance
``/sapi/v1/capital/config/getall`` and ``/sapi/v1/margin/allPairs``, OKX and Bybit their
currency lists), which would make market data fail on a key's permissions. A
re-fetched bar the exchange has changed since it was stored is a conflict when written
(``write_batch`` without ``replace``), not a silent overwrite.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from ingestion.frames import MarketFrames, empty_frame
from ingestion.gaps import find_gaps
from ingestion.universe import VENUES, VenueSpec, timeframe_delta
from ingestion.warehouse import (
    DATA_GAPS,
    FUNDING_RATES,
    OHLCV,
    OPEN_INTEREST,
    ORDER_BOOK_SNAPSHOTS,
)

log = logging.getLogger(__name__)

RETRYABLE = (
    ccxt.NetworkError,  # includes RequestTimeout, ExchangeNotAvailable, DDoSProtection
    ccxt.RateLimitExceeded,
    ccxt.ExchangeNotAvailable,
    ccxt.RequestTimeout,
    ccxt.OperationFailed,
)
PERMANENT = (ccxt.BadSymbol, ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.ExchangeError)
MS = 1_000_000  # ns per ms


class IngestionError(RuntimeError):
    """A permanent failure (or retries exhausted); the message says where."""


class MalformedAnswer(ccxt.OperationFailed):
    """The exchange answered with a body that is not valid JSON (e.g. cut off)."""


@dataclass
class FetchPlan:
    """What to fetch: the universe, the series, the window."""

    venues: tuple[str, ...] = ("binance",)
    symbols: tuple[str, ...] = ("BTC", "ETH")
    timeframe: str = "1h"
    spot: bool = True
    mark_index: bool = True
    funding: bool = True
    open_interest: bool = True
    order_book_levels: int = 5


@dataclass
class RetryPolicy:
    max_retries: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    seed: int = 0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def point_exchange_at(exchange, base_url: str) -> None:
    """Route every API of a ccxt exchange to ``base_url``, keeping each API's host as a path part
    (how the local Binance-compatible exchange tells the perp, spot and data APIs apart)."""
    base = base_url.rstrip("/")
    exchange.urls["api"] = {
        name: url.replace("https://", f"{base}/") for name, url in exchange.urls["api"].items()
    }


def make_exchange(
    exchange_id: str,
    *,
    base_url: str | None = None,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
    spot_only: bool = False,
) -> ccxt.Exchange:
    """A public (keyless) ccxt exchange with rate limiting on; ``base_url`` points it at a local
    fake."""
    if not hasattr(ccxt, exchange_id):
        raise IngestionError(f"ccxt has no exchange {exchange_id!r}")
    config: dict = {"enableRateLimit": True, "timeout": timeout_ms}
    if spot_only:
        config["options"] = {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}}
    exchange = getattr(ccxt, exchange_id)(config)
    if rate_limit_ms is not None:
        exchange.rateLimit = rate_limit_ms
    if base_url:
        point_exchange_at(exchange, base_url)
    return exchange


class CcxtFetcher:
    """Fetches one venue's series for a plan; exchanges are created lazily and reused."""

    def __init__(
        self,
        venue: VenueSpec,
        perp: ccxt.Exchange,
        spot: ccxt.Exchange | None,
        retry: RetryPolicy | None = None,
        page_limit: int = 1000,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.venue, self.perp, self.spot = venue, perp, spot
        self.retry = retry or RetryPolicy()
        self.page_limit = page_limit
        self._secrets = tuple(s for s in secrets if s)
        self._rng = random.Random(self.retry.seed)
        self._loaded: set[int] = set()

    # ------------------------------------------------------------------ calls
    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _call(self, exchange: ccxt.Exchange, what: str, fn: Callable, *args, **kwargs):
        """Call ``fn`` with retries on transient errors; ``what`` names venue/symbol/time."""
        attempt = 0
        while True:
            try:
                result = fn(*args, **kwargs)
                self._check_body(exchange)
                return result
            except ccxt.BadSymbol as err:
                raise IngestionError(
                    f"{self.venue.name}: {what}: the venue does not list this symbol "
                    f"({self._redact(str(err))})"
                ) from None
            except ccxt.AuthenticationError as err:
                raise IngestionError(
                    f"{self.venue.name}: {what}: authentication failed - check the API key "
                    f"environment variables ({type(err).__name__})"
                ) from None
            except RETRYABLE as err:
                attempt += 1
                if attempt > self.retry.max_retries:
                    raise IngestionError(
                        f"{self.venue.name}: {what}: gave up after {self.retry.max_retries} "
                        f"retries: {type(err).__name__}: {self._redact(str(err))[:300]}"
                    ) from None
                delay = min(
                    self.retry.max_backoff_seconds, self.retry.backoff_seconds * 2 ** (attempt - 1)
                ) * (0.5 + self._rng.random() / 2)
                log.warning(
                    "%s: %s: %s, retry %d/%d in %.2fs",
                    self.venue.name,
                    what,
                    type(err).__name__,
                    attempt,
                    self.retry.max_retries,
                    delay,
                )
                self.retry.sleep(delay)
            except PERMANENT as err:
                raise IngestionError(
                    f"{self.venue.name}: {what}: {type(err).__name__}: "
                    f"{self._redact(str(err))[:300]}"
                ) from None

    @staticmethod
    def _check_body(exchange: ccxt.Exchange) -> None:
        body = exchange.last_http_response
        if body is None or not isinstance(body, str) or not body:
            return
        try:
            json.loads(body)
        except ValueError:
            raise MalformedAnswer(f"unparsable answer: {body[:80]!r}") from None

    def _load(self, exchange: ccxt.Exchange) -> None:
        if id(exchange) not in self._loaded:
            self._call(exchange, "load markets", exchange.load_markets)
            self._loaded.add(id(exchange))

    def _market_symbol(self, exchange: ccxt.Exchange, symbol: str, spot: bool) -> str:
        self._load(exchange)
        name = self.venue.spot_symbol(symbol) if spot else self.venue.perp_symbol(symbol)
        if name not in exchange.markets:
            raise IngestionError(
                f"{self.venue.name}: symbol {symbol} ({name}) is not listed by "
                f"{exchange.id}; check the configured universe"
            )
        return name

    # ------------------------------------------------------------------ series
    def fetch(
        self,
        plan: FetchPlan,
        start: pd.Timestamp,
        end: pd.Timestamp,
        resume: Mapping[tuple, pd.Timestamp] | None = None,
    ) -> MarketFrames:
        """Every planned series of this venue for bars opening in [start, end).

        ``resume`` maps (venue, market, symbol, timeframe) -> last stored bar; a series then
        starts right after it (incremental run).
        """
        resume = resume or {}
        step = timeframe_delta(plan.timeframe)
        bars, funding, oi, books, gaps = [], [], [], [], []
        markets = ["perp"]
        if plan.spot and self.spot is not None:
            markets.append("spot")
        if plan.mark_index:
            markets += ["mark", "index"]
        for symbol in plan.symbols:
            for market in markets:
                key = (self.venue.name, market, symbol, plan.timeframe)
                first = max(start, resume[key] + step) if key in resume else start
                if first >= end:
                    continue
                frame, _ = self.ohlcv(symbol, market, plan.timeframe, first, end)
                bars.append(frame)
                seen = frame if not frame.empty else _placeholder(key, first - step)
                gaps.append(find_gaps(seen, f"ccxt:{self.venue.name}", first, end))
            if plan.funding:
                fkey = (self.venue.name, "funding", symbol, "")
                after = pd.Timedelta(minutes=30)  # past the stored settlement (ms jitter)
                first = max(start, resume[fkey] + after) if fkey in resume else start
                if first < end:
                    funding.append(self.funding_rates(symbol, first, end))
            if plan.open_interest:
                okey = (self.venue.name, "open_interest", symbol, plan.timeframe)
                first = max(start, resume[okey] + step) if okey in resume else start
                if first < end:
                    oi.append(self.open_interest(symbol, plan.timeframe, first, end))
            if plan.order_book_levels > 0:
                books.append(self.order_book(symbol, plan.order_book_levels))
        return MarketFrames(
            ohlcv=_concat(bars, OHLCV),
            funding_rates=_concat(funding, FUNDING_RATES),
            open_interest=_concat(oi, OPEN_INTEREST),
            order_book_snapshots=_concat(books, ORDER_BOOK_SNAPSHOTS),
            data_gaps=_concat(gaps, DATA_GAPS),
        )

    def _paginate(
        self,
        exchange,
        what: str,
        fetch_page: Callable[[int], list],
        ts_of: Callable,
        start_ms: int,
        end_ms: int,
    ) -> list:
        """Pages from ``start_ms`` forward until ``end_ms``; overlapping pages collapse (last
        answer wins), short pages go on from their last row, an empty page ends the series."""
        rows: dict[int, object] = {}
        since = None
        cursor = start_ms
        while cursor < end_ms:
            page = self._call(exchange, f"{what} since {_iso(cursor)}", fetch_page, cursor) or []
            page = [r for r in page if ts_of(r) is not None and cursor <= ts_of(r) < end_ms]
            if not page:
                break
            for r in page:
                rows[ts_of(r)] = r
            last = max(ts_of(r) for r in page)
            if since is not None and last <= since:
                break
            since = last
            cursor = last + 1
        return [rows[k] for k in sorted(rows)]

    def ohlcv(
        self, symbol: str, market: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[pd.DataFrame, int]:
        """Bars of one series in [start, end); returns (frame, number of invalid candles)."""
        spot = market == "spot"
        exchange = self.spot if spot else self.perp
        if exchange is None:
            raise IngestionError(f"{self.venue.name}: spot bars of {symbol}: no spot exchange")
        name = self._market_symbol(exchange, symbol, spot)
        native = timeframe if timeframe != "10m" or "10m" in exchange.timeframes else "5m"
        params = {"price": market} if market in ("mark", "index") else {}
        step_ms = int(timeframe_delta(native).value // MS)
        start_ms, end_ms = _to_ms(start), _to_ms(end)

        def page(since: int) -> list:
            return exchange.fetch_ohlcv(name, native, since, self.page_limit, params)

        what = f"{market} {native} bars of {symbol}"
        rows = self._paginate(exchange, what, page, lambda r: r[0], start_ms, end_ms)
        # Only closed bars: the bar must have ended by ``end``.
        rows = [r for r in rows if r[0] + step_ms <= end_ms]
        frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
        frame = frame.astype({c: float for c in ("open", "high", "low", "close", "volume")})
        bad = _invalid(frame)
        for r in frame[bad].itertuples():
            log.warning(
                "%s: %s %s bar of %s at %s is invalid (open=%s high=%s low=%s close=%s); "
                "dropped and recorded as a gap",
                self.venue.name, market, native, symbol, _iso(int(r.ms)),
                r.open, r.high, r.low, r.close,
            )  # fmt: skip
        frame = frame[~bad]
        ts = pd.to_datetime(frame["ms"], unit="ms")
        out = pd.DataFrame(
            {
                "venue": self.venue.name,
                "market": market,
                "symbol": symbol,
                "timeframe": native,
                "ts": ts.to_numpy(),
                "open": frame["open"].to_numpy(),
                "high": frame["high"].to_numpy(),
                "low": frame["low"].to_numpy(),
                "close": frame["close"].to_numpy(),
                "volume": frame["volume"].to_numpy() if market in ("perp", "spot") else np.nan,
            }
        )
        if native != timeframe:
            out = resample_bars(out, timeframe)
        return out, int(bad.sum())

    def funding_rates(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        name = self._market_symbol(self.perp, symbol, False)

        def page(since: int) -> list:
            return self.perp.fetch_funding_rate_history(name, since, self.page_limit)

        rows = self._paginate(
            self.perp,
            f"funding of {symbol}",
            page,
            lambda r: r.get("timestamp"),
            _to_ms(start),
            _to_ms(end),
        )
        rates = [r for r in rows if _finite(r.get("fundingRate"))]
        if len(rates) < len(rows):
            log.warning("%s: %d malformed funding entries of %s dropped", self.venue.name,
                        len(rows) - len(rates), symbol)  # fmt: skip
        if not rates:
            return empty_frame(FUNDING_RATES)
        ts = pd.to_datetime(pd.Series([r["timestamp"] for r in rates]), unit="ms").dt.round("h")
        frame = pd.DataFrame(
            {"venue": self.venue.name, "symbol": symbol, "ts": ts,
             "funding_rate": [float(r["fundingRate"]) for r in rates]}
        ).drop_duplicates("ts", keep="last")  # fmt: skip
        hours = frame["ts"].diff().dt.total_seconds().div(3600)
        typical = int(hours.mode().iloc[0]) if hours.notna().any() else 8
        hours = hours.fillna(typical).round().astype(int)
        frame["interval_hours"] = hours.where(hours.isin([1, 2, 4, 8]), typical).astype(np.int32)
        return frame.reset_index(drop=True)

    def open_interest(
        self, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        name = self._market_symbol(self.perp, symbol, False)
        period = "5m" if timeframe == "10m" else timeframe

        def page(since: int) -> list:
            limit = min(500, self.page_limit)
            return self.perp.fetch_open_interest_history(name, period, since, limit)

        rows = self._paginate(
            self.perp,
            f"open interest of {symbol}",
            page,
            lambda r: r.get("timestamp"),
            _to_ms(start),
            _to_ms(end),
        )
        frame = pd.DataFrame(
            {
                "venue": self.venue.name,
                "symbol": symbol,
                "timeframe": timeframe,
                "ts": pd.to_datetime([r["timestamp"] for r in rows], unit="ms"),
                "open_interest": [r.get("openInterestAmount") for r in rows],
                "open_interest_value": [r.get("openInterestValue") for r in rows],
            }
        )
        frame = frame.astype({"open_interest": float, "open_interest_value": float})
        frame = frame[np.isfinite(frame["open_interest"]) & (frame["open_interest"] >= 0)]
        if timeframe == "10m":
            frame = frame[frame["ts"].dt.minute % 10 == 0]
        return frame.reset_index(drop=True)

    def order_book(self, symbol: str, levels: int) -> pd.DataFrame:
        name = self._market_symbol(self.perp, symbol, False)
        book = self._call(
            self.perp, f"order book of {symbol}", self.perp.fetch_order_book, name, levels
        )
        stamp = book.get("timestamp") or int(time.time() * 1000)
        rows = []
        for side, key in (("bid", "bids"), ("ask", "asks")):
            for i, entry in enumerate(book.get(key, [])[:levels]):
                price, amount = float(entry[0]), float(entry[1])
                if np.isfinite(price) and price > 0 and np.isfinite(amount) and amount >= 0:
                    rows.append((side, i + 1, price, amount))
        frame = pd.DataFrame(rows, columns=["side", "level", "price", "amount"])
        frame.insert(0, "ts", pd.Timestamp(stamp, unit="ms").floor("s"))
        frame.insert(0, "symbol", symbol)
        frame.insert(0, "market", "perp")
        frame.insert(0, "venue", self.venue.name)
        frame["level"] = frame["level"].astype(np.int32)
        return frame


def resample_bars(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Aggregate finer bars (e.g. 5m) into ``timeframe`` bars; incomplete buckets are dropped
    (and so show up as gaps)."""
    if bars.empty:
        out = bars.copy()
        out["timeframe"] = timeframe
        return out
    step = timeframe_delta(timeframe)
    fine = timeframe_delta(bars["timeframe"].iloc[0])
    need = int(step / fine)
    b = bars.sort_values("ts").copy()
    b["bucket"] = b["ts"].dt.floor(step)
    keys = ["venue", "market", "symbol", "bucket"]
    g = b.groupby(keys, sort=True)
    out = g.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", lambda v: v.sum(min_count=1)),
        n=("ts", "size"),
    ).reset_index()
    out = out[out["n"] == need].drop(columns="n").rename(columns={"bucket": "ts"})
    out.insert(3, "timeframe", timeframe)
    return out[OHLCV.frame_columns].reset_index(drop=True)


def _invalid(frame: pd.DataFrame) -> np.ndarray:
    prices = frame[["open", "high", "low", "close"]].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(prices) & (prices > 0)).all(axis=1)
        bad |= prices[:, 2] > np.minimum(prices[:, 0], prices[:, 3]) * (1 + 1e-9)
        bad |= prices[:, 1] < np.maximum(prices[:, 0], prices[:, 3]) * (1 - 1e-9)
    return bad


def _finite(value) -> bool:
    try:
        return value is not None and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def resume_points(con, timeframe: str) -> dict[tuple, pd.Timestamp]:
    """Last stored time per series, keyed as ``CcxtFetcher.fetch`` expects."""
    points: dict[tuple, pd.Timestamp] = {}
    for venue, market, symbol, tf, last in con.execute(
        "SELECT venue, market, symbol, timeframe, max(ts) FROM raw.ohlcv "
        "WHERE timeframe = ? GROUP BY ALL",
        [timeframe],
    ).fetchall():
        points[(venue, market, symbol, tf)] = pd.Timestamp(last)
    for venue, symbol, last in con.execute(
        "SELECT venue, symbol, max(ts) FROM raw.funding_rates GROUP BY ALL"
    ).fetchall():
        points[(venue, "funding", symbol, "")] = pd.Timestamp(last)
    for venue, symbol, tf, last in con.execute(
        "SELECT venue, symbol, timeframe, max(ts) FROM raw.open_interest "
        "WHERE timeframe = ? GROUP BY ALL",
        [timeframe],
    ).fetchall():
        points[(venue, "open_interest", symbol, tf)] = pd.Timestamp(last)
    return points


def _placeholder(key: tuple, ts: pd.Timestamp) -> pd.DataFrame:
    venue, market, symbol, timeframe = key
    return pd.DataFrame(
        [{"venue": venue, "market": market, "symbol": symbol, "timeframe": timeframe, "ts": ts}]
    )


def _concat(frames: list[pd.DataFrame], table) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else empty_frame(table)


def _to_ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // MS)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms").strftime("%Y-%m-%d %H:%M")


def fetcher_for(
    venue: str,
    *,
    base_url: str | None = None,
    retry: RetryPolicy | None = None,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
    credentials: Mapping[str, str] | None = None,
    spot: bool = True,
    page_limit: int = 1000,
) -> CcxtFetcher:
    """A fetcher for a configured venue ('binance', 'okx', 'bybit').

    ``credentials`` never reach the exchanges (market data is public, see the module doc); their
    values are redacted from every error message.
    """
    if venue not in VENUES:
        raise IngestionError(f"unknown venue {venue!r}; configured venues: {sorted(VENUES)}")
    spec = VENUES[venue]
    common: dict[str, Any] = dict(
        base_url=base_url, timeout_ms=timeout_ms, rate_limit_ms=rate_limit_ms
    )
    perp = make_exchange(spec.perp_exchange, **common)
    spot_ex = (
        make_exchange(spec.spot_exchange, spot_only=True, **common)
        if spot and spec.spot_exchange
        else None
    )
    secrets = tuple((credentials or {}).values())
    return CcxtFetcher(spec, perp, spot_ex, retry=retry, page_limit=page_limit, secrets=secrets)
