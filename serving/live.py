"""The live execution adapter: a Binance USD-M futures account through ccxt's ``binanceusdm``.

Off unless switched on twice: ``LiveConfig.live`` must be True (``live: true`` in the serving
configuration) AND the environment must hold ``PERPFOLIO_LIVE=1``. Without both, constructing a
``LiveBroker`` raises ``LiveTradingDisabled`` before any exchange object exists, and ``submit``
checks both again on every call, before any request.

Keys come only from the environment: ``PERPFOLIO_BINANCE_API_KEY`` and
``PERPFOLIO_BINANCE_API_SECRET``. They never reach a log, an exception or a repr: ccxt's own
debug log (whose request lines carry the ``X-MBX-APIKEY`` header) goes through a logger that
masks them, every ccxt error is re-raised with them masked, and results carry no request data.

Endpoints: Binance's production API by default; ``demo: true`` switches ccxt to Binance's demo
trading (``exchange.enable_demo_trading(True)``: ``demo-fapi.binance.com``; ccxt 4.5 refuses
``set_sandbox_mode`` for futures, whose testnet is deprecated); ``base_url`` (loopback only)
routes every API to a local server such as ``ingestion.local_exchange.LocalBinance``, keeping
each API's host as a path part (``ingestion.ccxt_source.point_exchange_at``). Signed requests
carry the host's clock (no time-difference adjustment): keep it synchronized.

Only what the tests cover is traded: linear USDT-margined perpetuals (``BTC/USDT:USDT``, contract
size 1) in one-way position mode, MARKET orders, optionally reduce-only. Anything else is refused
before a request is sent.

Idempotency: every order carries ``newClientOrderId = Order.client_order_id``. Before sending,
the adapter looks the id up (``fetch_order`` by ``origClientOrderId``); an order found is
already submitted and is not sent again (Binance rejects a duplicate id only among open orders,
and a market order is no longer open once filled). A send that gets no answer is re-sent with
the same id, and Binance's -4116 "ClientOrderId is duplicated." then means the first one went
in: it is reported as already submitted, not as an error.

ccxt calls: ``load_markets`` (GET /fapi/v1/exchangeInfo), ``fetch_position_mode``
(/fapi/v1/positionSide/dual), ``fetch_order`` (GET /fapi/v1/order), ``create_order`` (POST
/fapi/v1/order), ``fetch_positions`` (/fapi/v1/leverageBracket once, /fapi/v3/positionRisk),
``fetch_balance`` (/fapi/v3/account) and ``fetch_mark_prices`` (/fapi/v1/premiumIndex).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import ccxt
import numpy as np

from ingestion.ccxt_source import point_exchange_at
from serving.account import AccountState, MarketRules, Order

LIVE_ENV = "PERPFOLIO_LIVE"
"""Environment variable that must be ``1`` (with ``live: true`` in the config) to trade."""
API_KEY_ENV = "PERPFOLIO_BINANCE_API_KEY"
"""Environment variable holding the Binance API key."""
API_SECRET_ENV = "PERPFOLIO_BINANCE_API_SECRET"
"""Environment variable holding the Binance API secret (HMAC)."""
QUOTE = "USDT"
"""Quote and settlement currency of every market traded."""
DUPLICATE_CLIENT_ORDER_ID = -4116
"""Binance's code for a ``newClientOrderId`` it already has."""
ORDER_DOES_NOT_EXIST = -2013
"""Binance's code for an order lookup that finds nothing."""
PLACED, ALREADY_SUBMITTED, REJECTED = "placed", "already_submitted", "rejected"
"""``SubmitResult.status`` values."""

_CLIENT_ORDER_ID = re.compile(r"[\.A-Z\:/a-z0-9_-]{1,36}")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')
_CREDENTIAL_CODES = {-1021, -1022, -2014, -2015}
"""Timestamp, signature and API-key refusals: the account as a whole cannot trade."""

log = logging.getLogger(__name__)


class LiveTradingDisabled(RuntimeError):
    """Live trading is not switched on (config and environment), or keys are missing."""


class LiveOrderRefused(ValueError):
    """An order or instrument the adapter does not trade; nothing was sent."""


class LiveBrokerError(RuntimeError):
    """The exchange failed or answered what the adapter cannot represent."""


