"""Great Expectations suites and a validator that reports failing rows by symbol and time.

GX's SQL datasource does not work on DuckDB, so each suite has a query whose result (a pandas
frame, with derived columns such as the step between bars) is validated in memory.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from ingestion.universe import TIMEFRAMES  # noqa: E402
from ingestion.warehouse import EARLIEST_TS, FUTURE_SLACK  # noqa: E402

FEATURE_KEY = ["venue", "symbol", "timeframe", "ts"]
MAX_ABS_BASIS = 0.10
"""A sanity bound (another symbol's spot prices give far more): real basis reaches 6.7% (XRP,
2020-12-11 23:00 UTC, Binance) and 5.7% on a bar whose spot close is carried over a gap."""
MAX_ABS_FUNDING = 0.03
"""Largest |funding rate| per 8h any exchange allows (Binance caps most perps at 0.75%-3%)."""
FUNDING_INTERVALS = [1, 2, 4, 8]
MAX_ABS_LOG_RETURN = 1.0
MAX_REALIZED_VOL = 0.5
MAX_ABS_MARK_SPREAD = 0.05
MAX_MEAN_ABS_ZSCORE = 1.5

_BAR_MINUTES = (
    "case timeframe "
    + " ".join(f"when '{tf.name}' then {tf.minutes}" for tf in TIMEFRAMES.values())
    + " end"
)

# Market data lies in [2009-01-01, now + 1 day]; a time outside is a misread epoch unit.
_TS_PLAUSIBLE = (
    f"ts between timestamp '{EARLIEST_TS}' "
    f"and now()::timestamp + interval {int(FUTURE_SLACK.total_seconds())} second"
)

RAW_OHLCV_QUERY = f"""
with bars as (
    select *, {_BAR_MINUTES} as bar_minutes,
        lag(ts) over (partition by venue, market, symbol, timeframe order by ts) as prev_ts
    from raw.ohlcv
),
spot as (
    select venue, symbol, timeframe, ts from raw.ohlcv where market = 'spot'
)
select
    bars.venue, bars.market, bars.symbol, bars.timeframe, bars.ts,
    bars.open, bars.high, bars.low, bars.close, bars.volume, bars.bar_minutes,
    bars.{_TS_PLAUSIBLE} as ts_is_plausible,
    bars.high >= greatest(bars.open, bars.close) and bars.low <= least(bars.open, bars.close)
        as high_low_brackets_open_close,
    epoch(bars.ts - bars.prev_ts) / 60 as minutes_since_previous_bar,
    bars.prev_ts is null
        or bars.ts - bars.prev_ts = to_minutes(bars.bar_minutes)
        or exists (
            select 1 from raw.data_gaps as gaps
            where gaps.venue = bars.venue and gaps.market = bars.market
                and gaps.symbol = bars.symbol and gaps.timeframe = bars.timeframe
                and gaps.gap_start <= bars.prev_ts + to_minutes(bars.bar_minutes)
                and gaps.gap_end >= bars.ts - to_minutes(bars.bar_minutes)
        ) as gap_before_is_recorded,
    bars.market = 'perp' and spot.ts is null and not exists (
        select 1 from raw.data_gaps as gaps
        where gaps.venue = bars.venue and gaps.market = 'spot' and gaps.symbol = bars.symbol
            and gaps.timeframe = bars.timeframe and bars.ts between gaps.gap_start and gaps.gap_end
    ) as perp_bar_without_spot
from bars
left join spot
    on bars.market = 'perp' and spot.venue = bars.venue and spot.symbol = bars.symbol
    and spot.timeframe = bars.timeframe and spot.ts = bars.ts
"""

RAW_FUNDING_QUERY = f"""
select
    venue, symbol, ts, funding_rate, interval_hours, {_TS_PLAUSIBLE} as ts_is_plausible,
    funding_rate * 8.0 / interval_hours as funding_rate_8h,
    count(*) over (
        partition by venue, symbol,
            time_bucket(to_hours(interval_hours), ts + to_minutes(interval_hours * 30))
    ) as settlements_in_interval_slot
from raw.funding_rates
"""

FEATURE_MART_QUERY = """
select
    *,
    epoch(ts - lag(ts) over (partition by venue, symbol, timeframe order by ts)) / 60
        as minutes_since_previous_bar
