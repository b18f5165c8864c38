"""How investigations and backtests are shown: rich tables, PNG charts, one self-contained HTML page, JSON.

* :func:`print_investigation` / :func:`print_backtest`: rich tables on a :class:`rich.console.Console`.
* :func:`investigation_png`: observed line, forecast band, anomalous buckets, changepoints (dotted lines),
  the investigated window (shaded) and annotated events (incidents, silences, maintenance windows), drawn
  with Matplotlib's object API on the Agg canvas (no pyplot state, no display).
* :func:`investigation_html`: one HTML file with the same content and an interactive chart: an inline SVG
  written here with a few lines of inline JavaScript (hover read-out of every bucket). No CDN, no external
  file: it opens offline.
* :func:`backtest_png`: the tradeoff curve (recall and precision against alerts per week, one point per
  threshold, the recommendation marked).
* JSON: :meth:`~monitor.tools.investigate.Investigation.to_dict` and
  :meth:`~monitor.tools.backtest.Backtest.to_dict`;
  :func:`to_json` serialises either.
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from alerts.model import kind_word
from detectors.postrules import FLAGGED
from monitor.tools.backtest import Backtest, Score
from monitor.tools.investigate import Investigation

__all__ = [
    "backtest_png",
    "investigation_html",
    "investigation_png",
    "print_backtest",
    "print_investigation",
    "to_json",
]

#: Buckets of the window listed in the terminal (the chart and JSON have all of them).
MAX_TABLE_ROWS = 24
_EVENT_COLOURS = {"incident": "#e6550d", "silence": "#756bb1", "window": "#31a354"}


def to_json(payload: Investigation | Backtest) -> str:
    """Indented JSON of an investigation or a backtest."""
    return json.dumps(payload.to_dict(), indent=2, sort_keys=False)


# -- investigation: terminal --------------------------------------------------------------------------------
def print_investigation(inv: Investigation, console: Console) -> None:
    """Every section of ``inv`` as rich tables (see :mod:`monitor.tools.investigate` for their meaning)."""
    summary = inv.summary()
    unit = f" {inv.unit}" if inv.unit else ""
    verdict = (
        f"[bold red]{kind_word(inv.kind)}[/] ({inv.flagged} of {int(summary['buckets'])} buckets flagged)"
        if inv.flagged
        else "[green]no anomaly flagged[/]"
    )
    console.print(
        f"[bold]{inv.metric}[/] in [bold]{inv.region}[/], {_t(inv.start)} to {_t(inv.end)} UTC: {verdict}"
    )
    console.print(
        f"observed {_num(summary['observed'])}{unit} vs expected {_num(summary['expected'])}{unit} "
        f"({_signed_pct(summary['change_pct'])}), peak score {_num(summary['peak_score'], signed=True)} "
        f"sigma (threshold {inv.threshold:g}, direction {inv.direction}); model: {inv.model}"
    )
    window = inv.window
    table = Table(title="Observed vs expected over the window", title_justify="left")
    for column in ("bucket start (UTC)", "observed", "expected", "band", "score", "flag / reason"):
        table.add_column(column, justify="left" if column.startswith(("bucket", "flag")) else "right")
    rows = window if len(window) <= MAX_TABLE_ROWS else window.iloc[:MAX_TABLE_ROWS]
    for ts, row in rows.iterrows():
        flag = (
            Text(_flag_text(row), style="bold red") if row["flag"] else Text(str(row["reason"]), style="dim")
        )
        table.add_row(
            _t(ts),
            _num(row["observed"]),
            _num(row["expected"]),
            f"{_num(row['lower'])} .. {_num(row['upper'])}",
            _num(row["score"], signed=True),
            flag,
        )
    if len(window) > len(rows):
        table.caption = f"first {len(rows)} of {len(window)} buckets; --json or --html for all"
    console.print(table)

    detectors = Table(title="Detectors", title_justify="left")
    for column in ("detector", "peak score", "flagged buckets", "fired"):
        detectors.add_column(column, justify="left" if column in ("detector", "fired") else "right")
    for verdict_row in inv.detectors:
        detectors.add_row(
            verdict_row.name,
            _num(verdict_row.peak_score, signed=True),
            str(verdict_row.flagged),
            Text("yes", style="bold red") if verdict_row.fired else Text("no", style="green"),
        )
    console.print(detectors)

    changepoints = ", ".join(_t(t) for t in inv.changepoints) or "none"
    console.print(f"[bold]Changepoints[/] in the residual since {_t(inv.scores.index[0])}: {changepoints}")

    causes = Table(title="Root causes (ranked)", title_justify="left")
    ratio = inv.metric_kind == "ratio"
    columns = ["#", "segment", "observed", "expected", "deviation share", "surprise"]
    columns += ["mix", "rate"] if ratio else []
    for column in columns:
        causes.add_column(column, justify="left" if column in ("#", "segment") else "right")
    for cause in inv.root_causes:
        cells = [
            str(cause.rank),
            cause.label(),
            _num(cause.actual),
            _num(cause.expected),
            _pct(cause.deviation_share),
            f"{cause.surprise:.3f}",
        ]
        if ratio:
            cells += [_pct(cause.mix_share), _pct(cause.rate_share)]
        causes.add_row(*cells)
    if not inv.root_causes:
        causes.caption = "no segment stands out"
    console.print(causes)

    related = Table(title=f"Other metrics in {inv.region} over the same window", title_justify="left")
    for column in ("metric", "anomalous", "peak score", "observed", "expected", "model"):
        related.add_column(column, justify="left" if column in ("metric", "anomalous", "model") else "right")
    for other in inv.related:
        related.add_row(
            other.metric,
            Text(f"yes ({other.flagged})", style="bold red")
            if other.anomalous
            else Text("no", style="green"),
            _num(other.peak_score, signed=True),
            _num(other.observed),
            _num(other.expected),
            other.error or other.model,
        )
    if inv.related:
        console.print(related)

    if inv.covers:
        # one line per cover, not a table: an id is what people copy into `incidents show`, so it is never cut
        console.print("[bold]Already covered by[/]")
        for cover in inv.covers:
            until = _t(cover.end) if cover.end else "-"
            console.print(
                Text(f"  {cover.kind} {cover.id} ({cover.state}, {_t(cover.start)} to {until}): "),
                Text(cover.description),
                sep="",
            )
    else:
        console.print("[bold]Covers[/]: no incident, silence or maintenance window covers this window")
    for problem in inv.problems:
        console.print(f"[yellow]data: {problem}[/]")


# -- investigation: PNG --------------------------------------------------------------------------------------
def investigation_png(
    inv: Investigation, *, width: float = 10.0, height: float = 4.2, dpi: int = 100
) -> bytes:
    """The investigation chart as PNG bytes (see the module docstring)."""
    # matplotlib is imported here, not at module level: the terminal path of `investigate` never needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    frame = inv.scores
    times = date2num([t.tz_convert("UTC").tz_localize(None).to_pydatetime() for t in frame.index])
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    lower, upper = frame["lower"].to_numpy(dtype=float), frame["upper"].to_numpy(dtype=float)
    axes.fill_between(times, lower, upper, color="#9ecae1", alpha=0.45, label="expected range")
    axes.plot(
        times,
        frame["expected"].to_numpy(dtype=float),
        color="#3182bd",
        linestyle="--",
        linewidth=1.1,
        label="forecast",
    )
    axes.plot(
        times, frame["observed"].to_numpy(dtype=float), color="#252525", linewidth=1.3, label="observed"
    )
    flagged = frame["flag"].to_numpy(dtype=bool)
    if flagged.any():
        axes.scatter(
            times[flagged],
            frame["observed"].to_numpy(dtype=float)[flagged],
            color="#de2d26",
            s=26,
            zorder=3,
            label="anomalous",
        )
    axes.axvspan(_num_time(inv.start), _num_time(inv.end), color="#fdae6b", alpha=0.18, label="window")
    for position, moment in enumerate(inv.changepoints):
        axes.axvline(
            _num_time(moment),
            color="#636363",
            linestyle=":",
            linewidth=1.2,
            label="changepoint" if position == 0 else None,
        )
    top = float(np.nanmax(np.concatenate([upper, frame["observed"].to_numpy(dtype=float)])))
    left, right = times[0], times[-1]
    for position, cover in enumerate(inv.covers):
        start = max(_num_time(cover.start), left)
        end = min(_num_time(cover.end), right) if cover.end else right
        if end <= start:
            continue
        colour = _EVENT_COLOURS.get(cover.kind, "#969696")
        axes.axvspan(start, end, ymin=0.0, ymax=0.04, color=colour, alpha=0.9)
        axes.annotate(
            f"{cover.kind}: {cover.id}".replace("$", r"\$"),
            xy=(start, top),
            xytext=(2, -12 * (position + 1)),
            textcoords="offset points",
            fontsize="x-small",
            color=colour,
        )
    axes.xaxis_date()
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_xlabel("UTC")
    axes.set_ylabel(inv.unit or inv.metric)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="x-small", frameon=False, ncol=3)
    title = f"{inv.metric} in {inv.region}: {kind_word(inv.kind) if inv.flagged else 'no anomaly'}"
    if inv.root_causes and inv.flagged:
        title += f" (top cause {inv.root_causes[0].label()})"
    axes.set_title(title.replace("$", r"\$"), fontsize="medium")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- investigation: HTML ------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px;margin-bottom:4px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
th,td{border-bottom:1px solid #ddd;padding:3px 10px;text-align:right}
th:first-child,td:first-child,td.l,th.l{text-align:left}
.flag{color:#c0392b;font-weight:600} .dim{color:#888} .ok{color:#2e7d32}
#chart{position:relative} #tip{position:absolute;pointer-events:none;background:#fff;border:1px solid #999;
padding:4px 8px;font-size:12px;display:none;white-space:nowrap;box-shadow:0 1px 3px rgba(0,0,0,.2)}
svg text{font-size:11px;fill:#444}
"""

