"""A local Binance-compatible exchange: Binance's public REST API served on 127.0.0.1 from a
synthetic market.

It answers what ccxt's ``binanceusdm`` and ``binance`` (spot) call for market data, in Binance's
formats: ``exchangeInfo``, ``klines``, ``markPriceKlines``, ``indexPriceKlines``, ``fundingRate``,
``premiumIndex``, ``openInterestHist``, ``depth`` and ``time``. The ccxt source reaches it through
its ``base_url`` (``ingestion.ccxt_source.point_exchange_at``), so ccxt's own request and parsing
code runs; this module imports nothing of the ccxt source.

It also keeps one USD-M futures account (one-way mode, cross margin, USDT) behind the signed
endpoints ccxt's ``binanceusdm`` calls: ``POST /fapi/v1/order`` (MARKET orders only, with
``newClientOrderId`` and ``reduceOnly``), ``GET /fapi/v1/order``, ``/fapi/v1/openOrders``,
``/fapi/v2|v3/positionRisk``, ``/fapi/v2|v3/account``, ``/fapi/v2|v3/balance``,
``/fapi/v1/leverageBracket`` and ``/fapi/v1/positionSide/dual``. A signed request needs the
``X-MBX-APIKEY`` header and an HMAC-SHA256 ``signature`` of its parameters with the server's
secret, and a ``timestamp`` within ``recvWindow`` of the wall clock; it is refused with Binance's
error bodies otherwise (-2014/-2015, -1022, -1021, -1102). A market order fills at once, whole,
at the open of the perp bar containing ``now`` (the last close once ``now`` is past the data),
pays the taker fee, and must pass the ``LOT_SIZE`` and ``MIN_NOTIONAL`` filters that
``exchangeInfo`` lists, the margin check at ``leverage`` and the reduce-only rule. A client order
id the server has seen before is refused with -4116 "ClientOrderId is duplicated." (Binance
itself guarantees that only among open orders). Every order request is recorded in
``order_requests`` (accepted or not) and every accepted order in ``orders``.

Faults are queued per endpoint (or per method and endpoint, ``"POST order"``) with
``server.inject(endpoint, kind, times)``:
``429``, ``500``, ``503`` (HTTP errors with Binance bodies), ``timeout`` (answers late),
``truncated`` (a short page), ``overlap`` (a page starting earlier than asked), ``malformed``
(invalid JSON), ``nan`` (a candle with a NaN price), ``auth`` (401, bad API key), ``lost`` (the
request takes effect but the answer comes late, as a timed-out order that went in). Candles can be
withheld for good with ``server.missing`` to create gaps.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from ingestion.frames import MarketFrames
from ingestion.universe import TIMEFRAMES

FAULTS = (
    "429", "500", "503", "timeout", "truncated", "overlap", "malformed", "nan", "auth", "lost",
)  # fmt: skip
CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
"""Binance's rule for ``newClientOrderId``."""
MAINT_MARGIN_RATIO = 0.004
"""Maintenance margin rate of the one leverage bracket every symbol has."""


def _ms(ts) -> np.ndarray:
    return pd.to_datetime(ts).to_numpy(dtype="datetime64[ms]").astype(np.int64)


@dataclass
class _Position:
    """One symbol's position of the futures account (one-way mode)."""

    qty: Decimal = Decimal(0)
    """Signed size in base units."""
    entry_price: float = 0.0
    """Average entry price (0 when flat)."""


