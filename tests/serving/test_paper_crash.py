"""A paper cycle killed with SIGKILL at a chosen statement, then re-run, ends with exactly the
orders, fills and account of a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from serving.account import Order
from serving.ledger import client_order_id
from serving.paper import PaperBar, PaperBroker

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTC", "ETH")
ACCOUNT = "crash"
N_BARS = 8
START = np.datetime64("2024-03-01T00:00", "us")
HOUR = np.timedelta64(1, "h")
TARGETS = [(1.0, -0.5), (2.0, 0.5), (0.5, 0.5), (-1.0, 1.0), (-1.0, 0.0), (0.0, 0.0), (1.0, 1.0)]
"""Target weights decided at the close of bars 0..6."""
TABLES = ("orders", "fills", "funding", "positions", "equity")


def scenario_bars() -> list[PaperBar]:
    """Eight hourly bars of two assets, funding at bars 3 and 7."""
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (N_BARS, 2)), 0)) * [1.0, 0.05]
    funding = np.zeros((N_BARS, 2))
    funding[3::4] = [0.0001, -0.0002]
    return [
        PaperBar(
            open_time=START + k * HOUR,
            close_time=START + (k + 1) * HOUR,
            open=prices[k],
            mark=prices[k] * 1.001,
            volume=np.array([300.0, 6_000.0]),
            funding_rate=funding[k],
            basis=np.array([0.0005, -0.0003]) * (k + 1),
        )
        for k in range(N_BARS)
    ]


def run_cycles(broker: PaperBroker) -> None:
    """The paper cycle at each bar's close: mark the account (filling the previous decision),
    then size the orders to the bar's targets and submit them."""
    for k, bar in enumerate(scenario_bars()):
        broker.fill_pending(bar)
        if k == len(TARGETS):
            break
        account = broker.account(bar.mark, bar.close_time)
        delta = np.array(TARGETS[k]) * account.equity / bar.mark - account.qty
        ts = bar.close_time
        broker.submit(
            [
                Order(client_order_id(ACCOUNT, ts, s), ts, s, float(delta[i]), float(bar.mark[i]))
                for i, s in enumerate(SYMBOLS)
                if delta[i] != 0.0
            ]
        )


class StopAt:
    """A DuckDB connection that, at the ``count``-th statement starting with ``prefix``,
    creates the file ``event`` and blocks forever before running it (the test kills it there)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, prefix: str, count: int, event: str):
        self._con, self._prefix, self._left, self._event = con, prefix, count, event

    def _arrive(self, sql: str) -> None:
        if sql.lstrip().startswith(self._prefix):
            self._left -= 1
            if self._left == 0:
                Path(self._event).touch()
                while True:
                    time.sleep(1)

    def execute(self, sql: str, *args):
        self._arrive(sql)
        return self._con.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self._arrive(sql)
        return self._con.executemany(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def child(db: str, prefix: str, count: str, event: str) -> None:
    """Entry point of the process the test kills: the cycles, stopping at the chosen statement."""
    broker = PaperBroker(db, ACCOUNT, SYMBOLS, 10_000.0)
    broker.con = StopAt(broker.con, prefix, int(count), event)
    run_cycles(broker)


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM serving.{t}").fetchone()[0] for t in TABLES}


def contents(broker: PaperBroker) -> tuple:
    """Everything the ledger holds for the account, in a fixed order."""
    tables = {
        t: broker.con.execute(f"SELECT * FROM serving.{t} ORDER BY ALL").fetchall() for t in TABLES
    }
    account = broker.account(scenario_bars()[-1].mark)
    return tables, account.cash, account.equity, account.qty.tolist(), account.entry_price.tolist()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    with PaperBroker(
        tmp_path_factory.mktemp("clean") / "l.duckdb", ACCOUNT, SYMBOLS, 10_000.0
    ) as broker:
        run_cycles(broker)
        yield counts(broker.con), contents(broker)


def kill_at(db: Path, prefix: str, count: int) -> None:
    """Run ``child`` in a subprocess and SIGKILL it once it blocks at the chosen statement."""
    event = db.with_suffix(".stopped")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    code = "import sys; from tests.serving.test_paper_crash import child; child(*sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(db), prefix, str(count), str(event)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not event.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended ({proc.returncode}): {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, "child never reached the kill point"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.parametrize(
    ("prefix", "count"),
    [
        ("INSERT INTO serving.fills", 2),  # inside the second bar with fills: nothing else yet
        ("UPDATE serving.orders", 3),  # fills written, statuses not
        ("INSERT INTO serving.equity", 4),  # fills, statuses and positions written, no snapshot
        ("INSERT INTO serving.orders", 3),  # inside a submission
        ("COMMIT", 7),  # a whole transaction written, not committed
        ("BEGIN", 9),  # between two transactions
    ],
)
def test_kill_9_then_rerun_leaves_one_set_of_orders_and_fills(
    tmp_path, uninterrupted, prefix, count
):
    db = tmp_path / "ledger.duckdb"
    kill_at(db, prefix, count)
    clean_counts, clean_contents = uninterrupted
    with duckdb.connect(str(db)) as con:
        killed = counts(con)
        # atomic bars: every fill and every settled order belongs to a snapshotted bar
        orphans = con.execute(
            "SELECT count(*) FROM serving.fills f WHERE NOT EXISTS (SELECT 1 FROM serving.equity"
            " e WHERE e.ts = f.fill_ts + INTERVAL 1 HOUR)"
        ).fetchone()[0]
        settled = con.execute(
            "SELECT count(*) FROM serving.orders WHERE status <> 'pending'"
        ).fetchone()[0]
    assert orphans == 0 and settled == killed["fills"]
    assert killed["positions"] == len(SYMBOLS) * killed["equity"]
    assert killed["equity"] < clean_counts["equity"]  # the kill did cut the run short
    assert 0 < sum(killed.values()) < sum(clean_counts.values())

    for _ in range(2):  # the re-run completes the cycles; a second one changes nothing
        with PaperBroker(db, ACCOUNT, SYMBOLS, 10_000.0) as broker:
            run_cycles(broker)
            assert counts(broker.con) == clean_counts
            assert contents(broker) == clean_contents
    assert clean_counts["orders"] == clean_counts["fills"] == 13  # one order less: ETH 0 -> 0
    assert clean_counts["equity"] == N_BARS and clean_counts["funding"] == 4
