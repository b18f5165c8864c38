"""The incident chart is a real PNG drawn from the chart data."""

from __future__ import annotations

import io

import pytest
from matplotlib.image import imread

from alerts.chart import render_chart
from alerts.model import AlertDataError, ChartData
from tests.alerts.factories import chart


def test_chart_is_a_png_of_the_requested_size() -> None:
    png = render_chart(chart(), title="reports in EU $5 <b>", width=6.0, height=2.5, dpi=50)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = imread(io.BytesIO(png))
    assert pixels.shape[:2] == (125, 300)


def test_anomalous_points_are_drawn_in_red() -> None:
    def red_pixels(data: ChartData) -> int:
        pixels = imread(io.BytesIO(render_chart(data, dpi=40)))
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return int(((r > 0.75) & (g < 0.35) & (b < 0.35)).sum())

    flagged = chart()
    quiet = ChartData(
        flagged.timestamps, flagged.observed, flagged.expected, flagged.lower, flagged.upper,
        tuple(False for _ in flagged.anomalous),
    )  # fmt: skip
    assert red_pixels(flagged) > 20 * max(1, red_pixels(quiet))


def test_empty_chart_is_rejected() -> None:
    with pytest.raises(AlertDataError, match="no points"):
        render_chart(ChartData((), (), (), (), (), ()), title="reports")