_JS = """
(function(){
  var data = JSON.parse(document.getElementById('series-data').textContent);
  var svg = document.getElementById('plot'), tip = document.getElementById('tip');
  var cross = document.getElementById('cross'), box = document.getElementById('chart');
  function fmt(v){ return v === null ? 'missing' : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4)); }
  svg.addEventListener('mousemove', function(ev){
    var r = svg.getBoundingClientRect(), x = (ev.clientX - r.left) * (svg.viewBox.baseVal.width / r.width);
    var best = 0, gap = Infinity;
    for (var i = 0; i < data.length; i++) {
      var d = Math.abs(data[i].x - x); if (d < gap) { gap = d; best = i; }
    }
    var p = data[best];
    cross.setAttribute('x1', p.x); cross.setAttribute('x2', p.x); cross.style.display = 'block';
    tip.innerHTML = '<b>' + p.ts + '</b><br>observed ' + fmt(p.observed) + '<br>expected ' + fmt(p.expected) +
      '<br>band ' + fmt(p.lower) + ' .. ' + fmt(p.upper) + '<br>score ' + fmt(p.score) +
      (p.flag ? '<br><span class="flag">anomalous</span>' : '');
    tip.style.display = 'block';
    var bx = box.getBoundingClientRect();
    tip.style.left = (ev.clientX - bx.left + 14) + 'px'; tip.style.top = (ev.clientY - bx.top + 10) + 'px';
  });
  svg.addEventListener('mouseleave', function(){ tip.style.display = 'none'; cross.style.display = 'none'; });
})();
"""


