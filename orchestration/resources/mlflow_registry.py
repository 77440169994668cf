"""MLflow tracking and model registry (SQLite backend, local artifacts by default).

The registry's ``champion`` alias is the served version; ``previous`` holds the champion it
replaced, so that ``rollback`` can restore it. Every promotion decision and rollback is
recorded as tags on the versions involved. Messages name the model and versions, never the
tracking URI (it may carry credentials).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from evaluation.gate import GateDecision
from evaluation.statistics import trial_sharpe_variance
from orchestration.project import CHAMPION_ALIAS, PREVIOUS_ALIAS

EXPERIMENT = "perpfolio"
TRIAL_SHARPE_METRIC = "oos_candidate_sharpe"
"""The run metric holding a trial's out-of-sample (annualized) Sharpe ratio."""


class RollbackError(RuntimeError):
    """The registry's aliases do not allow a rollback (the message says why)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MlflowRegistry(dg.ConfigurableResource):
    """Where runs are tracked and policies registered under ``model_name``."""

    tracking_uri: str
    """MLflow tracking and registry store (``sqlite:///...`` by default)."""
    artifact_root: str
    """Folder of the experiment's artifacts."""
    model_name: str
    """Registered model the policies are versions of."""
    ui_url: str = "http://127.0.0.1:5000"
    """Address of the MLflow UI (``make ui``), for links in Dagster metadata."""

    def activate(self) -> str:
        """Point MLflow at this store and return the experiment id."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(
            EXPERIMENT, artifact_location=Path(self.artifact_root).resolve().as_uri()
        )

    def client(self) -> mlflow.MlflowClient:
        self.activate()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def alias_version(self, alias: str) -> str | None:
        """The version number holding ``alias``, as a string; ``None`` only when the alias (or
        the registered model) does not exist. Any other registry error raises."""
        try:
            model = self.client().get_registered_model(self.model_name)
        except MlflowException as err:
            if err.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        version = model.aliases.get(alias)
        return None if version is None else str(version)

    def champion_version(self) -> str | None:
        """The version holding ``@champion``, or ``None`` when there is none (errors raise)."""
        return self.alias_version(CHAMPION_ALIAS)

    def previous_version(self) -> str | None:
        """The version holding ``@previous`` (the champion the current one replaced), or None."""
        return self.alias_version(PREVIOUS_ALIAS)

    def model_uri(self, version: str) -> str:
        return f"models:/{self.model_name}/{version}"

    def _set_tags(self, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, value)

    def record_decision(self, version: str, decision: GateDecision) -> None:
        """Tag ``version`` with the gate's decision: ``promotion_decision`` (promoted or
        refused), ``promotion_reasons`` and ``gate_thresholds`` (JSON), ``gate_override`` and
        ``decided_at``."""
        self._set_tags(
            version,
            {
                "promotion_decision": "promoted" if decision.promote else "refused",
                "promotion_reasons": json.dumps(decision.reasons),
                "gate_thresholds": json.dumps(decision.thresholds, sort_keys=True),
                "gate_override": decision.override or "none",
                "decided_at": _now(),
            },
        )

    def promote(self, version: str, decision: GateDecision) -> str | None:
        """Make ``version`` the champion and the champion it replaces ``@previous``; return
        the replaced version (``None`` if there was none).

        MLflow moves one alias per call. ``@previous`` moves first: if the second call fails,
        the registry is left with ``@champion`` unchanged (and ``@previous`` on it too, which
        ``rollback`` refuses), never with a new champion whose ``@previous`` is stale.
        """
        if not decision.promote:
            raise ValueError(f"v{version}: the gate refused it, it cannot be promoted")
        client = self.client()
        replaced = self.champion_version()
        if replaced is not None and replaced != version:
            client.set_registered_model_alias(self.model_name, PREVIOUS_ALIAS, replaced)
        client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)
        self.record_decision(version, decision)
        self._set_tags(version, {"promoted_at": _now(), "replaced_version": replaced or "none"})
        if self.champion_version() != version:
            raise RuntimeError(f"@{CHAMPION_ALIAS} of {self.model_name} moved during promotion")
        return replaced if replaced != version else None

    def install_day_one_champion(self, version: str) -> bool:
        """Give ``@champion`` to ``version`` (a registered baseline policy) if no version holds
        it; True when it did. A champion already there is never replaced this way."""
        if self.champion_version() is not None:
            return False
        self.client().set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)
        self._set_tags(version, {"promotion_decision": "day-one champion", "promoted_at": _now()})
        return True

    def baseline_versions(self) -> list[str]:
        """Versions registered as baseline policies (tag ``kind=baseline``), oldest first."""
        found = self.client().search_model_versions(
            f"name = '{self.model_name}' and tag.kind = 'baseline'"
        )
        return sorted((str(v.version) for v in found), key=int)

    def rollback(self, by: str, reason: str) -> tuple[str, str]:
        """Move ``@champion`` back to the ``@previous`` version and drop ``@previous`` (a second
        rollback has nothing to go back to); return ``(from_version, to_version)``.

        Both versions get tags with who, why and when: ``rolled_back_by``/``_reason``/``_at``/
        ``_to`` on the demoted one, ``restored_by``/``_reason``/``_at``/``_from`` on the other.
        """
        if not by.strip() or not reason.strip():
            raise ValueError("a rollback needs who (by) and why (reason)")
        current, previous = self.champion_version(), self.previous_version()
        if previous is None:
            champion = f"v{current}" if current is not None else "none"
            raise RollbackError(
                f"no version of {self.model_name} holds @{PREVIOUS_ALIAS}: nothing to roll back "
                f"to (@{CHAMPION_ALIAS} is {champion})"
            )
        if current is None:
            raise RollbackError(
                f"no version of {self.model_name} holds @{CHAMPION_ALIAS}: nothing to roll back"
            )
        if current == previous:
            raise RollbackError(
                f"@{CHAMPION_ALIAS} and @{PREVIOUS_ALIAS} of {self.model_name} both hold "
                f"v{current}: nothing to roll back to"
            )
        client = self.client()
        client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, previous)
        client.delete_registered_model_alias(self.model_name, PREVIOUS_ALIAS)
        at = _now()
        self._set_tags(
            current,
            {
                "rolled_back_by": by,
                "rolled_back_reason": reason,
                "rolled_back_at": at,
                "rolled_back_to": previous,
            },
        )
        self._set_tags(
            previous,
            {
                "restored_by": by,
                "restored_reason": reason,
                "restored_at": at,
                "restored_from": current,
            },
        )
        return current, previous

    def _trial_runs(self, venue: str, timeframe: str, symbols: Sequence[str]) -> list[Run]:
        """Source runs of the registered versions trained on ``venue``, ``timeframe`` and the
        set of ``symbols`` (the ``venue``, ``timeframe`` and ``symbols`` params training logs)."""
        client = self.client()
        runs: list[Run] = []
        token = None
        while True:
            page = client.search_model_versions(f"name = '{self.model_name}'", page_token=token)
            for version in page:
                if not version.run_id:
                    continue
                run = client.get_run(version.run_id)
                params = run.data.params
                if (
                    params.get("venue") == venue
                    and params.get("timeframe") == timeframe
                    and sorted(params.get("symbols", "").split(",")) == sorted(symbols)
                ):
                    runs.append(run)
            token = page.token
            if not token:
                return runs

    def count_trials(self, venue: str, timeframe: str, symbols: Sequence[str]) -> int:
        """Registered versions trained and evaluated on the same data (venue, timeframe and
        symbols), the candidate included: the deflated Sharpe's number of trials."""
        return len(self._trial_runs(venue, timeframe, symbols))

    def trial_sharpes(
        self, venue: str, timeframe: str, symbols: Sequence[str]
    ) -> tuple[int, float]:
        """``count_trials`` and the variance (ddof=1) of those trials' out-of-sample annualized
        Sharpe ratios (``oos_candidate_sharpe``; trials without a finite one are counted but
        left out of the variance, which is 0 with fewer than two)."""
        runs = self._trial_runs(venue, timeframe, symbols)
        sharpes = [run.data.metrics.get(TRIAL_SHARPE_METRIC, math.nan) for run in runs]
        return len(runs), trial_sharpe_variance(sharpes)