@dataclass(frozen=True)
class LiveConfig:
    """The live adapter's settings (the ``live`` section of a serving configuration)."""

    live: bool = False
    """The configuration's opt-in; trading also needs ``PERPFOLIO_LIVE=1``."""
    demo: bool = False
    """Use Binance's demo-trading endpoints (demo-fapi.binance.com) instead of production."""
    base_url: str | None = None
    """Route every API to this loopback URL (the local exchange); None for Binance."""
    timeout_ms: int = 10_000
    """HTTP timeout of one request."""
    recv_window_ms: int = 5_000
    """Binance's ``recvWindow``: how stale a signed request may arrive."""
    retries: int = 2
    """Re-sends of a request that got no answer (the same client order id for orders)."""
    retry_backoff_s: float = 0.5
    """Pause before each re-send."""
    rate_limit_ms: int | None = None
    """ccxt's pacing, in ms per unit of request weight; None keeps ccxt's for Binance."""

    def __post_init__(self) -> None:
        for name in ("live", "demo"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"live config: {name} must be true or false, not "
                                 f"{getattr(self, name)!r}")  # fmt: skip
        if self.base_url is not None:
            url = urlparse(self.base_url)
            if url.scheme not in ("http", "https") or url.hostname not in _LOOPBACK:
                raise ValueError(
                    f"live config: base_url {self.base_url!r} must be an http(s) URL on a "
                    f"loopback address ({', '.join(sorted(_LOOPBACK))})"
                )
        if self.timeout_ms <= 0 or self.recv_window_ms <= 0:
            raise ValueError("live config: timeout_ms and recv_window_ms must be positive")
        if self.rate_limit_ms is not None and self.rate_limit_ms <= 0:
            raise ValueError("live config: rate_limit_ms must be positive")
        if self.retries < 0 or self.retry_backoff_s < 0:
            raise ValueError("live config: retries and retry_backoff_s must not be negative")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> LiveConfig:
        """A config from a parsed YAML section; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"live config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(mapping))


@dataclass(frozen=True)
class SubmitResult:
    """What became of one order sent to the exchange."""

    client_order_id: str
    symbol: str
    """The asset (``Order.symbol``)."""
    status: str
    """``placed`` (sent now), ``already_submitted`` (the exchange had the id) or ``rejected``."""
    exchange_order_id: str | None
    """The exchange's order id (None when rejected or not found)."""
    filled_qty: float
    """Signed base quantity filled so far (0 when rejected)."""
    average_price: float
    """Average fill price (NaN when nothing filled)."""
    reason: str = ""
    """The exchange's code and message when rejected."""


