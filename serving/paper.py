"""The paper broker: an account kept in the DuckDB ledger, filled by the environment's cost model.

A serving cycle at the close of bar t calls, in this order:

1. ``fill_pending(bar t)``: the orders decided at the close of bar t-1 fill at bar t's open,
   funding settles at bar t's close if due, and the account is marked at bar t's marks;
2. ``account(mark, close t)``: the account the decision sees;
3. ``submit(orders)``: the orders decided at the close of bar t (filled by the next cycle).

Fills follow ``training.simulator.BatchedSimulator`` bar for bar: the fill price is the open,
the fee is ``FeeModel.fee``, the slippage ``SlippageModel.rate`` against the fill bar's quote
volume (volume x open), funding ``training.costs.funding_cash_flow`` at the bar's mark, and
realized PnL, average entry price and entry basis the simulator's way (``fill_positions``).
There is no liquidation: the safety layer keeps the account away from maintenance margin.

Every bar's writes and every submission are one transaction, and each is idempotent: a bar
already processed is not processed again, an order id already stored is not stored again, so
a cycle killed at any point and re-run leaves exactly one set of orders and fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np

from serving.account import AccountState, Order
from serving.ledger import (
    check_account_id,
    client_order_id,
    create_schema,
    to_datetime,
    to_datetime64,
    transaction,
)
from training.costs import FeeModel, SlippageModel, funding_cash_flow
from training.market import MarketData
from training.simulator import trade_positions


@dataclass(frozen=True)
class PaperBar:
    """One bar of every traded asset; arrays are (N,) in the broker's symbol order."""

    open_time: np.datetime64
    """Bar open: the orders decided at this time (the previous bar's close) fill at ``open``."""
    close_time: np.datetime64
    """Bar close: funding settles and the account is marked at this time."""
    open: np.ndarray
    """Perp open price: the fill price."""
    mark: np.ndarray
    """Mark price at the close: funding notional and unrealized PnL."""
    volume: np.ndarray
    """Base-asset volume of the bar (the slippage model's quote volume is volume x open)."""
    funding_rate: np.ndarray
    """Rate of a settlement at the close; 0 where there is none."""
    basis: np.ndarray
    """(perp - spot) / spot at the close: the entry basis of orders decided at this close."""

    @classmethod
    def from_market(cls, market: MarketData, t: int) -> PaperBar:
        """Bar ``t`` of ``market``."""
        return cls(
            open_time=market.timestamps[t],
            close_time=market.close_times[t],
            open=market.open[t],
            mark=market.mark[t],
            volume=market.volume[t],
            funding_rate=market.funding_rate[t],
            basis=market.basis[t],
        )

    @property
    def quote_volume(self) -> np.ndarray:
        """Volume x open: the ``V`` of the slippage model, as the simulator computes it."""
        return self.volume * self.open


@dataclass(frozen=True)
class PaperFill:
    """One order filled at a bar's open."""

    client_order_id: str
    """The order filled."""
    symbol: str
    """The asset traded."""
    fill_ts: np.datetime64
    """Open time of the fill bar."""
    qty: float
    """Signed quantity filled (a reduce-only order may fill less than it asked)."""
    price: float
    """Fill price: the bar's open."""
    fee: float
    """``FeeModel.fee`` of the traded notional."""
    slippage: float
    """Traded notional x ``SlippageModel.rate`` against the bar's quote volume."""
    realized_pnl: float
    """PnL realized on the part of the position the fill closed."""


@dataclass(frozen=True)
class Positions:
    """Positions after a fill, (N,) each: what ``fill_positions`` returns."""

    qty: np.ndarray
    """Signed quantity."""
    entry_price: np.ndarray
    """Average entry price (0 when flat)."""
    entry_basis: np.ndarray
    """Quantity-weighted basis at entry (0 when flat)."""
    realized_pnl: np.ndarray
    """PnL realized on the closed part of each position."""


