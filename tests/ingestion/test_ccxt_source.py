"""ccxt's own code against a local fake of Binance's REST API, with faults injected."""

import pandas as pd
import pytest

from ingestion.ccxt_source import (
    FetchPlan,
    IngestionError,
    RetryPolicy,
    fetcher_for,
    resample_bars,
    resume_points,
)
from ingestion.frames import MarketFrames
from ingestion.local_exchange import LocalBinance
from ingestion.synthetic import SyntheticMarketConfig, generate_market
from ingestion.warehouse import DataConflictError, row_counts, write_batch

START, END = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-09")
SYMBOLS = ("BTC", "ETH")


@pytest.fixture(scope="module")
def market():
    config = SyntheticMarketConfig(symbols=SYMBOLS, n_bars=24 * 8, venue="binance")
    return generate_market(config)


@pytest.fixture
def fake(market):
    with LocalBinance(market, now=END, delay=0.6) as server:
        yield server


def fetcher(fake, retries=4, page_limit=50):
    sleeps = []
    policy = RetryPolicy(max_retries=retries, backoff_seconds=0.001, sleep=sleeps.append)
    f = fetcher_for(
        "binance", base_url=fake.base_url, retry=policy, timeout_ms=300, rate_limit_ms=1,
        page_limit=page_limit,
    )  # fmt: skip
    f.sleeps = sleeps
    return f


PLAN = FetchPlan(symbols=SYMBOLS, order_book_levels=5)


def sort(frame, key):
    return frame.sort_values(key, ignore_index=True)


def test_fetch_reproduces_the_served_market_through_ccxt(fake, market):
    got = fetcher(fake).fetch(PLAN, START, END)
    key = ["market", "symbol", "ts"]
    want = sort(market.ohlcv, key)
    have = sort(got.ohlcv, key)
    assert len(have) == len(want) and set(have["market"]) == {"perp", "spot", "mark", "index"}
    pd.testing.assert_series_equal(have["close"], want["close"], rtol=1e-12)
    pd.testing.assert_series_equal(have["ts"], want["ts"], check_dtype=False)
    assert len(got.funding_rates) == len(market.funding_rates[market.funding_rates["ts"] < END])
    assert len(got.open_interest) == len(market.open_interest)
    assert len(got.order_book_snapshots) == 2 * 2 * 5
    assert got.data_gaps.empty
    # Paginated: 192 bars in pages of 50.
    assert sum(r == "/fapi/v1/klines" for r in fake.requests) >= 4


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout", "malformed"])
def test_transient_faults_are_retried(fake, market, fault):
    f = fetcher(fake)
    fake.inject("klines", fault, times=2)
    frame, _ = f.ohlcv("BTC", "perp", "1h", START, END)
    assert len(frame) == 24 * 8
    assert len(f.sleeps) == 2 and all(0 < s <= 0.01 for s in f.sleeps)


def test_retries_are_bounded_with_a_clear_message(fake):
    f = fetcher(fake, retries=2)
    fake.inject("klines", "503", times=5)
    with pytest.raises(IngestionError, match=r"binance: perp 1h bars of BTC since 2024-01-01.*"
                       r"gave up after 2 retries: ExchangeNotAvailable"):  # fmt: skip
        f.ohlcv("BTC", "perp", "1h", START, END)


def test_truncated_and_overlapping_pages_neither_lose_nor_duplicate(fake, market):
    f = fetcher(fake)
    fake.inject("klines", "truncated", times=2)
    fake.inject("klines", "overlap", times=2)
    frame, _ = f.ohlcv("ETH", "perp", "1h", START, END)
    assert len(frame) == 24 * 8 and frame["ts"].is_unique and frame["ts"].is_monotonic_increasing
    fake.inject("fundingRate", "overlap", times=3)
    funding = f.funding_rates("ETH", START, END)
    assert funding["ts"].is_unique and len(funding) == 8 * 3 - 1


def test_unknown_symbol_and_bad_credentials_fail_fast(fake):
    f = fetcher(fake)
    with pytest.raises(
        IngestionError, match=r"binance: symbol DOGE \(DOGE/USDT:USDT\) is not listed"
    ):
        f.ohlcv("DOGE", "perp", "1h", START, END)
    fake.inject("klines", "auth")
    with pytest.raises(IngestionError, match="authentication failed"):
        f.ohlcv("BTC", "perp", "1h", START, END)
    assert f.sleeps == []


def test_nan_candles_and_missing_bars_become_recorded_gaps(fake, con):
    fake.missing.update({("perp", "BTC", pd.Timestamp("2024-01-03 05:00")),
                         ("perp", "BTC", pd.Timestamp("2024-01-03 06:00"))})  # fmt: skip
    fake.inject("klines", "nan")  # first candle of the first page: 2024-01-01 00:00
    plan = FetchPlan(symbols=("BTC",), spot=False, mark_index=False, order_book_levels=0)
    got = fetcher(fake).fetch(plan, START, END)
    gaps = got.data_gaps.sort_values("gap_start")
    assert gaps[["symbol", "market"]].drop_duplicates().values.tolist() == [["BTC", "perp"]]
    assert gaps["gap_start"].astype(str).tolist() == ["2024-01-01 00:00:00", "2024-01-03 05:00:00"]
    assert gaps["missing_bars"].tolist() == [1, 2]
    write_batch(con, got.tables())
    assert row_counts(con)["data_gaps"] == 2
    # Later the bars arrive: an incremental backfill of the window fills and clears the gaps.
    fake.missing.clear()
    write_batch(con, fetcher(fake).fetch(plan, START, END).tables())
    assert row_counts(con)["data_gaps"] == 0


