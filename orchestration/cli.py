"""The `perpfolio` command: `demo` runs the whole pipeline, `ui` starts Dagster and MLflow."""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
import time

from orchestration.project import CHAMPION_ALIAS, ProjectPaths

DAGSTER_YAML = """\
# Written by perpfolio; runs go one at a time because they share one DuckDB file.
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""

# Demo runs log warnings and errors only; the full event log is in the Dagster UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def prepare_home() -> ProjectPaths:
    """Create the project folder, point Dagster at it and turn telemetry off."""
    paths = ProjectPaths.from_env().ensure()
    os.environ["PERPFOLIO_HOME"] = str(paths.home)
    os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    dagster_yaml = paths.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists() or dagster_yaml.read_text() != DAGSTER_YAML:
        dagster_yaml.write_text(DAGSTER_YAML)
    return paths


def demo(timesteps: int | None = None) -> int:
    """Materialize the whole asset graph on the embedded default and print a summary;
    ``timesteps`` replaces the environment's training budget."""
    paths = prepare_home()
    started = time.perf_counter()
    import dagster as dg

    from ingestion.warehouse import row_counts
    from orchestration.assets.serving import intervention_line
    from orchestration.definitions import build_definitions, defs

    if timesteps is not None:
        current = defs.resources["training"]
        fields = {name: getattr(current, name) for name in type(current).model_fields}
        training = type(current)(**{**fields, "total_timesteps": timesteps})
        defs = build_definitions(resources={"training": training})

    instance = dg.DagsterInstance.get()
    retrain = defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET
    )
    materialized = [
        e.asset_key.to_user_string()
        for e in retrain.get_asset_materialization_events()
        if e.asset_key is not None
    ]
    print("\n=== perpfolio demo ===")
    print(f"project folder      {paths.home}")
    print(f"retraining run      {retrain.run_id} ({'ok' if retrain.success else 'FAILED'})")
    print(f"assets materialized {len(materialized)}: {', '.join(materialized)}")
    checks = retrain.get_asset_check_evaluations()
    failed_checks = [c for c in checks if not c.passed]
    warned = [c for c in failed_checks if c.severity == dg.AssetCheckSeverity.WARN]
    passed = len(checks) - len(failed_checks)
    print(
        f"quality checks      {passed} passed, {len(warned)} warned, "
        f"{len(failed_checks) - len(warned)} failed"
    )
    for check in failed_checks:
        label = "WARNED" if check in warned else "FAILED"
        print(f"  {label:18}{check.asset_check_key.to_user_string()}: {check.description}")
    if not retrain.success:
        failed = [e.step_key for e in retrain.get_step_failure_events()]
        print(f"failed steps        {failed}")
        return 1
    with defs.resources["warehouse"].connect(read_only=True) as con:
        print(f"raw rows            {row_counts(con)}")
    trained = retrain.output_for_node("trained_policy")
    evaluation = retrain.output_for_node("policy_evaluation")
    promotion = retrain.output_for_node("champion_model")
    print(f"venue               {trained['venue']}")
    print(f"symbols             {', '.join(trained['symbols'])}")
    kept = trained.get("best_timesteps")
    checkpoint = (
        f"; stopped at {trained['trained_timesteps']:,}, kept the best on the validation "
        f"window at {kept:,}"
        if kept is not None
        else ""
    )
    print(
        f"training            {trained['algorithm']}, {trained['total_timesteps']:,} steps "
        f"in {trained['train_seconds']:.0f} s{checkpoint}"
    )
    print(f"model registered    {trained['model_name']} v{trained['version']}")
    days = evaluation["metrics"]["candidate"]["n_days"]
    print(
        f"out of sample       from {evaluation['first_oos_ts']}, "
        f"{evaluation['n_oos_bars']} bars, {days} days"
    )
    _print_metrics(evaluation)
    if promotion["promoted"]:
        print(f"promotion           v{promotion['candidate_version']} is now @{CHAMPION_ALIAS}")
    else:
        print("promotion           refused by the gate:")
        for reason in promotion["reasons"]:
            print(f"  - {reason}")
    champion = promotion["champion_version"]
    print(f"champion alias      @{CHAMPION_ALIAS} -> " + (f"v{champion}" if champion else "none"))
    serve = defs.resolve_job_def("serving_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET
    )
    if not serve.success:
        print("serving             FAILED")
        return 1
    (event,) = serve.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    decided = "decided" if meta["decided"] else "held (between decisions)"
    print(
        f"serving             v{meta['model_version']} ({meta['backend']}) at the close of "
        f"{meta['decision_ts']}: {decided}, safety {meta['safety_state']}"
    )
    weights = {k[7:]: v for k, v in meta.items() if k.startswith("weight_")}
    print(f"target weights      {weights}")
    print(f"orders              {meta['orders']} to fill at the next open")
    for order in meta["order_rows"]:
        qty, price = order["qty"], order["price"]
        print(f"  {order['symbol']:10} {order['side']:4} {qty:>12.6g} at {price:.6g}")
    print(f"interventions       {meta['n_interventions']}")
    for row in meta["intervention_rows"]:
        print(f"  {intervention_line(row)}")
    print(
        f"paper account       equity {meta['paper_equity']:,.2f} over {meta['paper_bars']} "
        f"bar(s) since {meta['first_paper_bar']}"
    )
    print(f"elapsed             {time.perf_counter() - started:.0f} s")
    print("next                `make ui`, then open the Dagster and MLflow UIs it prints")
    return 0


