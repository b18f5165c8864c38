"""PNG chart of an anomaly: observed line, forecast with its band, anomalous points.

``render_chart(chart, *, title="", width=8.0, height=3.2, dpi=100) -> bytes``
    Uses Matplotlib's object API with the Agg canvas (no pyplot global state, no display, thread-safe).
    Returns the PNG bytes; raises :class:`~alerts.model.AlertDataError` for an empty series.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from alerts.model import AlertDataError, ChartData

__all__ = ["render_chart"]


def render_chart(
    chart: ChartData, *, title: str = "", width: float = 8.0, height: float = 3.2, dpi: int = 100
) -> bytes:
    """Draw ``chart`` and return PNG bytes (see the module docstring)."""
    if not chart.timestamps:
        raise AlertDataError(f"cannot draw chart {title!r}: it has no points")
    # Matplotlib converts aware datetimes to UTC; strip tzinfo only for its date axis.
    times = date2num([t.replace(tzinfo=None) for t in chart.timestamps])
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.fill_between(times, chart.lower, chart.upper, color="#9ecae1", alpha=0.45, label="expected range")
    axes.plot(times, chart.expected, color="#3182bd", linestyle="--", linewidth=1.2, label="forecast")
    axes.plot(times, chart.observed, color="#252525", linewidth=1.4, label="observed")
    flagged = [(float(t), y) for t, y, a in zip(times, chart.observed, chart.anomalous, strict=True) if a]
    if flagged:
        xs, ys = zip(*flagged, strict=True)
        axes.scatter(xs, ys, color="#de2d26", s=28, zorder=3, label="anomalous")
    axes.xaxis_date()
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_xlabel("UTC")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", frameon=False)
    if title:
        # "$" would start Matplotlib mathtext; data-derived titles are shown literally.
        axes.set_title(title.replace("$", r"\$"), fontsize="medium")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
