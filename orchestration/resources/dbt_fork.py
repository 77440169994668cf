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

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import sys
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
RESULT_EVENTS = {"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"}
"""dbt's events that dagster-dbt turns into Dagster events: one per finished node."""
STOP_SECONDS = 25
"""How long a stopped build may take to cancel its queries before it is killed."""
SELECTION_FLAGS = {"-s", "--select", "--exclude", "--selector", "--models", "-m"}

logger = logging.getLogger(__name__)


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
    """dbt's result events (``RESULT_EVENTS``), as the JSON lines of ``dbt --log-format json``."""


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


def _saved_parse_state(project_dir: Path) -> Path:
    """The project's parse state, shared by its builds (where ``dbt parse`` leaves it)."""
    return project_dir / "target" / PARTIAL_PARSE_FILE


def _seed_partial_parse(project_dir: Path, target_path: Path) -> None:
    """Start from the project's saved parse state; it is a cache, so failing to copy it only
    costs a full parse."""
    saved = _saved_parse_state(project_dir)
    try:
        if saved.exists():
            target_path.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(saved, target_path / PARTIAL_PARSE_FILE)
    except OSError as error:
        logger.warning(f"dbt parses the whole project: cannot copy {saved}: {error}")


def _keep_partial_parse(project_dir: Path, target_path: Path) -> None:
    """Save this parse's state as the project's, atomically (builds may run side by side), and
    drop the run's own copy. Best effort: the next build parses in full if this fails."""
    parsed = target_path / PARTIAL_PARSE_FILE
    if not parsed.exists():
        return
    saved = _saved_parse_state(project_dir)
    copy = None
    try:
        saved.parent.mkdir(exist_ok=True)
        handle, copy = tempfile.mkstemp(dir=saved.parent, suffix=".tmp")
        os.close(handle)
        shutil.copyfile(parsed, copy)
        os.chmod(copy, 0o644)
        os.replace(copy, saved)
        parsed.unlink()
    except OSError as error:
        logger.warning(f"cannot keep dbt's parse state as {saved}: {error}")
        if copy is not None and os.path.exists(copy):
            os.remove(copy)


def invoke_dbt(
    args: Sequence[str],
    project_dir: str,
    profiles_dir: str,
    target_path: Path,
) -> DbtInvocation:
    """Parse the project, then run ``dbt <args>`` with that manifest, in this process.

    Only vars that the SQL reads at run time (the window) may go in ``args``: the parse sees
    none of them, and vars that dbt reads while parsing (YAML, configs) come from the project.
    """
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

    def keep_result(event: Any) -> None:
        if event.info.name in RESULT_EVENTS:
            messages.append(msg_to_dict(event))

    _seed_partial_parse(Path(project_dir), target_path)
    try:
        parsed = dbtRunner().invoke(["parse", "--quiet", "--no-write-json", *common])
        if not parsed.success:
            return DbtInvocation(False, [f"dbt parse: {parsed.exception}"], target_path)
        _keep_partial_parse(Path(project_dir), target_path)
        result = dbtRunner(manifest=parsed.result, callbacks=[keep_result]).invoke([*args, *common])
    finally:
        release_duckdb()
    failures = [
        f"{node.node.unique_id}: {node.message}"
        for node in getattr(result.result, "results", None) or []
        if str(node.status) in FAILED_STATUSES
    ]
    if result.exception is not None:
        failures.append(f"dbt {args[0]}: {result.exception}")
    if not result.success and not failures:
        failures.append(f"dbt {args[0]} did not succeed: see {target_path / 'dbt.log'}")
    return DbtInvocation(result.success, failures, target_path, messages)


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` dies (Linux), so a killed step leaves
    no dbt writing to the warehouse behind it."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def _invoke_and_send(
    parent: int,
    receiver: Any,
    sender: Any,
    args: Sequence[str],
    project_dir: str,
    profiles_dir: str,
    target_path: Path,
) -> None:
    """The forked child: dbt's default signal handling (a SIGINT cancels its queries), then the
    command, then its outcome to the parent."""
    receiver.close()
    _die_with(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcome = invoke_dbt(args, project_dir, profiles_dir, target_path)
    except Exception as error:  # sent, not raised: the parent cannot see the child's raise
        outcome = DbtInvocation(False, [f"dbt {args[0]}: {error!r}"], target_path)
    with contextlib.suppress(BrokenPipeError):  # the parent was stopped and is not listening
        sender.send(outcome)


def _stop(child: Any) -> None:
    """Cancel dbt as Ctrl-C would, then kill it if it has not stopped in ``STOP_SECONDS``."""
    if child.is_alive():
        os.kill(child.pid, signal.SIGINT)
        child.join(STOP_SECONDS)
    if child.is_alive():
        child.kill()
    child.join()


def run_dbt(
    args: Sequence[str], project_dir: str, profiles_dir: str, target_path: Path
) -> DbtInvocation:
    """``invoke_dbt`` in a child forked from this process (in this process without ``fork``).

    If this process is interrupted while dbt runs (a stopped Dagster run), dbt is cancelled and
    the interruption goes on up."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return invoke_dbt(args, project_dir, profiles_dir, target_path)
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    with receiver:
        child = fork.Process(
            target=_invoke_and_send,
            args=(os.getpid(), receiver, sender, args, project_dir, profiles_dir, target_path),
            name="dbt",
        )
        try:
            child.start()
        finally:
            sender.close()
        try:
            outcome = receiver.recv()
        except EOFError:
            child.join()
            return DbtInvocation(False, [f"dbt died with exit code {child.exitcode}"], target_path)
        except BaseException:
            receiver.close()  # a child still sending gets a broken pipe, not a hang
            _stop(child)
            raise
    child.join()
    return outcome


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
        Dagster events (outputs for models, check results for data tests). The selection comes
        from the context: ``args`` must not select."""
        from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
        from dagster_dbt.dagster_dbt_translator import DagsterDbtTranslator

        if SELECTION_FLAGS.intersection(args):
            raise ValueError(f"dbt args must not select nodes (Dagster selects): {list(args)}")
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