def fill_positions(
    qty: np.ndarray,
    entry_price: np.ndarray,
    entry_basis: np.ndarray,
    traded_qty: np.ndarray,
    price: np.ndarray,
    basis: np.ndarray,
) -> Positions:
    """Positions after trading ``traded_qty`` at ``price``, with ``basis`` the entry basis of
    the opened part: the simulator's own fill arithmetic
    (``training.simulator.trade_positions``)."""
    q, dq = np.asarray(qty, float), np.asarray(traded_qty, float)
    new = q + dq
    realized = np.empty_like(new)
    entry, basis_at_entry = trade_positions(
        q,
        dq,
        new,
        np.asarray(entry_price, float),
        np.asarray(entry_basis, float),
        np.asarray(price, float),
        np.asarray(basis, float),
        realized,
    )
    return Positions(qty=new, entry_price=entry, entry_basis=basis_at_entry, realized_pnl=realized)


@dataclass
class _Book:
    """The account as of one processed bar's close (or new: flat, no bar)."""

    ts: np.datetime64 | None
    """Close time of the bar (None: a new account)."""
    cash: float
    """Cash at that close."""
    qty: np.ndarray
    """(N,) signed positions."""
    entry_price: np.ndarray
    """(N,) average entry prices (0 when flat)."""
    entry_basis: np.ndarray
    """(N,) entry basis (0 when flat)."""
    basis: np.ndarray
    """Basis at that bar's close: the entry basis of the orders decided there (0 when new)."""


@dataclass(frozen=True)
class _Outcome:
    """What processing one bar produces, before it is written."""

    fills: list[PaperFill]
    """The bar's fills, by symbol."""
    statuses: list[tuple[str, str, str]]
    """(client order id, 'filled' or 'rejected', reason) of every order of the bar."""
    positions: Positions
    """Positions after the fills (and their realized PnL)."""
    funding: np.ndarray
    """(N,) funding cash flows at the close (0 without a settlement)."""
    cash: float
    """Cash after the fills and the funding."""
    fees: float
    """Fees of the bar's fills."""
    slippage: float
    """Slippage of the bar's fills."""
    traded: float
    """Traded notional at the fill prices."""