def investigation_html(inv: Investigation) -> str:
    """One self-contained HTML report of ``inv`` (inline CSS, SVG and JavaScript; nothing fetched)."""
    summary = inv.summary()
    unit = f" {inv.unit}" if inv.unit else ""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>livewatch investigate {e(inv.metric)} {e(inv.region)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(inv.metric)} in {e(inv.region)}: ",
        f"{e(kind_word(inv.kind) if inv.flagged else 'no anomaly flagged')}</h1>",
        f"<p>{e(_t(inv.start))} to {e(_t(inv.end))} UTC &middot; "
        f"observed {e(_num(summary['observed']))}{e(unit)} vs "
        f"expected {e(_num(summary['expected']))}{e(unit)} "
        f"({e(_signed_pct(summary['change_pct']))}) &middot; "
        f"peak score {e(_num(summary['peak_score'], signed=True))} sigma (threshold {inv.threshold:g}, "
        f"{e(inv.direction)}) &middot; {inv.flagged} of {int(summary['buckets'])} buckets flagged &middot; "
        f"model: {e(inv.model)}</p>",
        "<h2>Chart</h2><div id='chart'>",
        _svg_chart(inv),
        "<div id='tip'></div></div>",
        "<h2>Detectors</h2>",
        _html_table(
            ["detector", "peak score", "flagged buckets", "fired"],
            [
                [d.name, _num(d.peak_score, signed=True), str(d.flagged), "yes" if d.fired else "no"]
                for d in inv.detectors
            ],
        ),
        "<h2>Changepoints</h2><p>" + (e(", ".join(_t(t) for t in inv.changepoints)) or "none") + "</p>",
        "<h2>Root causes</h2>",
    ]
    ratio = inv.metric_kind == "ratio"
    header = ["#", "segment", "observed", "expected", "deviation share", "surprise"] + (
        ["mix", "rate"] if ratio else []
    )
    rows = []
    for cause in inv.root_causes:
        row = [
            str(cause.rank),
            cause.label(),
            _num(cause.actual),
            _num(cause.expected),
            _pct(cause.deviation_share),
            f"{cause.surprise:.3f}",
        ]
        rows.append(row + ([_pct(cause.mix_share), _pct(cause.rate_share)] if ratio else []))
    parts.append(_html_table(header, rows) if rows else "<p>No segment stands out.</p>")
    parts.append(f"<h2>Other metrics in {e(inv.region)}</h2>")
    parts.append(
        _html_table(
            ["metric", "anomalous", "peak score", "observed", "expected", "model"],
            [
                [
                    r.metric,
                    f"yes ({r.flagged})" if r.anomalous else "no",
                    _num(r.peak_score, signed=True),
                    _num(r.observed),
                    _num(r.expected),
                    r.error or r.model,
                ]
                for r in inv.related
            ],
        )
    )
    parts.append("<h2>Already covered by</h2>")
    parts.append(
        _html_table(
            ["kind", "id", "state", "from", "until", "detail"],
            [
                [c.kind, c.id, c.state, _t(c.start), _t(c.end) if c.end else "-", c.description]
                for c in inv.covers
            ],
        )
        if inv.covers
        else "<p>No incident, silence or maintenance window covers this window.</p>"
    )
    parts.append("<h2>Buckets</h2>")
    parts.append(
        _html_table(
            ["bucket (UTC)", "observed", "expected", "lower", "upper", "score", "flag / reason"],
            [
                [
                    _t(ts),
                    _num(r["observed"]),
                    _num(r["expected"]),
                    _num(r["lower"]),
                    _num(r["upper"]),
                    _num(r["score"], signed=True),
                    _flag_text(r) if r["flag"] else str(r["reason"]),
                ]
                for ts, r in inv.window.iterrows()
            ],
        )
    )
    if inv.problems:
        parts.append(
            "<h2>Data problems</h2><ul>" + "".join(f"<li>{e(p)}</li>" for p in inv.problems) + "</ul>"
        )
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


