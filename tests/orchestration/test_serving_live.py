"""Live serving from Dagster stays off without both opt-ins: the cycle fails before it loads a
model or reaches any exchange, naming what is missing."""

import dagster as dg
import pytest

from orchestration.assets.serving import serving_cycle
from orchestration.resources import build_resources
from orchestration.resources.settings import ServingSettings
from serving.live import LIVE_ENV


@pytest.mark.parametrize("flag", [None, "0"])
def test_live_serving_without_the_environment_opt_in_fails_naming_it(
    project_home, monkeypatch, flag
):
    if flag is None:
        monkeypatch.delenv(LIVE_ENV, raising=False)
    else:
        monkeypatch.setenv(LIVE_ENV, flag)
    resources = {**build_resources("test"), "serving": ServingSettings(live=True)}
    result = dg.materialize([serving_cycle], resources=resources, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.event_specific_data.error.message
    assert "live trading is configured but off" in message and LIVE_ENV in message


def test_paper_is_the_default():
    assert ServingSettings().live is False and ServingSettings().account_id == "paper"
