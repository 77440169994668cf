"""Blocking data-quality checks: a failure stops every downstream asset in the run.

Each check runs one Great Expectations suite (``quality.suites``) on a frame read
from DuckDB, names the failing expectations and rows (symbol and time) in its description, and
keeps an HTML report of the validation whose path is in the check's metadata.
"""

import dagster as dg

from orchestration.assets.features import FEATURE_MART
from orchestration.project import ProjectPaths
from orchestration.resources.warehouse import DuckDBWarehouse
from quality.suites import SuiteResult, run_suite, suites, write_report

RAW_OHLCV = dg.AssetKey(["raw", "ohlcv"])
RAW_FUNDING = dg.AssetKey(["raw", "funding_rates"])


def _check_result(warehouse: DuckDBWarehouse, suite_name: str) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        result: SuiteResult = run_suite(con, suites()[suite_name])
    report = write_report(result, ProjectPaths.from_env().reports / "quality")
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.summary(),
        metadata={
            "rows": result.n_rows,
            "expectations": len(result.outcomes),
            "failed": len(result.failures),
            "failures": dg.MetadataValue.md(
                "\n".join(f"- {o.describe()}" for o in result.failures) or "none"
            ),
            "report": dg.MetadataValue.path(str(report)),
        },
    )


@dg.asset_check(
    asset=RAW_OHLCV,
    blocking=True,
    description="Great Expectations suite on the raw bars (prices, gaps, spot for every perp bar).",
)
def raw_ohlcv_expectations_check(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    return _check_result(warehouse, "raw_ohlcv")


@dg.asset_check(
    asset=RAW_FUNDING,
    blocking=True,
    description="Great Expectations suite on raw funding (caps, intervals, duplicate events).",
)
def raw_funding_expectations_check(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    return _check_result(warehouse, "raw_funding_rates")


@dg.asset_check(
    asset=FEATURE_MART,
    blocking=True,
    description="Great Expectations suite on the feature mart; blocks training when it fails.",
)
def feature_mart_expectations_check(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    return _check_result(warehouse, "fct_features")


QUALITY_CHECKS = [
    raw_ohlcv_expectations_check,
    raw_funding_expectations_check,
    feature_mart_expectations_check,
]
"""Every blocking quality check; the definitions register this list."""
