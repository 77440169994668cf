"""The tear sheet writes small deterministic PNGs and an HTML page holding every metric."""

import base64
import io
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluation.engine import ScheduledWeights, backtest
from evaluation.metrics import compute_metrics, daily_returns
from evaluation.report import (
    MAX_INLINE_BYTES,
    PLOT_PIXELS,
    PLOTS,
    format_value,
    markdown_image,
    pnl_sources,
    rolling_sharpe,
    tear_sheet,
    underwater,
)
from evaluation.strategies import equal_weight, inverse_volatility, time_series_momentum
from tests.support.markets import make_synthetic_market
from training.env_config import EnvConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ledgers():
    """75 days of hourly bars: a momentum 'candidate', the two benchmarks and a carry."""
    market = make_synthetic_market(n_assets=4, n_bars=24 * 75, seed=4)
    momentum = time_series_momentum(market, lookback_bars=48)
    strategies = [
        ScheduledWeights("candidate", momentum.targets),
        equal_weight(market),
        inverse_volatility(market, lookback_bars=72),
        time_series_momentum(market, lookback_bars=24 * 7, name="slow_momentum"),
    ]
    return backtest(market, EnvConfig(window=8), None, strategies, first_bar=24 * 5)


def test_tear_sheet_writes_every_plot_as_a_small_png(ledgers, tmp_path):
    sheet = tear_sheet(ledgers, tmp_path / "a")
    assert list(sheet.images) == list(PLOTS)
    for name, path in sheet.images.items():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == PLOT_PIXELS == (800, 350), name
        assert 5_000 < len(data) < MAX_INLINE_BYTES, (name, len(data))
    assert sheet.html == tmp_path / "a" / "tear_sheet.html"


def test_tear_sheet_html_holds_every_strategy_metric_plot_and_fold(ledgers, tmp_path):
    folds = pd.DataFrame(
        {
            "fold": ["fold-0", "fold-1"],
            "test_bars": [300, 301],
            "candidate_sharpe": [0.123456, -2.5],
        }
    )
    sheet = tear_sheet(ledgers, tmp_path, fold_table=folds)
    page = sheet.html.read_text()
    assert "<th>candidate (candidate)</th>" in page
    assert "<th>equal_weight (benchmark)</th>" in page
    assert "<th>risk_parity (benchmark)</th>" in page
    assert "<th>slow_momentum</th>" in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
    for name, row in zip(
        ["candidate", "equal_weight", "risk_parity", "slow_momentum"], rows, strict=True
    ):
        metrics = compute_metrics(ledgers[name]).as_dict()
        cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
        expected = [format_value(v) for k, v in metrics.items() if not k.startswith("ror_by_")]
        assert cells == expected, name
    assert format_value(metrics["sharpe"]) in page
    # plots embedded as the very PNG files, the fold table with its values
    for path in sheet.images.values():
        assert base64.b64encode(path.read_bytes()).decode() in page
    assert "<td>fold-1</td>" in page and "<td>0.1235</td>" in page and "<td>-2.5000</td>" in page
    assert "<td>301</td>" in page


def test_tear_sheet_is_deterministic_and_takes_given_metrics(ledgers, tmp_path):
    first = tear_sheet(ledgers, tmp_path / "one")
    second = tear_sheet(ledgers, tmp_path / "two")
    assert first.html.read_bytes() == second.html.read_bytes()
    for name in PLOTS:
        assert first.images[name].read_bytes() == second.images[name].read_bytes()
    given = {"candidate": {"sharpe": 1.23456, "n_bars": 7}, "equal_weight": {"sharpe": math.nan}}
    page = tear_sheet(ledgers, tmp_path / "three", metrics=given).html.read_text()
    assert "<td>1.2346</td><td>7</td>" in page
    assert "<td>NaN</td><td>NaN</td>" in page
    with pytest.raises(ValueError, match="no ledger named 'champion'"):
        tear_sheet(ledgers, tmp_path, candidate="champion")


def test_markdown_image_inlines_the_png(ledgers, tmp_path):
    path = tear_sheet(ledgers, tmp_path).images["equity"]
    text = markdown_image(path)
    prefix = "![equity](data:image/png;base64,"
    assert text.startswith(prefix) and text.endswith(")")
    assert base64.b64decode(text[len(prefix) : -1]) == path.read_bytes()
    big = tmp_path / "big.png"
    big.write_bytes(PNG_SIGNATURE + bytes(MAX_INLINE_BYTES))
    with pytest.raises(ValueError, match=f"{MAX_INLINE_BYTES + 8} bytes, more than"):
        markdown_image(big)


def test_plotted_series_numbers(ledgers):
    ledger = ledgers["candidate"]
    equity = ledger.equity
    drawdown = underwater(ledger).to_numpy()
    np.testing.assert_allclose(drawdown, equity / np.maximum.accumulate(equity) - 1.0)
    assert drawdown.min() == pytest.approx(-compute_metrics(ledger).max_drawdown, rel=1e-12)

    sharpe = rolling_sharpe(ledger)
    daily = daily_returns(ledger).to_numpy()
    assert np.isnan(sharpe.iloc[:29]).all() and len(sharpe) == len(daily) >= 60
    window = daily[30:60]
    expected = window.mean() / window.std(ddof=1) * np.sqrt(365)
    assert sharpe.iloc[59] == pytest.approx(expected, rel=1e-12)

    sources = pnl_sources(ledger)
    assert sources["fees"] == pytest.approx(-ledger.fees.sum()) and sources["fees"] < 0
    assert sources["slippage"] == pytest.approx(-ledger.slippage.sum())
    assert sources["funding"] == pytest.approx(ledger.funding.sum())
    assert sources["total"] == pytest.approx(equity[-1] - equity[0])
    assert sum(v for k, v in sources.items() if k != "total") == pytest.approx(sources["total"])
    assert ledger.asset_pnl.sum() == pytest.approx(sources["total"], rel=1e-9)
