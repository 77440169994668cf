"""Great Expectations suites and a validator that reports failing rows by symbol and time.

GX's SQL datasource does not work on DuckDB, so tables are read into pandas and validated there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

FEATURE_KEY = ["venue", "symbol", "timeframe", "ts"]
MAX_ABS_BASIS = 0.05
MAX_ABS_FUNDING = 0.03


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict and, when it failed, a few offending rows."""

    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: list[str]

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        if self.success:
            return f"{self.expectation}{where}: ok"
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


def feature_mart_expectations() -> list[gx.expectations.Expectation]:
    """What the feature mart must satisfy before any model trains on it."""
    e = gx.expectations
    not_null = [
        "venue",
        "symbol",
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
            column="basis", min_value=-MAX_ABS_BASIS, max_value=MAX_ABS_BASIS
        ),
        *[
            e.ExpectColumnValuesToBeBetween(
                column=c, min_value=-MAX_ABS_FUNDING, max_value=MAX_ABS_FUNDING
            )
            for c in ("funding_rate_settled", "last_funding_rate")
        ],
        e.ExpectColumnValuesToBeBetween(
            column="hours_to_funding", min_value=0, max_value=24, strict_min=True
        ),
    ]


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
        suite.add_expectation(expectation)
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
        kwargs = r.expectation_config.kwargs
        details = r.result or {}
        examples = [
            ", ".join(f"{k}={v}" for k, v in row.items())
            for row in (details.get("unexpected_index_list") or [])[:max_examples]
            if isinstance(row, dict)
        ]
        outcomes.append(
            ExpectationOutcome(
                expectation=r.expectation_config.type,
                column=kwargs.get("column") or ",".join(kwargs.get("column_list", [])) or None,
                success=bool(r.success),
                unexpected_count=int(details.get("unexpected_count") or 0),
                examples=examples,
            )
        )
    return SuiteResult(
        suite=suite_name, success=bool(result.success), n_rows=len(frame), outcomes=outcomes
    )
