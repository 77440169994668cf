"""The DuckDB warehouse file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from ingestion.warehouse import LOCK_WAIT_SECONDS, connect_warehouse


class DuckDBWarehouse(dg.ConfigurableResource):
    """A DuckDB database file holding the raw, staging, marts and serving schemas.

    Opening waits up to ``lock_wait_seconds`` while another process holds the file, then fails
    with ``WarehouseLockedError`` naming that process.
    """

    path: str
    lock_wait_seconds: float = LOCK_WAIT_SECONDS

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = connect_warehouse(self.path, read_only=read_only, wait_seconds=self.lock_wait_seconds)
        try:
            yield con
        finally:
            con.close()
