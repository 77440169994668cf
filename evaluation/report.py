"""Tear sheets of a backtest: PNG plots and one self-contained HTML page, from Ledgers.

The plots are drawn on matplotlib's Agg canvas (no pyplot, no global backend), ``PLOT_SIZE``
inches at ``DPI``: ``PLOT_PIXELS`` each. Output is deterministic: the same ledgers give the same
bytes (no timestamps, no software tag in the PNGs; the HTML has no generation time).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation.ledger import Ledger
from evaluation.metrics import ROR_BY_SYMBOL_PREFIX, compute_metrics, daily_returns
from evaluation.statistics import DAYS_PER_YEAR
from evaluation.strategies import BENCHMARKS

DPI = 100
"""Dots per inch of every PNG."""
PLOT_SIZE = (8.0, 3.5)
"""Inches (width, height) of every plot."""
PLOT_PIXELS = (round(PLOT_SIZE[0] * DPI), round(PLOT_SIZE[1] * DPI))
"""Pixels (width, height) of every PNG: 800 x 350."""
ROLLING_SHARPE_DAYS = 30
"""Daily returns in each rolling Sharpe ratio (annualized with ``sqrt(365)``)."""
MAX_INLINE_BYTES = 200_000
"""Largest PNG ``markdown_image`` inlines (Dagster metadata stays small)."""
PLOTS = ("equity", "drawdown", "rolling_sharpe", "weights", "attribution")
"""The tear sheet's plots, in page order; each is ``<out_dir>/<name>.png``."""
_HEATMAP_COLUMNS = 400  # time buckets of the weights heatmap (keeps the PNG small)
_CANDIDATE_COLOR = "black"


@dataclass(frozen=True)
class TearSheet:
    """Files of one tear sheet."""

    html: Path
    """The self-contained HTML page (plots embedded as base64)."""
    images: dict[str, Path]
    """PNG path of each plot in ``PLOTS``."""


