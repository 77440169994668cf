"""dbt run from the Dagster step (a fork of it), not as a fresh ``dbt`` process.

The code location imports dbt already (dagster-dbt does), so a ``dbt`` process per build pays
dbt's start-up a second time: 2.5-3 s of imports and project validation, more than the whole
1h feature build takes. ``ForkedDbt`` runs the same command through dbt's programmatic entry
point (``dbtRunner``) in a child forked from the step, which has dbt imported already, and turns
dbt's events into Dagster events with dagster-dbt's own conversion, so models are asset outputs
and data tests asset checks, as with ``DbtCliResource.cli(...).stream()``. The child keeps dbt's
global state and its DuckDB handle out of the step; where ``fork`` is missing (Windows) dbt
runs in the step itself.

Each build parses first, without the window vars, and then runs with the parsed manifest: dbt
re-parses the whole project (3-4 s) whenever its vars change, and a partitioned run passes its
window as vars. The parse state is kept in the project's ``target/`` for the next build.
"""

import multiprocessing
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dbt.cli.main import dbtRunner
from dbt_common.events.functions import msg_to_dict

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
FAILED_STATUSES = {"error", "fail", "runtime error"}


@dataclass
class DbtInvocation:
    """The outcome of one dbt command."""

    success: bool
    """Whether every node ran and every test passed."""
    failures: list[str]
    """``unique_id: message`` of each node that errored or test that failed, or dbt's error."""
    target_path: Path
    """Where dbt wrote its artifacts and log for this command."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """dbt's structured events, as the JSON lines of ``dbt --log-format json``."""


def release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open for the life of the process, so the
    other steps (and other processes) can open the warehouse file. dbt-duckdb has no public
    call for this: its connection manager holds the database in ``_ENV``."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if environment is not None:
            environment.close()


def _seed_partial_parse(project_dir: Path, target_path: Path) -> None:
    saved = project_dir / "target" / PARTIAL_PARSE_FILE
    if saved.exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copy(saved, target_path / PARTIAL_PARSE_FILE)


def _keep_partial_parse(project_dir: Path, target_path: Path) -> None:
    """Save this parse's state as the project's, atomically (builds may run side by side)."""
    parsed = target_path / PARTIAL_PARSE_FILE
    if not parsed.exists():
        return
    saved_dir = project_dir / "target"
    saved_dir.mkdir(exist_ok=True)
    handle, copy = tempfile.mkstemp(dir=saved_dir, suffix=".tmp")
    os.close(handle)
    shutil.copyfile(parsed, copy)
    os.replace(copy, saved_dir / PARTIAL_PARSE_FILE)


def invoke_dbt(
    args: Sequence[str],
    project_dir: str,
    profiles_dir: str,
    target_path: Path,
) -> DbtInvocation:
    """Parse the project, then run ``dbt <args>`` with that manifest, in this process."""
    common = [
        "--no-use-colors",
        "--project-dir",
        project_dir,
        "--profiles-dir",
        profiles_dir,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
    ]
    messages: list[dict[str, Any]] = []
    _seed_partial_parse(Path(project_dir), target_path)
    try:
        parsed = dbtRunner().invoke(["parse", "--quiet", "--no-write-json", *common])
        if not parsed.success:
            return DbtInvocation(False, [f"dbt parse: {parsed.exception}"], target_path)
        _keep_partial_parse(Path(project_dir), target_path)
        runner = dbtRunner(
            manifest=parsed.result, callbacks=[lambda event: messages.append(msg_to_dict(event))]
        )
        result = runner.invoke([*args, *common])
    finally:
        release_duckdb()
    failures = [
        f"{node.node.unique_id}: {node.message}"
        for node in getattr(result.result, "results", None) or []
        if str(node.status) in FAILED_STATUSES
    ]
    if result.exception is not None:
        failures.append(f"dbt {args[0]}: {result.exception}")
    return DbtInvocation(result.success, failures, target_path, messages)


def _invoke_and_send(
    sender: Any, args: Sequence[str], project_dir: str, profiles_dir: str, target_path: Path
) -> None:
    try:
        outcome = invoke_dbt(args, project_dir, profiles_dir, target_path)
    except Exception as error:  # sent, not raised: the parent cannot see the child's raise
        outcome = DbtInvocation(False, [f"dbt {args[0]}: {error!r}"], target_path)
    sender.send(outcome)


def run_dbt(
    args: Sequence[str], project_dir: str, profiles_dir: str, target_path: Path
) -> DbtInvocation:
    """``invoke_dbt`` in a child forked from this process (in this process without ``fork``)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return invoke_dbt(args, project_dir, profiles_dir, target_path)
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(
        target=_invoke_and_send,
        args=(sender, args, project_dir, profiles_dir, target_path),
        name="dbt",
    )
    child.start()
    sender.close()
    try:
        return receiver.recv()
    except EOFError:
        child.join()
        return DbtInvocation(False, [f"dbt died with exit code {child.exitcode}"], target_path)
    finally:
        if child.is_alive():
            child.terminate()
        child.join()


class ForkedDbt(dg.ConfigurableResource):
    """Runs dbt commands for ``@dbt_assets`` from the step's process (see the module)."""

    project_dir: str
    """The dbt project folder."""
    profiles_dir: str
    """The folder holding ``profiles.yml``."""

    def build(
        self, args: Sequence[str], context: dg.AssetExecutionContext
    ) -> tuple[DbtInvocation, list[Any]]:
        """Run ``dbt <args>`` for the assets ``context`` selected; return the outcome and its
        Dagster events (outputs for models, check results for data tests)."""
        from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
        from dagster_dbt.dagster_dbt_translator import DagsterDbtTranslator

        params = get_updated_cli_invocation_params_for_context(
            context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator()
        )
        selection = list(params.selection_args)
        if params.indirect_selection:
            selection += ["--indirect-selection", params.indirect_selection]
        project = params.dbt_project
        project_dir = str(project.project_dir) if project else self.project_dir
        op_name = context.op_execution_context.op.name
        name = f"{op_name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
        target_path = Path(self.project_dir, "target", name)
        invocation = run_dbt([*args, *selection], project_dir, self.profiles_dir, target_path)
        events = [
            event
            for raw in invocation.messages
            for event in DbtCoreCliEventMessage(
                raw_event=raw, event_history_metadata={}
            ).to_default_asset_events(
                manifest=params.manifest,
                dagster_dbt_translator=params.dagster_dbt_translator,
                context=context,
                target_path=target_path,
                project=project,
            )
        ]
        return invocation, events
