"""The frames every source produces: one per raw table, with the raw tables' columns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pandas as pd

from ingestion.warehouse import (
    DATA_GAPS,
    FUNDING_RATES,
    OHLCV,
    OPEN_INTEREST,
    ORDER_BOOK_SNAPSHOTS,
    RawTable,
)

_TABLE_OF = {
    "ohlcv": OHLCV,
    "funding_rates": FUNDING_RATES,
    "open_interest": OPEN_INTEREST,
    "order_book_snapshots": ORDER_BOOK_SNAPSHOTS,
    "data_gaps": DATA_GAPS,
}


def empty_frame(table: RawTable) -> pd.DataFrame:
    """A frame with ``table``'s frame columns and no rows."""
    return pd.DataFrame({c: [] for c in table.frame_columns})


@dataclass(frozen=True)
class MarketFrames:
    """Raw-table frames: bars (perp, spot, mark, index), funding, OI, books and gaps."""

    ohlcv: pd.DataFrame
    funding_rates: pd.DataFrame
    open_interest: pd.DataFrame = field(default_factory=lambda: empty_frame(OPEN_INTEREST))
    order_book_snapshots: pd.DataFrame = field(
        default_factory=lambda: empty_frame(ORDER_BOOK_SNAPSHOTS)
    )
    data_gaps: pd.DataFrame = field(default_factory=lambda: empty_frame(DATA_GAPS))

    def tables(self) -> dict[RawTable, pd.DataFrame]:
        """Frame per raw table, in write order."""
        return {_TABLE_OF[f.name]: getattr(self, f.name) for f in fields(self)}

    def window(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> MarketFrames:
        """Rows whose time (``ts``, or ``gap_start`` for gaps) lies in [start, end)."""

        def cut(frame: pd.DataFrame, col: str) -> pd.DataFrame:
            if frame.empty:
                return frame
            keep = pd.Series(True, index=frame.index)
            if start is not None:
                keep &= frame[col] >= start
            if end is not None:
                keep &= frame[col] < end
            return frame[keep].reset_index(drop=True)

        return MarketFrames(
            **{
                f.name: cut(getattr(self, f.name), "gap_start" if f.name == "data_gaps" else "ts")
                for f in fields(self)
            }
        )

    @staticmethod
    def concat(parts: list[MarketFrames]) -> MarketFrames:
        """Row-wise union of several frame sets."""
        if not parts:
            return MarketFrames(ohlcv=empty_frame(OHLCV), funding_rates=empty_frame(FUNDING_RATES))
        out = {}
        for f in fields(MarketFrames):
            frames = [getattr(p, f.name) for p in parts if not getattr(p, f.name).empty]
            table = _TABLE_OF[f.name]
            out[f.name] = pd.concat(frames, ignore_index=True) if frames else empty_frame(table)
        return MarketFrames(**out)