def _print_metrics(evaluation: dict) -> None:
    """Every contender's out-of-sample metrics, the Sharpe intervals and the statistics."""
    from evaluation.strategies import BENCHMARKS

    print(f"{'':28}{'Sharpe':>7}{'95% CI':>17}{'return':>9}{'max DD':>8}{'turnover':>9}{'cost':>7}")
    for name, m in evaluation["metrics"].items():
        low, high = evaluation["sharpe_ci"][name]
        label = f"{name} (benchmark)" if name in BENCHMARKS else name
        print(
            f"  {label:26}{m['sharpe']:>7.2f}{f'[{low:.2f}, {high:.2f}]':>17}"
            f"{m['total_return']:>9.2%}{m['max_drawdown']:>8.2%}{m['turnover']:>9.1f}"
            f"{m['turnover_cost']:>7.2%}"
        )
    evidence = evaluation["gate_evidence"]
    low, high = evidence["sharpe_difference_ci"]
    print(
        f"statistics          Sharpe - {evidence['best_baseline']} (best baseline): "
        f"95% CI [{low:.2f}, {high:.2f}]; PSR {evaluation['probabilistic_sharpe']:.3f}, "
        f"DSR {evidence['deflated_sharpe']:.3f} over {evidence['n_trials']} trials"
    )


