"""What a trained policy came from: hashes of its training rows and inputs, the code's commit."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np

from training.market import MarketData

ROOT = Path(__file__).resolve().parents[1]


def market_hash(market: MarketData) -> str:
    """SHA-256 of the rows a policy trains on: timestamps, symbols, every price, volume, funding
    and basis column, and the features (the bytes numpy holds, so equal data hash equally)."""
    digest = hashlib.sha256()
    digest.update("\0".join(market.symbols).encode())
    digest.update("\0".join(market.feature_names).encode())
    arrays = (
        market.timestamps.astype("datetime64[ns]").astype(np.int64),
        market.open,
        market.high,
        market.low,
        market.close,
        market.mark,
        market.volume,
        market.funding_rate,
        market.hours_to_funding,
        market.basis,
        market.features,
    )
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_hash(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes; None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_commit(root: Path = ROOT) -> str:
    """The checkout's commit, with ``-dirty`` when tracked files differ from it; ``unknown``
    outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if status else commit