from marts.fct_features
"""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict and, when it failed, a few offending rows."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: list[str]
    kwargs: dict = field(default_factory=dict)
    observed: str = ""

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        if self.success:
            return f"{self.expectation}{where}: ok"
        if not self.examples:
            return f"{self.expectation}{where}: failed (observed {self.observed or 'n/a'})"
        rows = "; ".join(self.examples)
        return f"{self.expectation}{where}: {self.unexpected_count} row(s) failed, e.g. {rows}"


@dataclass(frozen=True)
class SuiteResult:
    """The outcome of one suite over one frame."""

    suite: str
    success: bool
    n_rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        """One line: counts when it passed, every failure when it did not."""
        if self.success:
            return f"{len(self.outcomes)} expectations passed on {self.n_rows} rows"
        return " | ".join(o.describe() for o in self.failures)


def raw_ohlcv_expectations() -> list[gx.expectations.Expectation]:
    """Raw bars: complete, positive, consistent, no unrecorded gaps, a spot bar per perp bar
    (or a recorded spot gap there)."""
    e = gx.expectations
    prices = ("open", "high", "low", "close")
    return [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectCompoundColumnsToBeUnique(
            column_list=["venue", "market", "symbol", "timeframe", "ts"]
        ),
        e.ExpectColumnValuesToBeInSet(column="market", value_set=["perp", "spot", "mark", "index"]),
        e.ExpectColumnValuesToNotBeNull(column="bar_minutes"),
        e.ExpectColumnValuesToBeInSet(column="ts_is_plausible", value_set=[True]),
        *[e.ExpectColumnValuesToNotBeNull(column=c) for c in prices],
        *[e.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in prices],
        e.ExpectColumnValuesToBeInSet(column="high_low_brackets_open_close", value_set=[True]),
        e.ExpectColumnValuesToBeBetween(
            column="minutes_since_previous_bar", min_value=0, strict_min=True
        ),
        e.ExpectColumnValuesToBeInSet(column="gap_before_is_recorded", value_set=[True]),
        e.ExpectColumnValuesToBeInSet(column="perp_bar_without_spot", value_set=[False]),
    ]


def raw_funding_expectations() -> list[gx.expectations.Expectation]:
    """Raw funding: within exchange caps, known intervals, one settlement per interval."""
    e = gx.expectations
    return [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToNotBeNull(column="funding_rate"),
        e.ExpectColumnValuesToBeInSet(column="ts_is_plausible", value_set=[True]),
        e.ExpectColumnValuesToBeBetween(
            column="funding_rate_8h", min_value=-MAX_ABS_FUNDING, max_value=MAX_ABS_FUNDING
        ),
        e.ExpectColumnValuesToBeInSet(column="interval_hours", value_set=FUNDING_INTERVALS),
        e.ExpectColumnValuesToBeBetween(column="settlements_in_interval_slot", max_value=1),
    ]


def feature_mart_expectations() -> list[gx.expectations.Expectation]:
    """What the feature mart must satisfy before any model trains on it."""
    e = gx.expectations
    not_null = [
        "venue",
        "symbol",
        "timeframe",
        "ts",
        "open",
        "high",
        "low",
        "close",
        "spot_close",
        "mark_close",
        "basis",
        "funding_rate_settled",
        "hours_to_funding",
        "regime",
    ]
    return [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectCompoundColumnsToBeUnique(column_list=FEATURE_KEY),
        *[e.ExpectColumnValuesToNotBeNull(column=c) for c in not_null],
        *[
            e.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True)
            for c in ("open", "high", "low", "close", "spot_close", "mark_close")
        ],
        e.ExpectColumnValuesToBeBetween(
            column="minutes_since_previous_bar", min_value=0, strict_min=True
        ),
        e.ExpectColumnValuesToBeBetween(
            column="basis", min_value=-MAX_ABS_BASIS, max_value=MAX_ABS_BASIS
        ),
        *[
            e.ExpectColumnValuesToBeBetween(
                column=c, min_value=-MAX_ABS_FUNDING, max_value=MAX_ABS_FUNDING
            )
            for c in ("funding_rate_settled", "last_funding_rate_8h")
        ],
        e.ExpectColumnValuesToBeBetween(
            column="hours_to_funding", min_value=0, max_value=24, strict_min=True
        ),
        e.ExpectColumnValuesToBeBetween(
            column="funding_interval_remaining", min_value=0, max_value=1, strict_min=True
        ),
        e.ExpectColumnValuesToBeBetween(
            column="log_return_1", min_value=-MAX_ABS_LOG_RETURN, max_value=MAX_ABS_LOG_RETURN
        ),
        e.ExpectColumnValuesToBeBetween(
            column="realized_vol", min_value=0, max_value=MAX_REALIZED_VOL
        ),
        e.ExpectColumnValuesToBeBetween(
            column="mark_spread", min_value=-MAX_ABS_MARK_SPREAD, max_value=MAX_ABS_MARK_SPREAD
        ),
        e.ExpectColumnValuesToBeBetween(column="order_book_imbalance", min_value=-1, max_value=1),
        e.ExpectColumnValuesToBeInSet(
            column="regime",
            value_set=["contango_high_funding", "backwardation_negative_funding", "flat"],
        ),
        # Distributions: rolling z-scores centred, volatility not degenerate.
        *[
            e.ExpectColumnMeanToBeBetween(
                column=c, min_value=-MAX_MEAN_ABS_ZSCORE, max_value=MAX_MEAN_ABS_ZSCORE
            )
            for c in ("basis_zscore", "volume_zscore")
        ],
        e.ExpectColumnStdevToBeBetween(column="basis_zscore", min_value=0.1, max_value=5),
        e.ExpectColumnMeanToBeBetween(column="realized_vol", min_value=0, strict_min=True),
    ]


@dataclass(frozen=True)
class Suite:
    """A named suite: the query that reads its frame and what the frame must satisfy."""

    name: str
    query: str
    expectations: tuple[gx.expectations.Expectation, ...]
    row_id_columns: tuple[str, ...]


def suites() -> dict[str, Suite]:
    """Every suite by name."""
    return {
        s.name: s
        for s in (
            Suite(
                "raw_ohlcv",
                RAW_OHLCV_QUERY,
                tuple(raw_ohlcv_expectations()),
                ("venue", "market", "symbol", "timeframe", "ts"),
            ),
            Suite(
                "raw_funding_rates",
                RAW_FUNDING_QUERY,
                tuple(raw_funding_expectations()),
                ("venue", "symbol", "ts"),
            ),
            Suite(
                "fct_features",
                FEATURE_MART_QUERY,
                tuple(feature_mart_expectations()),
                ("venue", "symbol", "timeframe", "ts"),
            ),
        )
    }


def run_suite(con: duckdb.DuckDBPyConnection, suite: Suite) -> SuiteResult:
    """Read the suite's frame from DuckDB and validate it."""
    frame = con.execute(suite.query).df()
    return validate_frame(frame, suite.name, list(suite.expectations), suite.row_id_columns)


