"""Blocking data-quality checks: a failure stops every downstream asset in the run."""

import dagster as dg

from orchestration.assets.features import FEATURE_MART
from orchestration.quality.suites import feature_mart_expectations, validate_frame
from orchestration.resources.warehouse import DuckDBWarehouse


@dg.asset_check(
    asset=FEATURE_MART,
    blocking=True,
    description="Great Expectations suite on the feature mart; blocks training when it fails.",
)
def feature_mart_expectations_check(warehouse: DuckDBWarehouse) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        frame = con.execute("SELECT * FROM marts.fct_features").df()
    result = validate_frame(frame, "fct_features", feature_mart_expectations())
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(result.outcomes)} expectations passed on {result.n_rows} rows"
            if result.success
            else " | ".join(o.describe() for o in result.failures)
        ),
        metadata={
            "rows": result.n_rows,
            "expectations": len(result.outcomes),
            "failed": len(result.failures),
            "failures": dg.MetadataValue.md(
                "\n".join(f"- {o.describe()}" for o in result.failures) or "none"
            ),
        },
    )