def test_incremental_run_fetches_only_after_the_last_stored_bar(fake, con):
    plan = FetchPlan(symbols=SYMBOLS, order_book_levels=0)
    write_batch(con, fetcher(fake).fetch(plan, START, pd.Timestamp("2024-01-05")).tables())
    first = row_counts(con)
    fake.requests.clear()
    later = fetcher(fake).fetch(plan, START, END, resume=resume_points(con, "1h"))
    assert later.ohlcv["ts"].min() == pd.Timestamp("2024-01-05")
    write_batch(con, later.tables())
    assert row_counts(con)["ohlcv"] == 2 * first["ohlcv"]
    again = fetcher(fake).fetch(plan, START, END, resume=resume_points(con, "1h"))
    assert again.ohlcv.empty and again.funding_rates.empty


def test_ten_minute_bars_are_built_from_five_minute_candles(market):
    config = SyntheticMarketConfig(
        symbols=("BTC",), n_bars=12 * 24, timeframe="5m", venue="binance"
    )
    five = generate_market(config)
    with LocalBinance(five, now=pd.Timestamp("2024-01-02")) as server:
        plan = FetchPlan(symbols=("BTC",), timeframe="10m", spot=False, mark_index=False,
                         funding=False, order_book_levels=0)  # fmt: skip
        server.missing.add(("perp", "BTC", pd.Timestamp("2024-01-01 03:05")))
        got = fetcher(server, page_limit=1000).fetch(plan, START, pd.Timestamp("2024-01-02"))
    bars = got.ohlcv
    assert set(bars["timeframe"]) == {"10m"} and len(bars) == 6 * 24 - 1
    perp5 = five.ohlcv[five.ohlcv["market"] == "perp"]
    first = perp5.iloc[:2]
    row = bars.iloc[0]
    assert row["open"] == first["open"].iloc[0] and row["close"] == first["close"].iloc[1]
    assert row["volume"] == pytest.approx(first["volume"].sum())
    assert got.data_gaps["gap_start"].tolist() == [pd.Timestamp("2024-01-01 03:00")]
    assert resample_bars(perp5.iloc[:0], "10m").empty


KEYS = {"apiKey": "user-api-key-0123456789", "secret": "user-secret-abcdefghijkl"}


def test_market_data_with_keys_makes_no_private_call(fake, market):
    f = fetcher_for("binance", base_url=fake.base_url, timeout_ms=2000, rate_limit_ms=1,
                    credentials=KEYS)  # fmt: skip
    got = f.fetch(FetchPlan(symbols=("BTC",), order_book_levels=2), START, END)
    assert len(got.ohlcv) == 4 * 24 * 8
    assert not [r for r in fake.requests if r.startswith("/sapi")]
    assert not f.perp.apiKey and not f.spot.apiKey


def test_keys_in_the_environment_leave_the_ccxt_market_source_working(monkeypatch):
    from orchestration.resources.market_source import LocalCcxtMarketSource

    monkeypatch.setenv("PERPFOLIO_BINANCE_API_KEY", KEYS["apiKey"])
    monkeypatch.setenv("PERPFOLIO_BINANCE_SECRET", KEYS["secret"])
    source = LocalCcxtMarketSource(symbols="BTC", n_bars=48, order_book_levels=0)
    try:
        got = source.fetch()
        requests = list(source._server.requests)
    finally:
        source.teardown_after_execution(None)
    assert len(got.ohlcv[got.ohlcv["market"] == "perp"]) == 48
    assert not [r for r in requests if r.startswith("/sapi")]


def test_a_bar_the_exchange_changed_since_is_a_conflict_unless_replaced(market, con):
    plan = FetchPlan(symbols=("BTC",), spot=False, mark_index=False, funding=False,
                     open_interest=False, order_book_levels=0)  # fmt: skip
    with LocalBinance(market, now=END, delay=0.6) as server:
        write_batch(con, fetcher(server).fetch(plan, START, END).tables())
        again = fetcher(server).fetch(plan, START, END)
    assert set(write_batch(con, again.tables()).values()) == {0}
    bars = market.ohlcv
    corrected = bars.index[(bars["market"] == "perp") & (bars["symbol"] == "BTC")][5]
    changed = bars.copy()
    changed.loc[corrected, "close"] = changed.loc[corrected, "open"]
    changed = MarketFrames(ohlcv=changed, funding_rates=market.funding_rates)
    with LocalBinance(changed, now=END, delay=0.6) as server:
        refetched = fetcher(server).fetch(plan, START, END)
    with pytest.raises(DataConflictError, match=r"1 row\(s\) differ.*symbol=BTC.*close stored"):
        write_batch(con, refetched.tables())
    assert write_batch(con, refetched.tables(), replace=True)["ohlcv"] == 1
