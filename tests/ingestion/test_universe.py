"""The timeframe table has one owner (``ingestion.universe``); dbt's copies must agree with it."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ingestion.universe import MART_TIMEFRAMES, TIMEFRAMES, timeframe, timeframe_delta

DBT = Path(__file__).resolve().parents[2] / "dbt_project"


def test_dbt_macro_lists_the_same_timeframes():
    macro = (DBT / "macros" / "timeframes.sql").read_text()
    table = re.search(r"return\((\{.*?\})\)", macro).group(1)
    assert json.loads(table) == {name: tf.minutes for name, tf in TIMEFRAMES.items()}


def test_dbt_mart_timeframes_var_matches():
    config = yaml.safe_load((DBT / "dbt_project.yml").read_text())
    assert tuple(config["vars"]["timeframes"]) == MART_TIMEFRAMES
    assert set(MART_TIMEFRAMES) <= set(TIMEFRAMES)


def test_timeframe_units():
    tf = timeframe("10m")
    assert (tf.minutes, tf.milliseconds, tf.hours) == (10, 600_000, pytest.approx(1 / 6))
    assert timeframe_delta("1d") == pd.Timedelta(days=1)
    with pytest.raises(ValueError, match="unsupported timeframe '4h'"):
        timeframe("4h")
