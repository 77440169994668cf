"""A local Binance-compatible exchange: Binance's public REST API served on 127.0.0.1 from a
synthetic market.

It answers what ccxt's ``binanceusdm`` and ``binance`` (spot) call for market data, in Binance's
formats: ``exchangeInfo``, ``klines``, ``markPriceKlines``, ``indexPriceKlines``, ``fundingRate``,
``premiumIndex``, ``openInterestHist``, ``depth`` and ``time``. The ccxt source reaches it through
its ``base_url`` (``ingestion.ccxt_source.point_exchange_at``), so ccxt's own request and parsing
code runs; this module imports nothing of the ccxt source.

Faults are queued per endpoint with ``server.inject(endpoint, kind, times)``:
``429``, ``500``, ``503`` (HTTP errors with Binance bodies), ``timeout`` (answers late),
``truncated`` (a short page), ``overlap`` (a page starting earlier than asked), ``malformed``
(invalid JSON), ``nan`` (a candle with a NaN price), ``auth`` (401, bad API key). Candles can be
withheld for good with ``server.missing`` to create gaps.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from ingestion.frames import MarketFrames
from ingestion.universe import TIMEFRAMES

FAULTS = ("429", "500", "503", "timeout", "truncated", "overlap", "malformed", "nan", "auth")


def _ms(ts) -> np.ndarray:
    return pd.to_datetime(ts).to_numpy(dtype="datetime64[ms]").astype(np.int64)


class LocalBinance:
    """The server; ``market`` supplies perp/spot/mark/index bars, funding, OI and books."""

    def __init__(self, market: MarketFrames, now: pd.Timestamp | None = None, delay: float = 2.0):
        self.market = market
        self.now = now
        self.timeout_delay = delay
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.missing: set[tuple[str, str, pd.Timestamp]] = set()  # (market, symbol, ts)
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._index()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> LocalBinance:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalBinance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, endpoint: str, kind: str, times: int = 1) -> None:
        """The next ``times`` requests to ``endpoint`` (e.g. 'klines') answer with ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self._lock:
            self.faults[endpoint].extend([kind] * times)

    # ------------------------------------------------------------------ data
    def _index(self) -> None:
        bars = self.market.ohlcv
        self.bars = {
            key: g.sort_values("ts").reset_index(drop=True)
            for key, g in bars.groupby(["market", "symbol", "timeframe"])
        }
        self.symbols = sorted(bars["symbol"].unique())
        self.funding = {
            s: g.sort_values("ts").reset_index(drop=True)
            for s, g in self.market.funding_rates.groupby("symbol")
        }
        self.oi = {
            s: g.sort_values("ts").reset_index(drop=True)
            for s, g in self.market.open_interest.groupby("symbol")
        }
        books = self.market.order_book_snapshots
        self.books = {k: g for k, g in books.groupby(["market", "symbol"])}

    def _take_fault(self, endpoint: str) -> str | None:
        with self._lock:
            queue = self.faults.get(endpoint)
            return queue.pop(0) if queue else None

    def _now_ms(self) -> int:
        if self.now is not None:
            return int(_ms([self.now])[0])
        return int(time.time() * 1000)

    # ------------------------------------------------------------------ answers
    def _exchange_info(self, spot: bool) -> dict:
        symbols = []
        for base in self.symbols:
            entry = {
                "symbol": f"{base}USDT",
                "pair": f"{base}USDT",
                "status": "TRADING",
                "baseAsset": base,
                "quoteAsset": "USDT",
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "pricePrecision": 8,
                "quantityPrecision": 3,
                "orderTypes": ["LIMIT", "MARKET"],
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.00000001",
                        "maxPrice": "1000000",
                        "tickSize": "0.00000001",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.001",
                        "maxQty": "10000000",
                        "stepSize": "0.001",
                    },
                ],  # fmt: skip
            }
            if not spot:
                entry.update(
                    {
                        "contractType": "PERPETUAL",
                        "deliveryDate": 4133404800000,
                        "onboardDate": 1569398400000,
                        "marginAsset": "USDT",
                        "underlyingType": "COIN",
                        "settlePlan": 0,
                        "triggerProtect": "0.0500",
                        "liquidationFee": "0.012500",
                        "marketTakeBound": "0.05",
                    }
                )
            symbols.append(entry)
        return {
            "timezone": "UTC",
            "serverTime": self._now_ms(),
            "rateLimits": [],
            "symbols": symbols,
        }

    def _klines(self, market: str, params: dict, fault: str | None):
        base = self._base(params.get("symbol") or params.get("pair"))
        interval = params.get("interval", "1h")
        limit = min(int(params.get("limit", 500)), 1500 if market != "spot" else 1000)
        frame = self.bars.get((market, base, interval))
        if frame is None:
            return []
        ts = _ms(frame["ts"])
        lo, hi = 0, len(ts)
        if "startTime" in params:
            lo = int(np.searchsorted(ts, int(params["startTime"])))
        if "endTime" in params:
            hi = int(np.searchsorted(ts, int(params["endTime"]), side="right"))
        elif "startTime" not in params:
            lo = max(0, hi - limit)
        if fault == "overlap":
            lo = max(0, lo - 3)
        now = self._now_ms()
        rows: list[list[Any]] = []
        step = TIMEFRAMES[interval].milliseconds
        for i in range(lo, hi):
            if ts[i] + step > now + step:  # not yet open
                break
            if (market, base, pd.Timestamp(ts[i], unit="ms")) in self.missing:
                continue
            r = frame.iloc[i]
            vol = 0.0 if pd.isna(r["volume"]) else float(r["volume"])
            close = "NaN" if fault == "nan" and not rows else repr(float(r["close"]))
            quote = vol * float(r["close"])
            rows.append(
                [int(ts[i]), repr(float(r["open"])), repr(float(r["high"])),
                 repr(float(r["low"])), close, repr(vol), int(ts[i]) + step - 1,
                 repr(quote), 100, repr(vol / 2), repr(quote / 2), "0"]
            )  # fmt: skip
            if len(rows) >= limit:
                break
        if fault == "truncated":
            rows = rows[: max(1, len(rows) // 3)]
        return rows

    def _page(
        self, ts: np.ndarray, params: dict, fault: str | None, default_limit: int, max_limit: int
    ) -> tuple[int, int]:
        """Row range [lo, hi) of one page: startTime/endTime/limit as Binance reads them (the
        latest ``limit`` rows without startTime); ``overlap`` repeats two earlier rows."""
        lo = int(np.searchsorted(ts, int(params.get("startTime", 0))))
        hi = int(np.searchsorted(ts, int(params.get("endTime", self._now_ms())), side="right"))
        limit = min(int(params.get("limit", default_limit)), max_limit)
        if "startTime" not in params:
            lo = max(0, hi - limit)
        if fault == "overlap":
            lo = max(0, lo - 2)
        return lo, min(hi, lo + limit)

    def _funding(self, params: dict, fault: str | None):
        base = self._base(params.get("symbol"))
        frame = self.funding.get(base)
        if frame is None:
            return []
        ts = _ms(frame["ts"])
        lo, hi = self._page(ts, params, fault, default_limit=100, max_limit=1000)
        out = [
            {"symbol": f"{base}USDT", "fundingTime": int(ts[i]) + 1,
             "fundingRate": f"{frame['funding_rate'].iloc[i]:.8f}", "markPrice": "0"}
            for i in range(lo, hi)
        ]  # fmt: skip
        return out[: max(1, len(out) // 3)] if fault == "truncated" else out

    def _open_interest(self, params: dict, fault: str | None):
        base = self._base(params.get("symbol"))
        frame = self.oi.get(base)
        if frame is None:
            return []
        ts = _ms(frame["ts"])
        lo, hi = self._page(ts, params, fault, default_limit=30, max_limit=500)
        out = [
            {"symbol": f"{base}USDT", "sumOpenInterest": f"{frame['open_interest'].iloc[i]:.8f}",
             "sumOpenInterestValue": f"{frame['open_interest_value'].iloc[i]:.8f}",
             "CMCCirculatingSupply": "0", "timestamp": int(ts[i])}
            for i in range(lo, hi)
        ]  # fmt: skip
        return out[: max(1, len(out) // 3)] if fault == "truncated" else out

    def _depth(self, market: str, params: dict):
        base = self._base(params.get("symbol"))
        limit = int(params.get("limit", 100))
        book = self.books.get((market, base))
        now = self._now_ms()
        if book is None:
            return {"lastUpdateId": 1, "E": now, "T": now, "bids": [], "asks": []}
        ts = _ms(book["ts"])
        at = ts[ts <= now].max() if (ts <= now).any() else ts.min()
        snap = book[ts == at]
        side = {
            s: snap[snap["side"] == s].sort_values("level").head(limit)[["price", "amount"]]
            for s in ("bid", "ask")
        }
        levels = {s: [[repr(p), repr(a)] for p, a in side[s].itertuples(index=False)] for s in side}
        return {"lastUpdateId": int(at), "E": int(at), "T": int(at),
                "bids": levels["bid"], "asks": levels["ask"]}  # fmt: skip

    def _base(self, pair: str | None) -> str:
        if not pair or not pair.endswith("USDT") or pair[:-4] not in self.symbols:
            raise _BinanceError(400, -1121, "Invalid symbol.")
        return pair[:-4]

    # ------------------------------------------------------------------ HTTP
    def answer(self, path: str, params: dict) -> tuple[int, str]:
        parts = path.strip("/").split("/")
        route = "/" + "/".join(parts[1:]) if "." in parts[0] else path  # drop the host part
        endpoint = route.rsplit("/", 1)[-1]
        self.requests.append(route)
        fault = self._take_fault(endpoint)
        if fault == "timeout":
            time.sleep(self.timeout_delay)
        if fault in ("429",):
            return 429, json.dumps({"code": -1003, "msg": "Too many requests; IP banned briefly."})
        if fault == "500":
            return 500, json.dumps({"code": -1001, "msg": "Internal error; try again."})
        if fault == "503":
            return 503, "<html><body>503 Service Temporarily Unavailable</body></html>"
        if fault == "auth":
            return 401, json.dumps({"code": -2015, "msg": "Invalid API-key, IP, or permissions."})
        if fault == "malformed":
            return 200, '[[1700000000000, "1.0", "2.0"'  # cut off mid-answer
        spot = route.startswith("/api/")
        market = "spot" if spot else "perp"
        body: Any
        try:
            if endpoint == "exchangeInfo":
                body = self._exchange_info(spot)
            elif endpoint == "time":
                body = {"serverTime": self._now_ms()}
            elif endpoint == "klines":
                body = self._klines(market, params, fault)
            elif endpoint == "markPriceKlines":
                body = self._klines("mark", params, fault)
            elif endpoint == "indexPriceKlines":
                body = self._klines("index", params, fault)
            elif endpoint == "fundingRate":
                body = self._funding(params, fault)
            elif endpoint == "openInterestHist":
                body = self._open_interest(params, fault)
            elif endpoint == "depth":
                body = self._depth(market, params)
            elif endpoint == "premiumIndex":
                body = []
            else:
                return 404, json.dumps({"code": -1, "msg": f"unknown endpoint {route}"})
        except _BinanceError as err:
            return err.status, json.dumps({"code": err.code, "msg": err.msg})
        return 200, json.dumps(body)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                status, body = fake.answer(url.path, params)
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout fault)

            def log_message(self, *args):  # quiet
                pass

        return Handler


class _BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