def validate_frame(
    frame: pd.DataFrame,
    suite_name: str,
    expectations: list[gx.expectations.Expectation],
    row_id_columns: tuple[str, ...] = ("symbol", "ts"),
    max_examples: int = 5,
) -> SuiteResult:
    """Validate ``frame`` with an ephemeral GX context; failing rows are named by id columns."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("warehouse")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation.copy())
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    ids = [c for c in row_id_columns if c in frame.columns]
    result = batch.validate(
        suite,
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": ids,
            "partial_unexpected_count": max_examples,
        },
    )
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        assert config is not None  # GX attaches each result's expectation
        kwargs = config.kwargs
        details = r.result or {}
        examples = [
            ", ".join(f"{k}={v}" for k, v in row.items())
            for row in (details.get("unexpected_index_list") or [])[:max_examples]
            if isinstance(row, dict)
        ]
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=kwargs.get("column") or ",".join(kwargs.get("column_list", [])) or None,
                success=bool(r.success),
                unexpected_count=int(details.get("unexpected_count") or 0),
                examples=examples,
                kwargs={k: v for k, v in kwargs.items() if k not in ("batch_id",)},
                observed=str(details.get("observed_value", "")),
            )
        )
    return SuiteResult(
        suite=suite_name, success=bool(result.success), n_rows=len(frame), outcomes=outcomes
    )


def write_report(result: SuiteResult, directory: Path) -> Path:
    """Keep ``result`` as a self-contained HTML page (and JSON beside it); returns the page."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    page = directory / f"{result.suite}-{stamp}.html"
    page.with_suffix(".json").write_text(json.dumps(asdict(result), default=str, indent=1))
    rows = "\n".join(
        "<tr class='{cls}'><td>{status}</td><td>{exp}</td><td>{col}</td><td>{args}</td>"
        "<td>{n}</td><td>{ex}</td></tr>".format(
            cls="ok" if o.success else "fail",
            status="passed" if o.success else "FAILED",
            exp=html.escape(o.expectation),
            col=html.escape(o.column or ""),
            args=html.escape(
                ", ".join(f"{k}={v}" for k, v in o.kwargs.items() if k not in ("column",))
            ),
            n=o.unexpected_count,
            ex="<br>".join(html.escape(x) for x in o.examples) or html.escape(o.observed),
        )
        for o in sorted(result.outcomes, key=lambda o: o.success)
    )
    verdict = "passed" if result.success else f"FAILED ({len(result.failures)} expectations)"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{result.suite} validation</title><style>"
        "body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;font-size:13px}"
        "table{border-collapse:collapse}.fail{background:#fdd}.ok{background:#efe}</style>"
        f"</head><body><h1>Suite {html.escape(result.suite)}: {verdict}</h1>"
        f"<p>{result.n_rows} rows validated at {stamp} with Great Expectations "
        f"{gx.__version__}.</p><table><tr><th>status</th><th>expectation</th><th>column</th>"
        f"<th>arguments</th><th>failed rows</th><th>examples / observed</th></tr>{rows}"
        "</table></body></html>"
    )
    return page