def _svg_chart(inv: Investigation, width: int = 1000, height: int = 340) -> str:
    """The chart as inline SVG plus its data (JSON in a script tag) for the hover read-out."""
    frame = inv.scores
    left, right, top, bottom = 60, 10, 14, 30
    seconds = np.array([t.timestamp() for t in frame.index], dtype=float)
    observed = frame["observed"].to_numpy(dtype=float)
    expected = frame["expected"].to_numpy(dtype=float)
    lower, upper = frame["lower"].to_numpy(dtype=float), frame["upper"].to_numpy(dtype=float)
    values = np.concatenate([observed, lower, upper])
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    t0, t1 = float(seconds[0]), float(seconds[-1]) if seconds[-1] > seconds[0] else float(seconds[0]) + 1

    def x(s: float) -> float:
        return left + (s - t0) / (t1 - t0) * (width - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    def path(ys: np.ndarray) -> str:
        segments, pen = [], "M"
        for s, v in zip(seconds, ys, strict=True):
            if not np.isfinite(v):
                pen = "M"
                continue
            segments.append(f"{pen}{x(s):.1f},{y(v):.1f}")
            pen = "L"
        return " ".join(segments)

    band_ok = np.isfinite(lower) & np.isfinite(upper)
    band = [f"{x(s):.1f},{y(v):.1f}" for s, v, ok in zip(seconds, upper, band_ok, strict=True) if ok]
    band += [
        f"{x(s):.1f},{y(v):.1f}"
        for s, v, ok in zip(seconds[::-1], lower[::-1], band_ok[::-1], strict=True)
        if ok
    ]
    out = [f"<svg id='plot' viewBox='0 0 {width} {height}' width='100%' xmlns='http://www.w3.org/2000/svg'>"]
    wx0, wx1 = x(pd.Timestamp(inv.start).timestamp()), x(pd.Timestamp(inv.end).timestamp())
    out.append(
        f"<rect x='{wx0:.1f}' y='{top}' width='{max(wx1 - wx0, 1):.1f}' height='{height - top - bottom}' "
        "fill='#fdae6b' opacity='0.2'><title>investigated window</title></rect>"
    )
    for cover in inv.covers:
        cx0 = max(x(pd.Timestamp(cover.start).timestamp()), left)
        cx1 = min(x(pd.Timestamp(cover.end).timestamp()), width - right) if cover.end else width - right
        if cx1 > cx0:
            colour = _EVENT_COLOURS.get(cover.kind, "#969696")
            out.append(
                f"<rect x='{cx0:.1f}' y='{height - bottom - 6}' width='{cx1 - cx0:.1f}' height='6' "
                f"fill='{colour}'><title>{html.escape(f'{cover.kind} {cover.id}: {cover.description}')}"
                "</title></rect>"
            )
    if band:
        out.append(f"<polygon points='{' '.join(band)}' fill='#9ecae1' opacity='0.5'/>")
    out.append(
        f"<path d='{path(expected)}' fill='none' stroke='#3182bd' stroke-dasharray='5,3' stroke-width='1.2'/>"
    )
    out.append(f"<path d='{path(observed)}' fill='none' stroke='#252525' stroke-width='1.4'/>")
    for moment in inv.changepoints:
        cx = x(pd.Timestamp(moment).timestamp())
        out.append(
            f"<line x1='{cx:.1f}' x2='{cx:.1f}' y1='{top}' y2='{height - bottom}' stroke='#636363' "
            f"stroke-dasharray='2,3'><title>changepoint {_t(moment)}</title></line>"
        )
    for s, v, flag in zip(seconds, observed, frame["flag"].to_numpy(dtype=bool), strict=True):
        if flag and np.isfinite(v):
            out.append(f"<circle cx='{x(s):.1f}' cy='{y(v):.1f}' r='3.5' fill='#de2d26'/>")
    for tick in np.linspace(lo, hi, 5):
        out.append(f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>{_num(tick)}</text>")
    for tick in pd.date_range(frame.index[0].ceil("D"), frame.index[-1], freq="D")[
        :: max(1, len(frame) // 24 // 10)
    ]:
        out.append(
            f"<text x='{x(tick.timestamp()):.1f}' y='{height - 10}' text-anchor='middle'>{tick:%m-%d}</text>"
        )
    out.append(f"<line x1='{left}' x2='{left}' y1='{top}' y2='{height - bottom}' stroke='#999'/>")
    out.append(
        f"<line id='cross' x1='0' x2='0' y1='{top}' y2='{height - bottom}' stroke='#e6550d' "
        "style='display:none'/></svg>"
    )
    data = [
        {
            "x": round(x(s), 1),
            "ts": _t(ts),
            "observed": _js(o),
            "expected": _js(ex),
            "lower": _js(lw),
            "upper": _js(up),
            "score": _js(sc),
            "flag": bool(fl),
        }
        for s, ts, o, ex, lw, up, sc, fl in zip(
            seconds,
            frame.index,
            observed,
            expected,
            lower,
            upper,
            frame["score"].to_numpy(dtype=float),
            frame["flag"].to_numpy(dtype=bool),
            strict=True,
        )
    ]
    # "</" cannot end the script element early once escaped.
    payload = json.dumps(data).replace("</", "<\\/")
    out.append(f"<script type='application/json' id='series-data'>{payload}</script>")
    return "".join(out)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'l' if i < 2 else ''}'>{html.escape(str(c))}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- backtest ----------------------------------------------------------------------------------------------
#: Columns of :func:`_score_cells`, in order.
_SCORE_COLUMNS = (
    "alerts",
    "true",
    "false",
    "precision",
    "recall",
    "F1",
    "TTD median",
    "TTD p90",
    "alerts/week",
)


def print_backtest(bt: Backtest, console: Console) -> None:
    """The sweep (overall), the per-metric scores at the recommended threshold, and the recommendation."""
    console.print(
        f"[bold]Backtest[/] {_t(bt.start)} to {_t(bt.end)} UTC ({bt.weeks:.1f} weeks): "
        f"{len(bt.metrics)} metrics, {bt.series} series, {bt.refits} refits, "
        f"{sum(lb.should_alert for lb in bt.labels)} labelled incident "
        f"rows in range"
    )
    table = Table(title="Sensitivity sweep (all metrics)", title_justify="left")
    for column in ("threshold", *_SCORE_COLUMNS):
        table.add_column(column, justify="right")
    for setting in bt.settings:
        picked = setting.threshold == bt.recommendation.threshold
        configured = setting.threshold in bt.configured.values()
        label = f"{setting.threshold:g}" + (" *" if configured else "")
        table.add_row(label, *_score_cells(setting.overall), style="bold green" if picked else None)
    table.caption = "* configured threshold; green: recommended"
    console.print(table)
    chosen = next(s for s in bt.settings if s.threshold == bt.recommendation.threshold)
    per_metric = Table(title=f"Per metric at threshold {chosen.threshold:g}", title_justify="left")
    per_metric.add_column("metric", justify="left")
    for column in _SCORE_COLUMNS:
        per_metric.add_column(column, justify="right")
    for name, score in chosen.per_metric.items():
        per_metric.add_row(name, *_score_cells(score))
    console.print(per_metric)
    style = "bold green" if bt.recommendation.met else "bold yellow"
    console.print(
        f"[{style}]Recommended threshold {bt.recommendation.threshold:g}[/]: {bt.recommendation.reason}"
    )
    for note in bt.notes:
        console.print(f"[yellow]note: {note}[/]")
    for error in bt.errors[:10]:
        console.print(f"[yellow]problem: {error}[/]")
    if len(bt.errors) > 10:
        console.print(f"[yellow]... and {len(bt.errors) - 10} more problems (see --json)[/]")


def _score_cells(score: Score) -> list[str]:
    return [
        str(score.incidents),
        str(score.true_incidents),
        str(score.false_alerts),
        _pct(score.precision),
        _pct(score.recall),
        f"{score.f1:.2f}" if math.isfinite(score.f1) else "-",
        _duration(score.ttd_median),
        _duration(score.ttd_p90),
        f"{score.alerts_per_week:.1f}",
    ]


def backtest_png(
    bt: Backtest, *, budget: float | None = None, width: float = 7.0, height: float = 4.2, dpi: int = 100
) -> bytes:
    """The tradeoff curve: recall and precision against alerts per week, one point per threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    rate = [s.overall.alerts_per_week for s in bt.settings]
    recall = [s.overall.recall for s in bt.settings]
    precision = [s.overall.precision for s in bt.settings]
    axes.plot(rate, recall, marker="o", color="#3182bd", label="recall")
    axes.plot(rate, precision, marker="s", color="#e6550d", label="precision")
    # Settings landing on the same point share one label ("4, 5, 6 sigma" rather than overprinted text).
    points: dict[tuple[float, float], list[str]] = {}
    for setting, x_value, y_value in zip(bt.settings, rate, recall, strict=True):
        if math.isfinite(y_value):
            points.setdefault((x_value, y_value), []).append(f"{setting.threshold:g}")
    for (x_value, y_value), names in points.items():
        axes.annotate(
            ", ".join(names),
            (x_value, y_value),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize="x-small",
        )
    chosen = next(s for s in bt.settings if s.threshold == bt.recommendation.threshold)
    axes.scatter(
        [chosen.overall.alerts_per_week],
        [chosen.overall.recall],
        s=160,
        facecolors="none",
        edgecolors="#31a354",
        linewidths=2,
        zorder=4,
        label=f"recommended ({chosen.threshold:g} sigma)",
    )
    if budget is not None:
        axes.axvline(budget, color="#756bb1", linestyle="--", label=f"budget {budget:g}/week")
    axes.set_xlabel("alerts per week (incidents opened)")
    axes.set_ylabel("share")
    axes.set_ylim(-0.03, 1.05)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small", frameon=False)
    axes.set_title("Alerting tradeoff by threshold (sigma)", fontsize="medium")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- formatting -------------------------------------------------------------------------------------------
def _t(moment: Any) -> str:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


def _flag_text(row: pd.Series) -> str:
    """``FLAG`` past the threshold, else the reason that flagged it (a CUSUM-confirmed shift)."""
    return "FLAG" if row["reason"] == FLAGGED else f"FLAG: {row['reason']}"


def _num_time(moment: Any) -> float:
    from matplotlib.dates import date2num

    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return float(date2num(stamp.tz_localize(None).to_pydatetime()))


def _num(value: Any, *, signed: bool = False) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(number):
        return "-"
    text = f"{number:+,.2f}" if signed else (f"{number:,.0f}" if abs(number) >= 1000 else f"{number:,.3g}")
    return text


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.0%}"


def _signed_pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:+.0f}%"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = value.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _js(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None