def require_live(config: LiveConfig, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``LiveTradingDisabled`` unless ``config.live`` is True and ``PERPFOLIO_LIVE=1``."""
    env = os.environ if environ is None else environ
    flag = env.get(LIVE_ENV)
    if config.live is True and flag == "1":
        return
    raise LiveTradingDisabled(
        f"live trading is off: it needs `live: true` in the serving config (got {config.live}) "
        f"and {LIVE_ENV}=1 in the environment (got "
        f"{'unset' if flag is None else repr(flag[:8])}); no order was sent"
    )


class _MaskingLogger:
    """The logger ccxt's exchange writes to: its request lines carry the API key header, so
    each message is formatted and masked before it reaches ``serving.live.ccxt``."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._logger = logging.getLogger(f"{__name__}.ccxt")
        self._secrets = secrets

    def _log(self, level: int, msg: object, *args: object) -> None:
        if self._logger.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self._logger.log(level, _mask(text, self._secrets))

    def debug(self, msg: object, *args: object, **_: object) -> None:
        self._log(logging.DEBUG, msg, *args)

    def info(self, msg: object, *args: object, **_: object) -> None:
        self._log(logging.INFO, msg, *args)

    def warning(self, msg: object, *args: object, **_: object) -> None:
        self._log(logging.WARNING, msg, *args)

    def error(self, msg: object, *args: object, **_: object) -> None:
        self._log(logging.ERROR, msg, *args)


def _mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _code(err: Exception) -> int | None:
    """Binance's error code in a ccxt error message (``binanceusdm {"code":-4116,...}``)."""
    match = _CODE.search(str(err))
    return int(match.group(1)) if match else None


class LiveBroker:
    """Orders, positions and balance of a Binance USD-M account trading ``symbols`` (assets,
    e.g. ``BTC``, in the policy's order). ``environ`` defaults to ``os.environ``."""

    def __init__(
        self,
        config: LiveConfig,
        symbols: Sequence[str],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        require_live(config, self._environ)
        self.config = config
        self.symbols = tuple(symbols)
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"live broker: symbols {self.symbols} empty or repeated")
        missing = [n for n in (API_KEY_ENV, API_SECRET_ENV) if not self._environ.get(n)]
        if missing:
            raise LiveTradingDisabled(f"live trading needs {' and '.join(missing)} set")
        key, secret = self._environ[API_KEY_ENV], self._environ[API_SECRET_ENV]
        self._secrets = (key, secret)
        exchange = ccxt.binanceusdm(
            {
                "apiKey": key,
                "secret": secret,
                "enableRateLimit": True,
                "timeout": config.timeout_ms,
                "options": {
                    "fetchCurrencies": False,  # a spot (sapi) call this adapter does not need
                    "recvWindow": config.recv_window_ms,
                    "adjustForTimeDifference": False,
                },
            }
        )
        exchange.verbose = False
        if config.rate_limit_ms is not None:
            exchange.rateLimit = config.rate_limit_ms
        exchange.logger = _MaskingLogger(self._secrets)
        if config.demo:
            exchange.enable_demo_trading(True)
        if config.base_url:
            point_exchange_at(exchange, config.base_url)
        self._exchange = exchange
        self._markets: dict[str, dict] | None = None
        self._one_way_checked = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        """The futures API orders go to."""
        return str(self._exchange.urls["api"]["fapiPrivate"])

    def __repr__(self) -> str:
        return f"LiveBroker(symbols={self.symbols}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self._exchange.close()

    def __enter__(self) -> LiveBroker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _mask(self, err: object) -> str:
        return _mask(str(err), self._secrets)

    def _request(self, what: str, fn: Callable[..., Any], *args: Any, unknown: str = "") -> Any:
        """``fn(*args)``, re-sent on no answer (``unknown`` ends the error if none comes);
        credential refusals and other ccxt failures become ``LiveBrokerError``, order-level
        refusals (``ccxt.ExchangeError``) propagate."""
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args)
            except ccxt.NetworkError as err:
                if attempt == attempts:
                    raise LiveBrokerError(
                        f"{what}: no answer after {attempts} attempt(s) ({self._mask(err)})"
                        + unknown
                    ) from None
                log.warning("%s: no answer (%s); sending again", what, type(err).__name__)
                time.sleep(self.config.retry_backoff_s)
            except ccxt.ExchangeError as err:
                if isinstance(err, ccxt.AuthenticationError | ccxt.PermissionDenied) or (
                    _code(err) in _CREDENTIAL_CODES
                ):
                    raise LiveBrokerError(
                        f"{what}: the exchange refused the key, signature or timestamp: "
                        f"{self._mask(err)}"
                    ) from None
                raise
            except ccxt.BaseError as err:
                raise LiveBrokerError(f"{what}: {self._mask(err)}") from None
        raise AssertionError("unreachable")

    def _read(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return self._request(what, fn, *args)
        except ccxt.BaseError as err:
            raise LiveBrokerError(f"{what}: {self._mask(err)}") from None

    def _load(self) -> dict[str, dict]:
        """The ccxt market of each asset, checked to be an instrument the adapter trades."""
        if self._markets is None:
            self._read("load markets", self._exchange.load_markets)
            markets = {}
            for asset in self.symbols:
                symbol = f"{asset}/{QUOTE}:{QUOTE}"
                market = self._exchange.markets.get(symbol)
                if market is None:
                    raise LiveOrderRefused(f"{asset}: {symbol} is not listed at {self.endpoint}")
                info = market.get("info") or {}
                problems = [
                    name
                    for name, ok in (
                        ("a swap", market.get("swap") is True),
                        ("linear", market.get("linear") is True),
                        (f"settled in {QUOTE}", market.get("settle") == QUOTE),
                        ("perpetual", info.get("contractType") == "PERPETUAL"),
                        ("contract size 1", market.get("contractSize") == 1),
                        ("trading", market.get("active") is True),
                        ("taking MARKET orders", "MARKET" in (info.get("orderTypes") or [])),
                    )
                    if not ok
                ]
                if problems:
                    raise LiveOrderRefused(
                        f"{asset} ({symbol}): not an instrument this adapter trades; it is not "
                        + ", ".join(problems)
                    )
                markets[asset] = market
            self._markets = markets
        return self._markets

    def _check_one_way(self) -> None:
        if not self._one_way_checked:
            mode = self._read("fetch position mode", self._exchange.fetch_position_mode)
            if mode.get("hedged") is not False:
                raise LiveOrderRefused(
                    "the account is in hedge position mode (dualSidePosition); this adapter "
                    "trades one-way mode only"
                )
            self._one_way_checked = True

    # ------------------------------------------------------------------ reading
    def market_rules(self) -> MarketRules:
        """Lot size (quantity step) and min notional of each asset, from the exchange's
        LOT_SIZE and MIN_NOTIONAL filters as ccxt parses them."""
        markets = self._load()
        lot, min_notional = [], []
        for asset in self.symbols:
            market = markets[asset]
            step = market["precision"].get("amount")
            if not (isinstance(step, int | float) and step > 0):
                raise LiveBrokerError(f"{asset}: no quantity step (LOT_SIZE) in the market")
            lot.append(float(step))
            min_notional.append(float(market["limits"]["cost"].get("min") or 0.0))
        return MarketRules(self.symbols, np.array(lot), np.array(min_notional))

    def account(self, initial_equity: float, entry_basis: np.ndarray | None = None) -> AccountState:
        """The account from the exchange: USDT wallet balance, positions (signed size, entry
        price) and mark prices. The exchange knows neither the equity the account started with
        nor the basis at entry: the caller passes ``initial_equity`` (and ``entry_basis`` from
        its ledger, zeros by default). A position in any other symbol, or in hedge mode, is an
        error (the safety layer could not see it)."""
        if not (math.isfinite(initial_equity) and initial_equity > 0):
            raise ValueError(f"live account: initial_equity {initial_equity} not positive")
        n = len(self.symbols)
        basis = np.zeros(n) if entry_basis is None else np.asarray(entry_basis, float)
        if basis.shape != (n,) or not np.isfinite(basis).all():
            raise ValueError(f"live account: entry_basis {basis} is not {n} finite values")
        markets = self._load()
        self._check_one_way()
        index = {markets[a]["symbol"]: i for i, a in enumerate(self.symbols)}
        positions = self._read("fetch positions", self._exchange.fetch_positions)
        balance = self._read("fetch balance", self._exchange.fetch_balance)
        marks = self._read("fetch mark prices", self._exchange.fetch_mark_prices, list(index))
        qty, entry, mark = np.zeros(n), np.zeros(n), np.full(n, np.nan)
        for symbol, i in index.items():
            mark[i] = float((marks.get(symbol) or {}).get("markPrice") or np.nan)
        seen: set[str] = set()
        for position in positions:
            info = position.get("info") or {}
            symbol, amount = position.get("symbol"), float(info.get("positionAmt") or 0.0)
            if amount == 0:
                continue
            if symbol not in index:
                raise LiveBrokerError(
                    f"live account: an open position in {symbol} ({amount}), which this "
                    f"account does not trade ({', '.join(self.symbols)})"
                )
            if info.get("positionSide", "BOTH") != "BOTH" or symbol in seen:
                raise LiveBrokerError(f"live account: {symbol} has hedge-mode positions")
            seen.add(symbol)
            i = index[symbol]
            qty[i], entry[i] = amount, float(info.get("entryPrice") or 0.0)
            if position.get("markPrice"):
                mark[i] = float(position["markPrice"])
        bad = [a for a, m in zip(self.symbols, mark, strict=True) if not (np.isfinite(m) and m > 0)]
        if bad:
            raise LiveBrokerError(f"live account: no mark price for {', '.join(bad)}")
        assets = (balance.get("info") or {}).get("assets") or []
        wallet = [a for a in assets if a.get("asset") == QUOTE]
        if len(wallet) != 1:
            raise LiveBrokerError(f"live account: no {QUOTE} wallet balance in the account")
        cash = float(wallet[0]["walletBalance"])
        return AccountState(self.symbols, cash, qty, entry, basis, mark, float(initial_equity))

    # ------------------------------------------------------------------ orders
    def _check_orders(self, orders: Sequence[Order], markets: Mapping[str, dict]) -> list[float]:
        """The quantity to send per order; refuses the whole list if any order is not one the
        adapter trades."""
        ids = [o.client_order_id for o in orders]
        amounts = []
        for o in orders:
            what = f"order {o.client_order_id!r}"
            if not isinstance(o, Order):
                raise LiveOrderRefused(f"{what}: {type(o).__name__} is not a serving Order")
            if not _CLIENT_ORDER_ID.fullmatch(o.client_order_id):
                raise LiveOrderRefused(f"{what}: client order id must be 1-36 of [.A-Z:/a-z0-9_-]")
            if ids.count(o.client_order_id) > 1:
                raise LiveOrderRefused(f"{what}: client order id repeated in one submission")
            if o.symbol not in markets:
                raise LiveOrderRefused(
                    f"{what}: symbol {o.symbol!r} is not traded by this account "
                    f"({', '.join(self.symbols)})"
                )
            if not (math.isfinite(o.qty) and o.qty != 0):
                raise LiveOrderRefused(f"{what}: qty {o.qty} is zero or not finite")
            if not (math.isfinite(o.reference_price) and o.reference_price > 0):
                raise LiveOrderRefused(f"{what}: reference_price {o.reference_price} not positive")
            step = Decimal(repr(float(markets[o.symbol]["precision"]["amount"])))
            lots = abs(o.qty) / float(step)
            if abs(lots - round(lots)) > 1e-6 * max(1.0, lots):
                raise LiveOrderRefused(
                    f"{what}: qty {o.qty} of {o.symbol} is not a whole multiple of the lot "
                    f"size {step}"
                )
            amounts.append(float(Decimal(round(lots)) * step))
        return amounts

    def _find(self, order: Order, market: dict) -> dict | None:
        """The exchange's order with ``order``'s client id, None if it has none."""
        try:
            return self._request(
                f"look up order {order.client_order_id}",
                self._exchange.fetch_order,
                None,
                market["symbol"],
                {"origClientOrderId": order.client_order_id},
            )
        except ccxt.ExchangeError as err:
            if isinstance(err, ccxt.OrderNotFound) or _code(err) == ORDER_DOES_NOT_EXIST:
                return None
            raise LiveBrokerError(
                f"look up order {order.client_order_id}: {self._mask(err)}"
            ) from None

    @staticmethod
    def _result(order: Order, placed: dict | None, status: str) -> SubmitResult:
        if placed is None:
            return SubmitResult(order.client_order_id, order.symbol, status, None, 0.0, math.nan)
        filled = float(placed.get("filled") or 0.0)
        sign = 1.0 if (placed.get("side") or order.side.lower()) == "buy" else -1.0
        average = placed.get("average")
        return SubmitResult(
            order.client_order_id,
            order.symbol,
            status,
            None if placed.get("id") is None else str(placed["id"]),
            sign * filled,
            math.nan if average is None else float(average),
        )

    def submit(self, orders: Sequence[Order]) -> list[SubmitResult]:
        """Send ``orders`` as MARKET orders, in order, and report each. Both opt-ins are
        checked first and the whole list is refused (``LiveOrderRefused``, nothing sent) if
        any order is not one the adapter trades. An id the exchange already has is reported
        ``already_submitted`` and not sent again; an order the exchange refuses is reported
        ``rejected`` with its reason; a credential refusal or no answer after the retries
        raises ``LiveBrokerError`` (re-submitting the same orders is then safe)."""
        require_live(self.config, self._environ)
        if not orders:
            return []
        markets = self._load()
        amounts = self._check_orders(orders, markets)
        self._check_one_way()
        results = []
        for order, amount in zip(orders, amounts, strict=True):
            results.append(self._submit_one(order, markets[order.symbol], amount))
        return results

    def _submit_one(self, order: Order, market: dict, amount: float) -> SubmitResult:
        cid = order.client_order_id
        existing = self._find(order, market)
        if existing is not None:
            log.info("order %s: already on the exchange; not sent again", cid)
            return self._result(order, existing, ALREADY_SUBMITTED)
        params: dict[str, Any] = {"newClientOrderId": cid}
        if order.reduce_only:
            params["reduceOnly"] = True
        side = order.side.lower()
        try:
            placed = self._request(
                f"order {cid} ({side} {amount} {order.symbol})",
                self._exchange.create_order,
                market["symbol"],
                "market",
                side,
                amount,
                None,
                params,
                unknown="; its state is unknown: re-submitting the same client order id is safe",
            )
        except ccxt.ExchangeError as err:
            code = _code(err)
            if code == DUPLICATE_CLIENT_ORDER_ID:
                log.info("order %s: the exchange has it already (-4116); not sent again", cid)
                return self._result(order, self._find(order, market), ALREADY_SUBMITTED)
            reason = self._mask(err).removeprefix(f"{self._exchange.id} ")
            log.warning("order %s: rejected: %s", cid, reason)
            return SubmitResult(cid, order.symbol, REJECTED, None, 0.0, math.nan, reason)
        result = self._result(order, placed, PLACED)
        log.info(
            "order %s: %s %s %s placed (exchange id %s, filled %s at %s)",
            cid, side, amount, order.symbol, result.exchange_order_id, result.filled_qty,
            result.average_price,
        )  # fmt: skip
        return result