class LocalBinance:
    """The server; ``market`` supplies perp/spot/mark/index bars, funding, OI and books.

    ``api_key``/``api_secret`` are the credentials signed requests must carry; ``wallet`` is the
    futures account's starting USDT balance; ``lot_sizes`` maps a base asset to its quantity step
    (default ``0.001``), ``min_notional`` is the smallest order value (USDT) and ``taker_fee`` the
    fee rate market orders pay.
    """

    def __init__(
        self,
        market: MarketFrames,
        now: pd.Timestamp | None = None,
        delay: float = 2.0,
        *,
        api_key: str = "local-api-key",
        api_secret: str = "local-api-secret",
        wallet: float = 10_000.0,
        lot_sizes: Mapping[str, str] | None = None,
        min_notional: float = 5.0,
        taker_fee: float = 0.0005,
        leverage: int = 20,
    ):
        self.market = market
        self.now = now
        self.timeout_delay = delay
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.missing: set[tuple[str, str, pd.Timestamp]] = set()  # (market, symbol, ts)
        self.requests: list[str] = []
        self.api_key, self._api_secret = api_key, api_secret
        self.wallet = float(wallet)
        self.min_notional, self.taker_fee, self.leverage = min_notional, taker_fee, leverage
        self.order_requests: list[dict] = []
        """Every order request received, in order: its host, parameters (no signature) and the
        error code it was refused with (None when accepted)."""
        self.orders: list[dict] = []
        """Every accepted order, in Binance's order format."""
        self._order_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._index()
        self.lot_sizes = {s: Decimal((lot_sizes or {}).get(s, "0.001")) for s in self.symbols}
        self.positions: dict[str, _Position] = {s: _Position() for s in self.symbols}
        """The futures account's position per base asset."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

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
        """The next ``times`` requests to ``endpoint`` (e.g. 'klines', or 'POST order' for one
        method only) answer with ``kind``."""
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
                "quantityPrecision": _decimals(self.lot_sizes[base]),
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
                        "minQty": str(self.lot_sizes[base]),
                        "maxQty": "10000000",
                        "stepSize": str(self.lot_sizes[base]),
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
                step = str(self.lot_sizes[base])
                entry["filters"] += [
                    {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "1000000",
                     "stepSize": step},
                    {"filterType": "MIN_NOTIONAL", "notional": repr(float(self.min_notional))},
                ]  # fmt: skip
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

    # ------------------------------------------------------------------ futures account
    def price(self, base: str, market: str = "perp") -> float:
        """The price at ``now``: the open of the ``market`` bar (finest timeframe) containing
        it, the last close once ``now`` is past the data, the first open before it."""
        keys = [(market, base, tf) for tf in TIMEFRAMES if (market, base, tf) in self.bars]
        if not keys:
            raise _BinanceError(400, -1121, "Invalid symbol.")
        frame = self.bars[keys[0]]
        ts = _ms(frame["ts"])
        i = int(np.searchsorted(ts, self._now_ms(), side="right")) - 1
        if i < 0:
            return float(frame["open"].iloc[0])
        step = TIMEFRAMES[frame["timeframe"].iloc[0]].milliseconds
        if i == len(ts) - 1 and self._now_ms() >= ts[i] + step:
            return float(frame["close"].iloc[i])
        return float(frame["open"].iloc[i])

    def mark_price(self, base: str) -> float:
        """The mark price at ``now`` (from the mark-price bars; the perp price without them)."""
        try:
            return self.price(base, "mark")
        except _BinanceError:
            return self.price(base, "perp")

    def _unrealized(self) -> dict[str, float]:
        return {
            s: float(p.qty) * (self.mark_price(s) - p.entry_price)
            for s, p in self.positions.items()
            if p.qty
        }

    def _initial_margin(self, positions: Mapping[str, _Position]) -> float:
        return sum(abs(float(p.qty)) * self.mark_price(s) for s, p in positions.items()) / max(
            self.leverage, 1
        )

    def _position_row(self, base: str, v3: bool) -> dict:
        p = self.positions[base]
        mark = self.mark_price(base)
        qty = float(p.qty)
        notional = qty * mark
        row = {
            "symbol": f"{base}USDT",
            "positionSide": "BOTH",
            "positionAmt": str(p.qty),
            "entryPrice": repr(p.entry_price),
            "breakEvenPrice": repr(p.entry_price),
            "markPrice": repr(mark),
            "unRealizedProfit": repr(qty * (mark - p.entry_price) if qty else 0.0),
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": repr(notional),
            "isolatedWallet": "0",
            "updateTime": self._now_ms() if qty else 0,
        }
        if v3:
            row.update(
                {
                    "marginAsset": "USDT",
                    "initialMargin": repr(abs(notional) / self.leverage),
                    "maintMargin": repr(abs(notional) * MAINT_MARGIN_RATIO),
                    "positionInitialMargin": repr(abs(notional) / self.leverage),
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        else:
            row.update(
                {
                    "leverage": str(self.leverage),
                    "marginType": "cross",
                    "isAutoAddMargin": "false",
                    "maxNotionalValue": "1000000000",
                }
            )
        return row

    def _position_risk(self, params: dict, v3: bool) -> list[dict]:
        bases = [self._base(params["symbol"])] if "symbol" in params else self.symbols
        return [self._position_row(b, v3) for b in bases if not v3 or self.positions[b].qty != 0]

    def _account(self, v3: bool) -> dict:
        unrealized = sum(self._unrealized().values())
        initial = self._initial_margin(self.positions)
        maint = sum(
            abs(float(p.qty)) * self.mark_price(s) * MAINT_MARGIN_RATIO
            for s, p in self.positions.items()
        )
        margin_balance = self.wallet + unrealized
        available = margin_balance - initial
        asset = {
            "asset": "USDT",
            "walletBalance": repr(self.wallet),
            "unrealizedProfit": repr(unrealized),
            "marginBalance": repr(margin_balance),
            "maintMargin": repr(maint),
            "initialMargin": repr(initial),
            "positionInitialMargin": repr(initial),
            "openOrderInitialMargin": "0",
            "crossWalletBalance": repr(self.wallet),
            "crossUnPnl": repr(unrealized),
            "availableBalance": repr(available),
            "maxWithdrawAmount": repr(max(available, 0.0)),
            "marginAvailable": True,
            "updateTime": self._now_ms(),
        }
        return {
            "totalInitialMargin": repr(initial),
            "totalMaintMargin": repr(maint),
            "totalWalletBalance": repr(self.wallet),
            "totalUnrealizedProfit": repr(unrealized),
            "totalMarginBalance": repr(margin_balance),
            "totalPositionInitialMargin": repr(initial),
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": repr(self.wallet),
            "totalCrossUnPnl": repr(unrealized),
            "availableBalance": repr(available),
            "maxWithdrawAmount": repr(max(available, 0.0)),
            "canTrade": True,
            "multiAssetsMargin": False,
            "assets": [asset],
            "positions": [
                self._position_row(b, v3) for b in self.symbols if self.positions[b].qty != 0
            ],
        }

    def _balance(self) -> list[dict]:
        unrealized = sum(self._unrealized().values())
        available = self.wallet + unrealized - self._initial_margin(self.positions)
        return [
            {
                "accountAlias": "local",
                "asset": "USDT",
                "balance": repr(self.wallet),
                "crossWalletBalance": repr(self.wallet),
                "crossUnPnl": repr(unrealized),
                "availableBalance": repr(available),
                "maxWithdrawAmount": repr(max(available, 0.0)),
                "marginAvailable": True,
                "updateTime": self._now_ms(),
            }
        ]

    def _leverage_brackets(self, params: dict) -> list[dict]:
        bases = [self._base(params["symbol"])] if "symbol" in params else self.symbols
        bracket = {
            "bracket": 1,
            "initialLeverage": self.leverage,
            "notionalCap": 1_000_000_000,
            "notionalFloor": 0,
            "maintMarginRatio": MAINT_MARGIN_RATIO,
            "cum": 0.0,
        }
        return [{"symbol": f"{b}USDT", "brackets": [bracket]} for b in bases]

    def _premium_index(self, params: dict) -> list[dict] | dict:
        def row(base: str) -> dict:
            mark = self.mark_price(base)
            return {
                "symbol": f"{base}USDT",
                "markPrice": repr(mark),
                "indexPrice": repr(mark),
                "estimatedSettlePrice": repr(mark),
                "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000",
                "nextFundingTime": 0,
                "time": self._now_ms(),
            }

        if "symbol" in params:
            return row(self._base(params["symbol"]))
        return [row(b) for b in self.symbols]

    def _find_order(self, params: dict) -> dict:
        base = self._base(params.get("symbol"))
        cid, oid = params.get("origClientOrderId"), params.get("orderId")
        if cid is None and oid is None:
            raise _BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        for order in self.orders:
            if order["symbol"] == f"{base}USDT" and (
                order["clientOrderId"] == cid or str(order["orderId"]) == oid
            ):
                return order
        raise _BinanceError(400, -2013, "Order does not exist.")

    def _new_order(self, params: dict) -> dict:
        """Validate and fill one MARKET order, as Binance's matching engine would refuse it."""
        base = self._base(params.get("symbol"))
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise _BinanceError(400, -1117, "Invalid side.")
        if params.get("type") != "MARKET":
            raise _BinanceError(400, -1116, "Invalid orderType.")
        if params.get("positionSide", "BOTH") != "BOTH":
            raise _BinanceError(400, -4061, "Order's position side does not match user's setting.")
        cid = params.get("newClientOrderId") or f"local-{next(self._order_ids)}"
        if not CLIENT_ORDER_ID.match(cid):
            raise _BinanceError(400, -4015, "Client order id is not valid.")
        if any(o["clientOrderId"] == cid for o in self.orders):
            raise _BinanceError(400, -4116, "ClientOrderId is duplicated.")
        try:
            qty = Decimal(params.get("quantity", ""))
        except InvalidOperation:
            raise _BinanceError(
                400,
                -1102,
                "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            ) from None
        step = self.lot_sizes[base]
        if qty <= 0:
            raise _BinanceError(400, -4003, "Quantity less than or equal to zero.")
        if qty % step != 0:
            raise _BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        position = self.positions[base]
        signed = qty if side == "BUY" else -qty
        if reduce_only:
            if position.qty == 0 or (position.qty > 0) == (signed > 0):
                raise _BinanceError(400, -2022, "ReduceOnly Order is rejected.")
            qty = min(qty, abs(position.qty))
            signed = qty if side == "BUY" else -qty
        price = self.price(base)
        notional = float(qty) * price
        if not reduce_only and notional < self.min_notional:
            raise _BinanceError(
                400,
                -4164,
                f"Order's notional must be no smaller than "
                f"{self.min_notional:g} (unless you choose reduce only).",
            )
        after = _fill(position, signed, price)
        fee = notional * self.taker_fee
        if abs(after.qty) > abs(position.qty):
            trial = dict(self.positions, **{base: after})
            unrealized = sum(
                float(p.qty) * (self.mark_price(s) - p.entry_price) for s, p in trial.items()
            )
            realized = _realized(position, signed, price)
            if self._initial_margin(trial) > self.wallet + realized - fee + unrealized:
                raise _BinanceError(400, -2019, "Margin is insufficient.")
        self.wallet += _realized(position, signed, price) - fee
        self.positions[base] = after
        now = self._now_ms()
        order = {
            "orderId": next(self._order_ids), "symbol": f"{base}USDT", "status": "FILLED",
            "clientOrderId": cid, "price": "0", "avgPrice": repr(price), "origQty": str(qty),
            "executedQty": str(qty), "cumQty": str(qty), "cumQuote": repr(notional),
            "timeInForce": "GTC", "type": "MARKET", "reduceOnly": reduce_only,
            "closePosition": False, "side": side, "positionSide": "BOTH", "stopPrice": "0",
            "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
            "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": now, "updateTime": now,
        }  # fmt: skip
        self.orders.append(order)
        return order

    def _check_signature(self, params: dict, headers: Mapping[str, str], raw: str) -> None:
        """Binance's checks of a SIGNED request, in its order."""
        key = headers.get("x-mbx-apikey")
        if not key:
            raise _BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise _BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signed, sep, signature = raw.rpartition("&signature=")
        if not sep or not signature:
            raise _BinanceError(
                400,
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        want = hmac.new(self._api_secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.split("&", 1)[0], want):
            raise _BinanceError(400, -1022, "Signature for this request is not valid.")
        try:
            stamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise _BinanceError(
                400,
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            ) from None
        wall = int(time.time() * 1000)
        if stamp > wall + 1000 or wall - stamp > int(params.get("recvWindow", 5000)):
            raise _BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )

    def _private(self, method: str, route: str, params: dict) -> Any:
        """The signed futures endpoints (after the signature check)."""
        with self._lock:
            if (method, route) == ("POST", "/fapi/v1/order"):
                return self._new_order(params)
            if method != "GET":
                raise _BinanceError(404, -1, f"unknown endpoint {method} {route}")
            if route == "/fapi/v1/order":
                return self._find_order(params)
            if route == "/fapi/v1/openOrders":
                if "symbol" in params:
                    self._base(params["symbol"])
                return []
            if route in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
                return self._position_risk(params, v3=route.startswith("/fapi/v3"))
            if route in ("/fapi/v2/account", "/fapi/v3/account"):
                return self._account(v3=route.startswith("/fapi/v3"))
            if route in ("/fapi/v2/balance", "/fapi/v3/balance"):
                return self._balance()
            if route == "/fapi/v1/leverageBracket":
                return self._leverage_brackets(params)
            if route == "/fapi/v1/positionSide/dual":
                return {"dualSidePosition": False}
        raise _BinanceError(404, -1, f"unknown endpoint {method} {route}")

    # ------------------------------------------------------------------ HTTP
    def answer(
        self,
        path: str,
        params: dict,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        raw: str = "",
    ) -> tuple[int, str]:
        """Status and body for one request; ``raw`` is the signed parameter string (the query
        string followed by the body) and ``headers`` have lower-case names."""
        parts = path.strip("/").split("/")
        host = parts[0] if "." in parts[0] else ""
        route = "/" + "/".join(parts[1:]) if host else path  # drop the host part
        endpoint = route.rsplit("/", 1)[-1]
        self.requests.append(route)
        fault = self._take_fault(f"{method} {endpoint}") or self._take_fault(endpoint)
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
        if (method, route) in PRIVATE_ROUTES or method != "GET":
            record: dict[str, Any] | None = None
            if (method, route) == ("POST", "/fapi/v1/order"):
                record = {"host": host, "params": params, "code": None}
                with self._lock:
                    self.order_requests.append(record)
            try:
                self._check_signature(params, headers or {}, raw)
                answer = 200, json.dumps(self._private(method, route, params))
            except _BinanceError as err:
                if record is not None:
                    record["code"] = err.code
                answer = err.status, json.dumps({"code": err.code, "msg": err.msg})
            if fault == "lost":
                time.sleep(self.timeout_delay)
            return answer
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
                body = self._premium_index(params)
            else:
                return 404, json.dumps({"code": -1, "msg": f"unknown endpoint {route}"})
        except _BinanceError as err:
            return err.status, json.dumps({"code": err.code, "msg": err.msg})
        return 200, json.dumps(body)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                raw = url.query + body
                params = {k: v[-1] for k, v in parse_qs(raw).items()}
                params.pop("signature", None)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = fake.answer(url.path, params, method, headers, raw)
                self._send(status, answer)

            def _send(self, status: int, body: str) -> None:
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


PRIVATE_ROUTES = {
    ("POST", "/fapi/v1/order"),
    ("GET", "/fapi/v1/order"),
    ("GET", "/fapi/v1/openOrders"),
    ("GET", "/fapi/v2/positionRisk"),
    ("GET", "/fapi/v3/positionRisk"),
    ("GET", "/fapi/v2/account"),
    ("GET", "/fapi/v3/account"),
    ("GET", "/fapi/v2/balance"),
    ("GET", "/fapi/v3/balance"),
    ("GET", "/fapi/v1/leverageBracket"),
    ("GET", "/fapi/v1/positionSide/dual"),
}
"""The signed (USER_DATA / TRADE) endpoints the server answers."""


def _decimals(step: Decimal) -> int:
    """Decimal places of a quantity step (``0.001`` -> 3, ``1`` -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _realized(position: _Position, signed: Decimal, price: float) -> float:
    """PnL realized by a fill of ``signed`` base units at ``price`` against ``position``."""
    if position.qty == 0 or (position.qty > 0) == (signed > 0):
        return 0.0
    closed = float(min(abs(signed), abs(position.qty)))
    return closed * (price - position.entry_price) * (1.0 if position.qty > 0 else -1.0)


def _fill(position: _Position, signed: Decimal, price: float) -> _Position:
    """The position after a fill: averaged entry when it grows, the same entry when it shrinks,
    the fill price when it flips."""
    qty = position.qty + signed
    if qty == 0:
        return _Position()
    if position.qty == 0 or (position.qty > 0) == (signed > 0):
        held, added = abs(float(position.qty)), abs(float(signed))
        return _Position(qty, (held * position.entry_price + added * price) / (held + added))
    if (qty > 0) == (position.qty > 0):
        return _Position(qty, position.entry_price)
    return _Position(qty, price)


class _BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