def tear_sheet(
    ledgers: Mapping[str, Ledger],
    out_dir: Path,
    *,
    candidate: str = "candidate",
    benchmarks: Sequence[str] = BENCHMARKS,
    fold_table: pd.DataFrame | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> TearSheet:
    """Write the plots and ``tear_sheet.html`` of ``ledgers`` into ``out_dir``.

    Plots: equity (growth of 1) of the candidate against every other strategy, drawdown,
    rolling ``ROLLING_SHARPE_DAYS``-day Sharpe of daily returns, a heatmap of the candidate's
    weights (symbols x time) and its PnL attribution by asset and by source (price, funding,
    fees, slippage). Strategies named in ``benchmarks`` are labelled "benchmark". The page has
    a metrics table with one row per strategy (``metrics``, default ``compute_metrics(ledger)
    .as_dict()``; per-symbol RORs left out, the attribution plot shows them), the plots and
    ``fold_table``. Raises ``ValueError`` if ``candidate`` is not in ``ledgers``.
    """
    if candidate not in ledgers:
        raise ValueError(f"tear sheet: no ledger named {candidate!r} among {list(ledgers)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = [candidate, *(name for name in ledgers if name != candidate)]
    labels = {name: _label(name, candidate, benchmarks) for name in order}
    lead = ledgers[candidate]
    painters = {
        "equity": lambda fig: _equity(fig, ledgers, order, labels),
        "drawdown": lambda fig: _drawdown(fig, ledgers, order, labels),
        "rolling_sharpe": lambda fig: _rolling_sharpe(fig, ledgers, order, labels),
        "weights": lambda fig: _weights(fig, lead),
        "attribution": lambda fig: _attribution(fig, lead),
    }
    images = {}
    for name in PLOTS:
        fig = Figure(figsize=PLOT_SIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        painters[name](fig)
        path = out_dir / f"{name}.png"
        fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
        images[name] = path
    if metrics is None:
        metrics = {name: compute_metrics(ledgers[name]).as_dict() for name in order}
    page = _page(lead, order, labels, metrics, images, fold_table)
    html_path = out_dir / "tear_sheet.html"
    html_path.write_text(page, encoding="utf-8")
    return TearSheet(html=html_path, images=images)


def markdown_image(png_path: Path, alt: str | None = None) -> str:
    """The PNG as a markdown image with an inline base64 data URI (for Dagster metadata).

    Raises ``ValueError`` when the file is larger than ``MAX_INLINE_BYTES``.
    """
    data = Path(png_path).read_bytes()
    if len(data) > MAX_INLINE_BYTES:
        raise ValueError(
            f"{png_path}: {len(data)} bytes, more than the {MAX_INLINE_BYTES} inlined in metadata"
        )
    return f"![{alt or Path(png_path).stem}]({_data_uri(data)})"


def format_value(value: object) -> str:
    """A metric as the tear sheet prints it: floats with 4 decimals, ``NaN``, ints and bools."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "NaN" if math.isnan(value) else f"{float(value):.4f}"
    return html.escape(str(value))


def _label(name: str, candidate: str, benchmarks: Sequence[str]) -> str:
    if name == candidate:
        return f"{name} (candidate)"
    return f"{name} (benchmark)" if name in benchmarks else name


def _style(name: str, order: list[str]) -> dict[str, Any]:
    """Line style: the candidate thick and black, the others thin in the default cycle."""
    if name == order[0]:
        return {"color": _CANDIDATE_COLOR, "linewidth": 1.8, "zorder": 3}
    return {"color": f"C{order.index(name) - 1}", "linewidth": 1.0, "alpha": 0.9}


def _equity(
    fig: Figure, ledgers: Mapping[str, Ledger], order: list[str], labels: dict[str, str]
) -> None:
    ax = fig.subplots()
    for name in order:
        series = ledgers[name].equity_series()
        ax.plot(series.index, series / series.iloc[0], label=labels[name], **_style(name, order))
    ax.set_title("Equity (growth of 1)")
    _finish(ax)


def underwater(ledger: Ledger) -> pd.Series:
    """Drawdown at each equity point: ``equity / running peak - 1`` (<= 0)."""
    series = ledger.equity_series()
    return series / series.cummax() - 1.0


def rolling_sharpe(ledger: Ledger, days: int = ROLLING_SHARPE_DAYS) -> pd.Series:
    """Sharpe of the last ``days`` daily returns at each day: ``mean / std(ddof=1) *
    sqrt(365)``; NaN before ``days`` returns."""
    rolling = daily_returns(ledger).rolling(days, min_periods=days)
    return rolling.mean() / rolling.std(ddof=1) * math.sqrt(DAYS_PER_YEAR)


def pnl_sources(ledger: Ledger) -> dict[str, float]:
    """The equity change split by source (quote currency): ``price`` (price PnL, with any
    liquidation loss), ``funding`` (received > 0), ``fees`` and ``slippage`` (<= 0), ``total``."""
    total = float(ledger.equity[-1] - ledger.equity[0])
    funding = float(np.sum(ledger.funding))
    fees = -float(np.sum(ledger.fees))
    slippage = -float(np.sum(ledger.slippage))
    return {
        "price": total - funding - fees - slippage,
        "funding": funding,
        "fees": fees,
        "slippage": slippage,
        "total": total,
    }


def _drawdown(
    fig: Figure, ledgers: Mapping[str, Ledger], order: list[str], labels: dict[str, str]
) -> None:
    ax = fig.subplots()
    lead = underwater(ledgers[order[0]])
    ax.fill_between(lead.index, lead, 0.0, color="0.85", zorder=0)
    for name in order:
        series = underwater(ledgers[name])
        ax.plot(series.index, series, label=labels[name], **_style(name, order))
    ax.set_title("Drawdown (underwater, fraction of the peak)")
    _finish(ax)


def _rolling_sharpe(
    fig: Figure, ledgers: Mapping[str, Ledger], order: list[str], labels: dict[str, str]
) -> None:
    ax = fig.subplots()
    for name in order:
        sharpe = rolling_sharpe(ledgers[name])
        ax.plot(sharpe.index, sharpe, label=labels[name], **_style(name, order))
    ax.axhline(0.0, color="0.5", linewidth=0.6)
    ax.set_title(f"Rolling Sharpe ({ROLLING_SHARPE_DAYS} daily returns, annualized with sqrt(365))")
    _finish(ax)


def _weights(fig: Figure, ledger: Ledger) -> None:
    ax = fig.subplots()
    weights = np.asarray(ledger.weights, dtype=float)
    buckets = np.array_split(np.arange(ledger.n_bars), min(_HEATMAP_COLUMNS, ledger.n_bars))
    grid = np.stack([weights[b].mean(axis=0) for b in buckets], axis=1)
    bound = max(float(np.nanmax(np.abs(grid))), 1e-9)
    first = float(pd.Timestamp(ledger.start_time).value)
    last = float(pd.Timestamp(ledger.close_times[-1]).value)
    image = ax.imshow(
        grid,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu",
        vmin=-bound,
        vmax=bound,
        extent=(first, last, len(ledger.symbols) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(ledger.symbols)), ledger.symbols, fontsize=7)
    ticks = np.linspace(first, last, 5)
    ax.set_xticks(ticks, [pd.Timestamp(int(t)).strftime("%Y-%m-%d") for t in ticks], fontsize=8)
    fig.colorbar(image, ax=ax, label="weight")
    ax.set_title(f"{ledger.name}: weights over time (signed notional / equity)")


def _attribution(fig: Figure, ledger: Ledger) -> None:
    by_asset, by_source = fig.subplots(1, 2, width_ratios=(3, 2))
    pnl = np.asarray(ledger.asset_pnl, dtype=float).sum(axis=0)
    colors = ["tab:green" if v >= 0 else "tab:red" for v in pnl]
    by_asset.bar(range(len(pnl)), pnl, color=colors)
    by_asset.set_xticks(range(len(pnl)), ledger.symbols, rotation=60, fontsize=7)
    by_asset.set_title("PnL by asset (quote)", fontsize=10)
    sources = pnl_sources(ledger)
    colors = ["tab:green" if v >= 0 else "tab:red" for v in sources.values()]
    by_source.bar(range(len(sources)), list(sources.values()), color=colors)
    by_source.set_xticks(range(len(sources)), list(sources), rotation=30, fontsize=8)
    by_source.set_title("PnL by source (quote)", fontsize=10)
    for ax in (by_asset, by_source):
        ax.axhline(0.0, color="0.3", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)


def _finish(ax: Axes) -> None:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2, loc="best")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _page(
    lead: Ledger,
    order: list[str],
    labels: dict[str, str],
    metrics: Mapping[str, Mapping[str, float]],
    images: dict[str, Path],
    fold_table: pd.DataFrame | None,
) -> str:
    esc = html.escape
    rows = [name for name in order if name in metrics] + [m for m in metrics if m not in order]
    keys: list[str] = []
    for name in rows:
        keys += [
            k for k in metrics[name] if k not in keys and not k.startswith(ROR_BY_SYMBOL_PREFIX)
        ]
    head = "".join(f"<th>{esc(k)}</th>" for k in ["strategy", *keys])
    body = "".join(
        "<tr>"
        + f"<th>{esc(labels.get(name, name))}</th>"
        + "".join(f"<td>{format_value(metrics[name].get(k, float('nan')))}</td>" for k in keys)
        + "</tr>"
        for name in rows
    )
    period = (
        f"{_iso(lead.start_time)} to {_iso(lead.close_times[-1])} UTC, {lead.n_bars} bars of "
        f"{lead.bar_hours:g}h, {len(lead.symbols)} symbols"
    )
    plots = "".join(
        f"<h2>{esc(name.replace('_', ' ').capitalize())}</h2>"
        f'<img alt="{esc(name)}" src="{_data_uri(path.read_bytes())}">'
        for name, path in images.items()
    )
    folds = ""
    if fold_table is not None:
        table = fold_table.to_html(
            index=False, na_rep="NaN", float_format=lambda v: format_value(float(v)), border=0
        )
        folds = f"<h2>Folds</h2>{table}"
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}"
        "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "img{display:block;max-width:100%}"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html><head><meta charset="utf-8"><title>Tear sheet: {esc(lead.name)}</title>'
        f"<style>{style}</style></head><body>"
        f"<h1>Tear sheet: {esc(lead.name)}</h1><p>{esc(period)}</p>"
        f"<h2>Metrics</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"{plots}{folds}</body></html>\n"
    )


def _iso(timestamp: np.datetime64) -> str:
    return pd.Timestamp(timestamp).strftime("%Y-%m-%d %H:%M")
