"""Find missing bars: recorded in ``raw.data_gaps``, never silently filled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingestion.frames import empty_frame
from ingestion.universe import timeframe_delta
from ingestion.warehouse import DATA_GAPS

SERIES = ["venue", "market", "symbol", "timeframe"]


def find_gaps(
    bars: pd.DataFrame,
    source: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Gaps in each (venue, market, symbol, timeframe) series of ``bars``.

    A gap is a run of missing bar-open times between two present bars; with ``start``/``end``
    (the requested window [start, end)), missing bars at either edge count too. Returns rows of
    ``raw.data_gaps`` (without ``ingested_at``).
    """
    if bars.empty:
        return empty_frame(DATA_GAPS)
    rows = []
    for (venue, market, symbol, timeframe), series in bars.groupby(SERIES, sort=True):
        step = timeframe_delta(timeframe)
        ts = np.sort(series["ts"].to_numpy(dtype="datetime64[ns]"))
        if start is not None:
            ts = np.concatenate([[np.datetime64(pd.Timestamp(start) - step, "ns")], ts])
        if end is not None:
            ts = np.concatenate([ts, [np.datetime64(pd.Timestamp(end), "ns")]])
        diffs = np.diff(ts)
        for i in np.flatnonzero(diffs > step.to_timedelta64()):
            missing = int(diffs[i] // step.to_timedelta64()) - 1
            if missing <= 0:
                continue
            first = pd.Timestamp(ts[i]) + step
            rows.append(
                (venue, market, symbol, timeframe, first, first + (missing - 1) * step, missing)
            )
    frame = pd.DataFrame(
        rows,
        columns=[*SERIES, "gap_start", "gap_end", "missing_bars"],
    )
    frame["source"] = source
    if frame.empty:
        return empty_frame(DATA_GAPS)
    frame["missing_bars"] = frame["missing_bars"].astype(np.int32)
    return frame