class PaperBroker:
    """A paper account of ``symbols`` in the ``serving`` ledger of a DuckDB database.

    ``db`` is a connection (the caller closes it) or a database path (the broker opens and
    closes it). A new account starts flat with ``initial_cash``; an existing one must have the
    same symbols and initial cash. ``fees`` and ``slippage`` are the environment's cost models
    (``EnvConfig.fees`` and ``EnvConfig.slippage`` of the policy served).
    """

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection | str | Path,
        account_id: str,
        symbols: tuple[str, ...],
        initial_cash: float,
        fees: FeeModel | None = None,
        slippage: SlippageModel | None = None,
    ):
        self.account_id = check_account_id(account_id)
        self.symbols = tuple(symbols)
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"account {account_id}: symbols {self.symbols} empty or repeated")
        for symbol in self.symbols:
            client_order_id(account_id, np.datetime64("2000-01-01T00:00"), symbol)  # id fits
        if not (np.isfinite(initial_cash) and initial_cash > 0):
            raise ValueError(f"account {account_id}: initial_cash {initial_cash} not positive")
        self.initial_cash = float(initial_cash)
        self.fees = FeeModel() if fees is None else fees
        self.slippage = SlippageModel() if slippage is None else slippage
        self._owned = not isinstance(db, duckdb.DuckDBPyConnection)
        self.con: duckdb.DuckDBPyConnection = (
            db if isinstance(db, duckdb.DuckDBPyConnection) else duckdb.connect(str(db))
        )
        create_schema(self.con)
        self._register()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the database if the broker opened it."""
        if self._owned:
            self.con.close()

    def __enter__(self) -> PaperBroker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _register(self) -> None:
        """Insert the account, or check that the stored one matches."""
        joined = ",".join(self.symbols)
        with transaction(self.con):
            self.con.execute(
                "INSERT INTO serving.accounts VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [self.account_id, joined, self.initial_cash],
            )
            stored = self.con.execute(
                "SELECT symbols, initial_cash FROM serving.accounts WHERE account_id = ?",
                [self.account_id],
            ).fetchone()
        assert stored is not None
        if stored[0] != joined:
            raise ValueError(
                f"account {self.account_id}: symbols {joined!r}, ledger has {stored[0]!r}"
            )
        if stored[1] != self.initial_cash:
            raise ValueError(
                f"account {self.account_id}: initial_cash {self.initial_cash}, "
                f"ledger has {stored[1]}"
            )

    # ------------------------------------------------------------------- reading
    def last_bar(self) -> np.datetime64 | None:
        """Close time of the latest processed bar; None for a new account."""
        row = self.con.execute(
            "SELECT max(ts) FROM serving.equity WHERE account_id = ?", [self.account_id]
        ).fetchone()
        return None if row is None or row[0] is None else to_datetime64(row[0])

    def equity_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Close times (datetime64[us]) and equity of every processed bar, in time order."""
        rows = self.con.execute(
            "SELECT ts, equity FROM serving.equity WHERE account_id = ? ORDER BY ts",
            [self.account_id],
        ).fetchall()
        times = np.array([to_datetime64(ts) for ts, _ in rows], dtype="datetime64[us]")
        return times, np.array([equity for _, equity in rows], dtype=np.float64)

    def account(self, mark: np.ndarray, ts: np.datetime64 | datetime | None = None) -> AccountState:
        """The account as of the latest processed bar closing at or before ``ts`` (None: the
        latest), valued at ``mark`` (N,); flat with the initial cash before any bar."""
        mark = self._prices(mark, "mark")
        book = self._book(None if ts is None else to_datetime64(ts))
        return AccountState(
            symbols=self.symbols,
            cash=book.cash,
            qty=book.qty,
            entry_price=book.entry_price,
            entry_basis=book.entry_basis,
            mark=mark,
            initial_equity=self.initial_cash,
        )

    def orders(self, decision_ts: np.datetime64 | datetime | None = None) -> list[Order]:
        """Stored orders of the account (of one decision bar, or all), by decision and symbol."""
        sql = f"SELECT {_ORDER_COLUMNS} FROM serving.orders WHERE account_id = ?"
        params: list[Any] = [self.account_id]
        if decision_ts is not None:
            sql += " AND decision_ts = ?"
            params.append(to_datetime(decision_ts))
        rows = self.con.execute(sql + " ORDER BY decision_ts, symbol", params).fetchall()
        return [_order(row) for row in rows]

    def status(self, client_order_ids: list[str]) -> dict[str, str]:
        """Status of each stored order id: ``pending``, ``filled`` or ``rejected: <reason>``."""
        rows = self.con.execute(
            "SELECT client_order_id, status, reason FROM serving.orders "
            "WHERE account_id = ? AND list_contains(?, client_order_id)",
            [self.account_id, client_order_ids],
        ).fetchall()
        return {cid: f"{status}: {reason}" if reason else status for cid, status, reason in rows}

    def fills(self, fill_ts: np.datetime64 | datetime | None = None) -> list[PaperFill]:
        """Stored fills of the account (at one bar's open, or all), by time and symbol."""
        sql = (
            "SELECT client_order_id, symbol, fill_ts, qty, price, fee, slippage, realized_pnl "
            "FROM serving.fills WHERE account_id = ?"
        )
        params: list[Any] = [self.account_id]
        if fill_ts is not None:
            sql += " AND fill_ts = ?"
            params.append(to_datetime(fill_ts))
        rows = self.con.execute(sql + " ORDER BY fill_ts, symbol", params).fetchall()
        return [
            PaperFill(cid, symbol, to_datetime64(ts), *map(float, rest))
            for cid, symbol, ts, *rest in rows
        ]

    # ------------------------------------------------------------------- writing
    def submit(self, orders: list[Order]) -> list[Order]:
        """Record ``orders`` (decided at the close of the latest processed bar) in one
        transaction and return them as stored, in the same order. An id already stored is
        not stored again: its stored order is returned, whatever the new one says.

        Raises ``ValueError`` naming the order when its id is not ``client_order_id`` of its
        account, bar and symbol, its symbol is not traded, its quantity is zero or not finite,
        or a new order's decision bar is not the account's latest processed bar."""
        ids = [o.client_order_id for o in orders]
        for o in orders:
            self._check(o)
            if ids.count(o.client_order_id) > 1:
                raise ValueError(f"order {o.client_order_id}: submitted twice in one list")
        if not orders:
            return []
        with transaction(self.con):
            stored = set(self.status(ids))
            new = [o for o in orders if o.client_order_id not in stored]
            last = self.last_bar()
            for o in new:
                if last is None or to_datetime64(o.decision_ts) != last:
                    raise ValueError(
                        f"order {o.client_order_id}: decided at {o.decision_ts}, but the account "
                        f"is marked at {last}; call fill_pending for the bar closing at "
                        f"{o.decision_ts} first (a new order trades the account as of its bar)"
                    )
            if new:
                self.con.executemany(
                    "INSERT INTO serving.orders VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', '')",
                    [
                        [
                            o.client_order_id,
                            self.account_id,
                            to_datetime(o.decision_ts),
                            o.symbol,
                            float(o.qty),
                            float(o.reference_price),
                            bool(o.reduce_only),
                        ]
                        for o in new
                    ],
                )
        rows = self.con.execute(
            f"SELECT {_ORDER_COLUMNS} FROM serving.orders "
            "WHERE account_id = ? AND list_contains(?, client_order_id)",
            [self.account_id, ids],
        ).fetchall()
        by_id = {row[0]: _order(row) for row in rows}
        return [by_id[cid] for cid in ids]

    def fill_pending(self, bar: PaperBar) -> list[PaperFill]:
        """Process ``bar`` in one transaction: fill the orders decided at its open time at its
        open, settle funding at its close, and mark the account at its close. Returns the
        bar's fills; a bar already processed changes nothing and returns its stored fills.

        Bars go in order without gaps: a new account starts at any bar, then each bar must
        open at the previous one's close (``ValueError`` otherwise)."""
        checked = self._checked(bar)
        open_time = checked.open_time
        with transaction(self.con):
            if self._processed(checked.close_time):
                return self.fills(open_time)
            book = self._book(None)
            if book.ts is not None and book.ts != open_time:
                raise ValueError(
                    f"bar {open_time}..{checked.close_time}: the account was last marked at "
                    f"{book.ts}; process the bars in order, each opening at the previous close"
                )
            outcome = self._price(checked, book, self._pending(open_time))
            self._write(checked, outcome)
        return outcome.fills

    # ------------------------------------------------------------------ internals
    def _price(self, bar: PaperBar, book: _Book, pending: list[Order]) -> _Outcome:
        """The fills of ``pending`` at the bar's open, the funding at its close and the
        account after both: the simulator's accounting of one bar."""
        dq, sizes, rejected = self._traded(pending, book.qty)
        after = fill_positions(
            book.qty, book.entry_price, book.entry_basis, dq, bar.open, book.basis
        )
        traded = np.abs(dq * bar.open)
        slippage = traded * self.slippage.rate(traded, bar.quote_volume)
        fee = self.fees.fee(traded)
        cash = book.cash + after.realized_pnl.sum() - fee.sum() - slippage.sum()
        settled = np.count_nonzero(bar.funding_rate) > 0
        funding = funding_cash_flow(after.qty, bar.mark, bar.funding_rate)
        if settled:
            cash = cash + funding.sum()
        index = {s: i for i, s in enumerate(self.symbols)}
        fills, statuses = [], []
        for o in pending:
            cid = o.client_order_id
            if cid in rejected:
                statuses.append((cid, "rejected", rejected[cid]))
                continue
            statuses.append((cid, "filled", ""))
            i = index[o.symbol]
            # the legs of a symbol fill together: each takes its share of the symbol's costs
            share = sizes[cid] / dq[i] if dq[i] else 0.0
            fills.append(
                PaperFill(
                    cid,
                    o.symbol,
                    bar.open_time,
                    sizes[cid],
                    float(bar.open[i]),
                    float(fee[i] * share),
                    float(slippage[i] * share),
                    float(after.realized_pnl[i] * share),
                )
            )
        return _Outcome(
            fills=fills,
            statuses=statuses,
            positions=after,
            funding=funding if settled else np.zeros(len(self.symbols)),
            cash=float(cash),
            fees=float(fee.sum()),
            slippage=float(slippage.sum()),
            traded=float(traded.sum()),
        )

    def _write(self, bar: PaperBar, outcome: _Outcome) -> None:
        """Write a bar's fills, order statuses, funding, positions and equity (inside the
        bar's transaction)."""
        con, account = self.con, self.account_id
        close_time = to_datetime(bar.close_time)
        if outcome.fills:
            con.executemany(
                "INSERT INTO serving.fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [f.client_order_id, account, to_datetime(f.fill_ts), f.symbol, f.qty]
                    + [f.price, f.fee, f.slippage, f.realized_pnl]
                    for f in outcome.fills
                ],
            )
        if outcome.statuses:
            con.executemany(
                "UPDATE serving.orders SET status = ?, reason = ? WHERE client_order_id = ?",
                [[status, reason, cid] for cid, status, reason in outcome.statuses],
            )
        after = outcome.positions
        settled = np.flatnonzero(bar.funding_rate)
        if settled.size:
            con.executemany(
                "INSERT INTO serving.funding VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [account, close_time, self.symbols[i], float(after.qty[i])]
                    + [float(bar.mark[i]), float(bar.funding_rate[i]), float(outcome.funding[i])]
                    for i in settled
                ],
            )
        con.executemany(
            "INSERT INTO serving.positions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [account, close_time, s, float(after.qty[i]), float(after.entry_price[i])]
                + [float(after.entry_basis[i]), float(bar.mark[i]), float(bar.basis[i])]
                for i, s in enumerate(self.symbols)
            ],
        )
        unrealized = (after.qty * (bar.mark - after.entry_price)).sum()
        con.execute(
            "INSERT INTO serving.equity VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                account,
                close_time,
                outcome.cash,
                float(outcome.cash + unrealized),
                float(after.realized_pnl.sum()),
                outcome.fees,
                outcome.slippage,
                float(outcome.funding.sum()),
                outcome.traded,
            ],
        )

    def _checked(self, bar: PaperBar) -> PaperBar:
        """``bar`` with naive-UTC times and (N,) float64 arrays, or ``ValueError`` naming the
        field, the symbol and the bar."""
        open_time, close_time = to_datetime64(bar.open_time), to_datetime64(bar.close_time)
        if not close_time > open_time:
            raise ValueError(f"bar {open_time}: closes at {close_time}, not after its open")
        at = f"of the bar closing at {close_time}"
        checked = PaperBar(
            open_time=open_time,
            close_time=close_time,
            open=self._prices(bar.open, f"open {at}"),
            mark=self._prices(bar.mark, f"mark {at}"),
            volume=self._values(bar.volume, f"volume {at}"),
            funding_rate=self._values(bar.funding_rate, f"funding_rate {at}"),
            basis=self._values(bar.basis, f"basis {at}"),
        )
        if (checked.volume < 0).any():
            i = int(np.argmax(checked.volume < 0))
            raise ValueError(f"volume {at}: negative for {self.symbols[i]}")
        return checked

    def _processed(self, close_time: np.datetime64) -> bool:
        """True when the bar closing at ``close_time`` is in the ledger."""
        row = self.con.execute(
            "SELECT count(*) FROM serving.equity WHERE account_id = ? AND ts = ?",
            [self.account_id, to_datetime(close_time)],
        ).fetchone()
        return row is not None and row[0] > 0

    def _book(self, ts: np.datetime64 | None) -> _Book:
        """The account at the latest processed bar closing at or before ``ts`` (None: latest)."""
        sql = "SELECT ts, cash FROM serving.equity WHERE account_id = ?"
        params: list[Any] = [self.account_id]
        if ts is not None:
            sql += " AND ts <= ?"
            params.append(to_datetime(ts))
        row = self.con.execute(sql + " ORDER BY ts DESC LIMIT 1", params).fetchone()
        n = len(self.symbols)
        if row is None:
            zeros = np.zeros(n)
            return _Book(None, self.initial_cash, zeros, zeros, zeros, zeros)
        at, cash = row
        rows = self.con.execute(
            "SELECT symbol, qty, entry_price, entry_basis, basis FROM serving.positions "
            "WHERE account_id = ? AND ts = ?",
            [self.account_id, at],
        ).fetchall()
        values = {symbol: rest for symbol, *rest in rows}
        missing = [s for s in self.symbols if s not in values]
        if missing:
            raise ValueError(f"account {self.account_id}: no position rows for {missing} at {at}")
        table = np.array([values[s] for s in self.symbols], dtype=np.float64)
        return _Book(to_datetime64(at), float(cash), *table.T.copy())

    def _pending(self, decision_ts: np.datetime64) -> list[Order]:
        """Pending orders decided at ``decision_ts``."""
        rows = self.con.execute(
            f"SELECT {_ORDER_COLUMNS} FROM serving.orders WHERE account_id = ? "
            "AND status = 'pending' "
            "AND decision_ts = ? ORDER BY symbol",
            [self.account_id, to_datetime(decision_ts)],
        ).fetchall()
        return [_order(row) for row in rows]

    def _traded(
        self, orders: list[Order], qty: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float], dict[str, str]]:
        """Quantity traded per symbol (N,), each filled order's size and the orders rejected,
        with their reason: a reduce-only order is cut to the position it reduces (after the
        symbol's earlier orders), and rejected if nothing is left."""
        dq = np.zeros(len(self.symbols))
        held = np.array(qty, dtype=np.float64)  # the position each next order meets
        sizes, rejected = {}, {}
        index = {s: i for i, s in enumerate(self.symbols)}
        for o in orders:
            i = index[o.symbol]
            size = o.qty
            if o.reduce_only:
                size = float(np.clip(size, min(-held[i], 0.0), max(-held[i], 0.0)))
                if size == 0.0:
                    rejected[o.client_order_id] = f"reduce-only with position {held[i]}"
                    continue
            sizes[o.client_order_id] = size
            dq[i] += size
            held[i] += size
        return dq, sizes, rejected

    def _check(self, order: Order) -> None:
        """Raise ``ValueError`` naming ``order`` if it cannot be an order of this account."""
        cid = order.client_order_id
        if order.symbol not in self.symbols:
            raise ValueError(f"order {cid}: symbol {order.symbol!r} not in {self.symbols}")
        expected = client_order_id(self.account_id, order.decision_ts, order.symbol)
        leg = cid[len(expected) + 1 :] if cid.startswith(expected + ".") else ""
        if cid != expected and not (leg.isdigit() and leg[0] != "0"):
            raise ValueError(f"order {cid}: id should be {expected!r} or {expected}.<leg>")
        if not np.isfinite(order.qty) or order.qty == 0:
            raise ValueError(f"order {cid}: qty {order.qty} must be finite and non-zero")
        if not (np.isfinite(order.reference_price) and order.reference_price > 0):
            raise ValueError(f"order {cid}: reference_price {order.reference_price} not positive")

    def _values(self, values: np.ndarray, what: str) -> np.ndarray:
        """(N,) finite float64 array, else ``ValueError`` naming ``what`` and the symbol."""
        array = np.asarray(values, dtype=np.float64)
        if array.shape != (len(self.symbols),):
            raise ValueError(f"{what}: shape {array.shape}, expected ({len(self.symbols)},)")
        bad = ~np.isfinite(array)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{what}: {array[i]} for {self.symbols[i]}")
        return array

    def _prices(self, values: np.ndarray, what: str) -> np.ndarray:
        """(N,) finite positive float64 array, else ``ValueError`` naming the symbol."""
        array = self._values(values, what)
        if (array <= 0).any():
            i = int(np.argmax(array <= 0))
            raise ValueError(f"{what}: {array[i]} for {self.symbols[i]} is not positive")
        return array


_ORDER_COLUMNS = "client_order_id, decision_ts, symbol, qty, reference_price, reduce_only"
"""The columns of ``serving.orders`` that ``_order`` reads."""


def _order(row: tuple[Any, ...]) -> Order:
    """An ``Order`` from a row of ``serving.orders``."""
    cid, ts, symbol, qty, price, reduce_only = row
    return Order(cid, to_datetime64(ts), symbol, float(qty), float(price), bool(reduce_only))