def ui(dagster_port: int, mlflow_port: int) -> int:
    """Start the Dagster UI (with its daemon) and the MLflow UI on 127.0.0.1."""
    paths = prepare_home()
    bin_dir = os.path.dirname(sys.executable)
    mlflow_proc = subprocess.Popen(
        [
            os.path.join(bin_dir, "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            paths.mlflow_tracking_uri,
            "--default-artifact-root",
            paths.mlflow_artifacts.as_uri(),
        ]
    )
    print(
        f"Dagster UI: http://127.0.0.1:{dagster_port}   MLflow UI: http://127.0.0.1:{mlflow_port}"
    )
    print("Ctrl-C stops both.")
    # `dagster dev` re-parses the dbt project on load with the `dbt` it finds on PATH.
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    try:
        return subprocess.call(
            [os.path.join(bin_dir, "dagster"), "dev", "-h", "127.0.0.1", "-p", str(dagster_port)],
            env=env,
        )
    except KeyboardInterrupt:
        return 0
    finally:
        mlflow_proc.terminate()


def import_data(kind: str, path: str, venue: str, replace: bool = False) -> int:
    """Import a freqtrade or Binance bulk-data directory into the warehouse (one transaction)."""
    paths = prepare_home()
    from ingestion.importers import import_directory
    from ingestion.warehouse import (
        DataValidationError,
        WarehouseLockedError,
        connect_warehouse,
        row_counts,
    )

    started = time.perf_counter()
    try:
        with connect_warehouse(paths.warehouse) as con:
            report = import_directory(con, kind, path, venue=venue, replace=replace)
            totals = row_counts(con)
    except (DataValidationError, FileNotFoundError, WarehouseLockedError) as err:
        print(f"import failed, nothing written: {err}", file=sys.stderr)
        return 1
    print(f"imported {report.files} {kind} files from {path} as venue {venue!r}")
    print(f"rows written        {report.rows_written}")
    print(f"gaps recorded       {report.gaps}")
    if report.mark_from_perp_close:
        print(f"mark = perp close   {', '.join(report.mark_from_perp_close)} (no mark-price file)")
    for skipped in report.skipped:
        print(f"skipped             {skipped}")
    print(f"warehouse rows      {totals} in {paths.warehouse}")
    print(f"elapsed             {time.perf_counter() - started:.1f} s")
    return 0


def rollback(reason: str, by: str | None = None) -> int:
    """Run ``rollback_job``: ``@champion`` back to ``@previous``, recorded in the project's
    Dagster instance and as tags on both versions; 0 on success, 1 when it cannot roll back."""
    paths = prepare_home()
    import dagster as dg

    from orchestration.jobs import rollback_job
    from orchestration.resources import build_resources
    from orchestration.resources.mlflow_registry import MlflowRegistry

    by = by or os.environ.get("USER") or getpass.getuser()
    registry = build_resources()["mlflow_registry"]
    assert isinstance(registry, MlflowRegistry)
    config = {"ops": {"rollback_champion": {"config": {"by": by, "reason": reason}}}}
    result = rollback_job.execute_in_process(
        instance=dg.DagsterInstance.get(),
        resources={"mlflow_registry": registry},
        run_config={**QUIET, **config},
        raise_on_error=False,
    )
    if not result.success:
        failure = result.get_step_failure_events()[0].step_failure_data
        if failure.user_failure_data and failure.user_failure_data.description:
            message = failure.user_failure_data.description
        else:
            error = failure.error
            while error is not None and error.cause is not None:
                error = error.cause
            message = error.message.strip() if error is not None else "unknown error"
        # The tracking URI may hold credentials: it is never printed.
        message = message.replace(registry.tracking_uri, "<tracking URI>")
        print(f"rollback failed: {message}", file=sys.stderr)
        return 1
    done = result.output_for_node("rollback_champion")
    print(
        f"@{CHAMPION_ALIAS}           v{done['from_version']} -> v{done['to_version']} "
        f"(rolled back by {by}: {reason})"
    )
    print(f"rollback run        {result.run_id} in {paths.dagster_home}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perpfolio", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the whole pipeline on the embedded default")
    demo_parser.add_argument(
        "--timesteps",
        type=int,
        help="training budget in decisions (default: the config's, 20,000)",
    )
    ui_parser = commands.add_parser("ui", help="start the Dagster and MLflow UIs")
    ui_parser.add_argument("--dagster-port", type=int, default=3000)
    ui_parser.add_argument("--mlflow-port", type=int, default=5000)
    import_parser = commands.add_parser("import", help="import market-data files")
    import_parser.add_argument("kind", choices=["freqtrade", "binance-bulk"])
    import_parser.add_argument("path", help="the data directory (searched recursively)")
    import_parser.add_argument("--venue", default="binance", help="venue name to store")
    import_parser.add_argument(
        "--replace",
        action="store_true",
        help="overwrite stored rows the files change (default: refuse them as conflicts)",
    )
    rollback_parser = commands.add_parser(
        "rollback", help="move @champion back to the version it replaced (@previous)"
    )
    rollback_parser.add_argument("--reason", required=True, help="why (recorded on the versions)")
    rollback_parser.add_argument("--by", help="who (recorded; default: $USER)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.timesteps)
    if args.command == "rollback":
        return rollback(args.reason, args.by)
    if args.command == "import":
        return import_data(args.kind, args.path, args.venue, replace=args.replace)
    return ui(args.dagster_port, args.mlflow_port)


if __name__ == "__main__":
    sys.exit(main())
