"""People-facing commands: ``investigate``, ``incidents``, ``silence`` and ``backtest``.

Registered on the ``livewatch`` group in :mod:`monitor.cli.main`::

    from monitor.cli.ops import backtest, incidents, investigate, silence
    for command in (investigate, incidents, silence, backtest):
        cli.add_command(command)

Like the rest of the CLI, the wall clock is read here (``utc_now``) and passed into the logic as ``now``;
errors are :class:`~monitor.errors.LivewatchError` subclasses that the ``livewatch`` group prints as one line.
Metric and region arguments only ever reach SQL as bound parameters.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pandas as pd
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from alerts.engine import AlertRepos, IncidentNotFoundError, acknowledge_incident, resolve_incident
from alerts.incidents import IncidentStateError
from alerts.model import (
    AlertDataError,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Silence,
    bucket_word,
    kind_word,
)
from monitor.cli.options import parse_time, utc_now, with_config
from monitor.config import Config, load_config, parse_duration
from monitor.errors import LivewatchError
from monitor.store import HistorySummary, IncidentHistory, SqlStore

if TYPE_CHECKING:
    from monitor.tools.backtest import Label

__all__ = ["backtest", "incidents", "investigate", "silence"]

#: Actor recorded when ``--by`` is not given and ``$USER`` is unset.
DEFAULT_ACTOR = "cli"


class CommandError(LivewatchError):
    """A people-facing command cannot do what was asked (unknown id, wrong state...)."""


def _console(*, err: bool = False) -> Console:
    # Rich's own width (the terminal, or $COLUMNS, or 80 when piped): every table is built to fit it.
    return Console(stderr=err, soft_wrap=False)


def _actor(by: str | None) -> str:
    return by or os.environ.get("USER") or DEFAULT_ACTOR


def _store(config: Config) -> SqlStore:
    from monitor.wiring import open_store

    return open_store(config)


# -- investigate ---------------------------------------------------------------------------------------------
@click.command("investigate")
@click.argument("metric")
@click.option("--region", required=True, help="Series value (e.g. the region code).")
@click.option(
    "--at", "at_text", default=None, help="A time in the anomaly (ISO 8601 UTC); widened to its run."
)
@click.option("--from", "from_text", default=None, help="Window start (with --to).")
@click.option("--to", "to_text", default=None, help="Window end, exclusive (with --from).")
@with_config
@click.option(
    "--chart",
    "chart_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG chart here.",
)
@click.option(
    "--html",
    "html_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--no-related", is_flag=True, help="Skip checking the other metrics of the region.")
@click.option(
    "--refit", is_flag=True, help="Fit a model on the history before the window instead of the stored one."
)
def investigate(
    metric: str,
    region: str,
    at_text: str | None,
    from_text: str | None,
    to_text: str | None,
    config_path: Path,
    chart_path: Path | None,
    html_path: Path | None,
    as_json: bool,
    no_related: bool,
    refit: bool,
) -> None:
    """Explain METRIC in a region: expected vs observed, detectors, changepoints, causes, related metrics."""
    from monitor.tools.investigate import investigate as run_investigation
    from monitor.tools.report import investigation_html, investigation_png, print_investigation, to_json
    from monitor.wiring import warehouse_source

    if (at_text is None) == (from_text is None):
        raise click.UsageError("give either --at T or --from T1 --to T2")
    if (from_text is None) != (to_text is None):
        raise click.UsageError("--from and --to go together")
    now = utc_now()
    start = parse_time(at_text or from_text, now=now)
    end = parse_time(to_text, now=now) if to_text is not None else None
    config = load_config(config_path)
    result = run_investigation(
        config,
        warehouse_source(config),
        _store(config),
        metric,
        region,
        start=start,
        end=end,
        now=now,
        related=not no_related,
        refit=refit,
    )
    if as_json:
        click.echo(to_json(result))
    else:
        print_investigation(result, _console())
    if chart_path is not None:
        chart_path.write_bytes(investigation_png(result))
        click.echo(f"chart written to {chart_path}", err=as_json)
    if html_path is not None:
        html_path.write_text(investigation_html(result), encoding="utf-8")
        click.echo(f"HTML report written to {html_path}", err=as_json)


# -- incidents -----------------------------------------------------------------------------------------------
@click.group("incidents")
def incidents() -> None:
    """The stored incident history: list, show, acknowledge, resolve, statistics."""


def _incident_row(history: IncidentHistory) -> dict[str, Any]:
    incident = history.incident
    return {
        "id": incident.id,
        "state": incident.state.value,
        "severity": incident.severity.value,
        "metrics": list(incident.metrics),
        "regions": list(incident.regions),
        "opened_at": _iso(incident.opened_at),
        "started_at": _iso(incident.started_at),
        "acknowledged_by": incident.acknowledged_by,
        "acknowledged_at": _iso(incident.acknowledged_at),
        "resolved_by": incident.resolved_by,
        "resolved_at": _iso(incident.resolved_at),
        "time_to_acknowledge_minutes": _minutes(history.time_to_acknowledge),
        "time_to_resolve_minutes": _minutes(history.time_to_resolve),
        "root_causes": [cause.to_dict() for cause in incident.root_causes[:3]],
    }


@incidents.command("list")
@with_config
@click.option(
    "--open", "only_open", is_flag=True, help="Only active incidents (open, acknowledged, snoozed)."
)
@click.option("--metric", default=None, help="Only incidents with this metric.")
@click.option("--region", default=None, help="Only incidents in this region.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def incidents_list(
    config_path: Path, only_open: bool, metric: str | None, region: str | None, limit: int, as_json: bool
) -> None:
    """Incidents newest first, with time to acknowledge and to resolve."""
    store = _store(load_config(config_path))
    states = [s for s in IncidentState if s is not IncidentState.RESOLVED] if only_open else None
    found = store.incident_history(states=states, metric=metric, region=region, limit=limit)
    if as_json:
        click.echo(json.dumps([_incident_row(h) for h in found], indent=2))
        return
    title = f"{len(found)} incident(s); times are bucket starts (UTC)"
    rows = []
    for history in found:
        incident = history.incident
        causes = incident.root_causes
        what = f"{', '.join(incident.metrics)} {incident.kind} in {', '.join(incident.regions)}"
        rows.append(
            (
                incident.id,
                f"{incident.state.word} {incident.severity.value}",
                f"{incident.started_at:%Y-%m-%d %H:%M}",
                f"{_duration(history.time_to_acknowledge)} / {_duration(history.time_to_resolve)}",
                what + (f" ({causes[0].segment})" if causes else ""),
            )
        )
    console = _console()
    # The id is what show/ack/resolve need: never wrapped or truncated. Beside the longest id, the other
    # columns need about LIST_DETAILS_WIDTH columns; on a narrower terminal each incident is a block
    # instead: its id on a line of its own, the details below it, wrapped at spaces.
    id_width = max((len(row[0]) for row in rows), default=2)
    if id_width + LIST_DETAILS_WIDTH > console.width:
        console.print(title, highlight=False)
        for incident_id, state, started, times, what in rows:
            console.print(Text(incident_id, no_wrap=True, overflow="ignore"))
            details = f"{state}, started {started}, to ack / resolve {times}: {what}"
            console.print(Padding(Text(details), (0, 0, 0, 2)))
        return
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("state", overflow="fold", max_width=12)
    table.add_column("started", overflow="fold", min_width=10, max_width=10)
    table.add_column("to ack / resolve", overflow="fold", max_width=10)
    table.add_column("what (top cause)", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(*row)
    console.print(table)


#: Columns the list table needs beside the id (state, start, times and a readable "what").
LIST_DETAILS_WIDTH = 60


@incidents.command("show")
@click.argument("incident_id")
@with_config
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def incidents_show(incident_id: str, config_path: Path, as_json: bool) -> None:
    """One incident: members, root causes and its lifecycle events."""
    store = _store(load_config(config_path))
    incident = store.get(incident_id)
    if incident is None:
        raise CommandError(f"no incident {incident_id!r}; list them with `livewatch incidents list`")
    history = IncidentHistory.build(incident, store.list_events(incident_id))
    if as_json:
        payload = _incident_row(history)
        payload["signals"] = [
            {
                "metric": s.metric,
                "region": s.region,
                "kind": s.kind,
                "observed": s.observed,
                "expected": s.expected,
                "change_pct": s.change_pct,
                "score": s.score,
                "start": _iso(s.start),
                "end": _iso(s.end),
                "investigate": s.investigate,
            }
            for s in incident.signals
        ]
        payload["events"] = [
            {"kind": e.kind.value, "at": _iso(e.at), "actor": e.actor, "detail": e.detail}
            for e in history.events
        ]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    console = _console()
    console.print(
        f"[bold]{incident.id}[/] {incident.state.word}, {incident.severity.value} {incident.kind}; started "
        f"{incident.started_at:%Y-%m-%d %H:%M} UTC (bucket start); "
        f"to ack {_duration(history.time_to_acknowledge)}, to resolve {_duration(history.time_to_resolve)}"
    )
    bucket = next((bucket_word(s.bucket) for s in incident.signals if s.bucket is not None), "")
    since = f"since (UTC, {bucket} bucket start)" if bucket else "since (UTC, bucket start)"
    members = Table(title="Members", title_justify="left")
    for column in ("metric", "region", "kind", "firing", "observed", "expected", "change", "score", since):
        members.add_column(column, overflow="fold")
    for s in incident.signals:
        unit = f" {s.unit}" if s.unit else ""
        members.add_row(
            s.metric,
            s.region,
            kind_word(s.kind),
            "yes" if s.firing else f"no (needs ±{s.threshold:g})",
            f"{s.observed:.4g}{unit}",
            f"{s.expected:.4g}{unit}",
            f"{s.change_pct:+.0f}%",
            f"{s.score:+.1f}",
            f"{s.start:%m-%d %H:%M}",
        )
    console.print(members)
    # Commands on their own lines, never inside a cell: they stay whole (or wrap at spaces) to copy-paste.
    commands = list(dict.fromkeys(s.investigate for s in incident.signals if s.investigate))
    if commands:
        console.print("[bold]Investigate[/]")
        for command in commands:
            console.print(command, markup=False, highlight=False)
    causes = Table(title="Root causes", title_justify="left")
    for column in ("segment", "share", "mix", "rate"):
        causes.add_column(column)
    for cause in incident.root_causes:
        causes.add_row(cause.segment, f"{cause.share:.0%}", _share(cause.mix), _share(cause.rate))
    console.print(causes)
    events = Table(title="Events", title_justify="left")
    for column in ("at (UTC)", "event", "by", "detail"):
        events.add_column(column, overflow="fold")
    for event in history.events:
        events.add_row(f"{event.at:%Y-%m-%d %H:%M}", event.kind.value, event.actor, event.detail)
    console.print(events)


@incidents.command("ack")
@click.argument("incident_id")
@click.option("--by", "by", default=None, help="Who takes it (default: $USER).")
@with_config
def incidents_ack(incident_id: str, by: str | None, config_path: Path) -> None:
    """Acknowledge an incident: reminders stop; growth and resolution still notify."""
    store = _store(load_config(config_path))
    repos = AlertRepos(incidents=store, outbox=store, silences=store)
    try:
        incident = acknowledge_incident(repos, incident_id, _actor(by), utc_now())
    except (IncidentNotFoundError, IncidentStateError) as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    click.echo(f"acknowledged {incident.id} by {incident.acknowledged_by}")


@incidents.command("resolve")
@click.argument("incident_id")
@click.option("--note", default="", help="Why it is resolved (recorded with the resolution).")
@click.option("--by", "by", default=None, help="Who resolves it (default: $USER).")
@with_config
def incidents_resolve(incident_id: str, note: str, by: str | None, config_path: Path) -> None:
    """Resolve an incident by hand; the resolution is sent to every receiver that was told."""
    from alerts.outbox import deliver_pending
    from monitor.pipeline.tick import Monitor
    from monitor.wiring import build_routes, build_sinks, warehouse_source

    config = load_config(config_path)
    store = _store(config)
    sinks, primary = build_sinks(config, os.environ, store=store)
    routes = build_routes(config, sinks, primary)
    monitor = Monitor(config, warehouse_source(config), store, sinks, routes)
    now = utc_now()
    actor = _actor(by)
    try:
        result = resolve_incident(
            AlertRepos(incidents=store, outbox=store, silences=store),
            incident_id,
            actor,
            now,
            routes=routes,
            windows=monitor.windows,
            config=monitor.engine_config,
        )
    except (IncidentNotFoundError, IncidentStateError) as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    if note:
        store.record_event(LifecycleEvent(incident_id, LifecycleKind.UPDATED, now, actor, f"note: {note}"))
    delivered = deliver_pending(store, sinks, now)
    click.echo(
        f"resolved {incident_id} by {actor}; {len(result.notifications)} notification(s) enqueued, "
        f"{delivered.delivered} delivered"
    )


@incidents.command("stats")
@with_config
@click.option("--metric", default=None, help="Only incidents with this metric.")
@click.option("--region", default=None, help="Only incidents in this region.")
@click.option("--since", "since_text", default=None, help="Only incidents opened at or after this time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def incidents_stats(
    config_path: Path, metric: str | None, region: str | None, since_text: str | None, as_json: bool
) -> None:
    """Counts, median time to acknowledge and to resolve, and the false-positive rate (incidents marked
    "not an incident" from Slack, over all incidents), overall and per metric."""
    store = _store(load_config(config_path))
    since = parse_time(since_text, now=utc_now()) if since_text else None
    found = store.incident_history(metric=metric, region=region, since=since)
    groups: dict[str, list[IncidentHistory]] = {"all": found}
    for history in found:
        for name in history.incident.metrics:
            groups.setdefault(name, []).append(history)
    summaries = {name: HistorySummary.of(items) for name, items in groups.items()}
    false_positives = {
        name: sum(1 for h in items if h.incident.false_positive) for name, items in groups.items()
    }

    def rate(name: str) -> float | None:
        total = summaries[name].incidents
        return round(false_positives[name] / total, 4) if total else None

    if as_json:
        click.echo(
            json.dumps(
                {
                    name: {
                        "incidents": s.incidents,
                        "acknowledged": s.acknowledged,
                        "resolved": s.resolved,
                        "median_time_to_acknowledge_minutes": _minutes(s.median_time_to_acknowledge),
                        "median_time_to_resolve_minutes": _minutes(s.median_time_to_resolve),
                        "false_positives": false_positives[name],
                        "false_positive_rate": rate(name),
                    }
                    for name, s in summaries.items()
                },
                indent=2,
            )
        )
        return
    table = Table(title="Incident statistics", title_justify="left")
    for column in (
        "scope",
        "incidents",
        "acknowledged",
        "resolved",
        "median to ack",
        "median to resolve",
        "false positives",
        "FP rate",
    ):
        table.add_column(column)
    for name, s in summaries.items():
        fp_rate = rate(name)
        table.add_row(
            name,
            str(s.incidents),
            str(s.acknowledged),
            str(s.resolved),
            _duration(s.median_time_to_acknowledge),
            _duration(s.median_time_to_resolve),
            str(false_positives[name]),
            "-" if fp_rate is None else f"{fp_rate:.0%}",
        )
    _console().print(table)


# -- silences ------------------------------------------------------------------------------------------------
@click.group("silence")
def silence() -> None:
    """Mute notifications for a metric and/or region until an expiry."""


@silence.command("add")
@click.option("--metric", default=None, help="Metric to silence (all metrics when omitted).")
@click.option("--region", default=None, help="Region to silence (all regions when omitted).")
@click.option("--for", "duration_text", required=True, help="How long: 30m, 2h, 1d ...")
@click.option("--reason", required=True, help="Why (shown in messages and listings).")
@click.option("--by", "by", default=None, help="Who silences (default: $USER).")
@with_config
@click.option("--json", "as_json", is_flag=True, help="Print the silence as JSON.")
def silence_add(
    metric: str | None,
    region: str | None,
    duration_text: str,
    reason: str,
    by: str | None,
    config_path: Path,
    as_json: bool,
) -> None:
    """Add a silence; prints its id (remove it early with `livewatch silence remove ID`)."""
    config = load_config(config_path)
    if metric is None and region is None:
        raise click.UsageError("give --metric, --region or both (a silence of everything is not allowed)")
    names = [m.name for m in config.metrics]
    if metric is not None and metric not in names:
        raise CommandError(f"unknown metric {metric!r}; configured metrics: {', '.join(names)}")
    try:
        duration = parse_duration(duration_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    if duration <= timedelta(0):
        raise click.BadParameter("must be positive, e.g. 2h", param_hint="--for")
    now = utc_now()
    matchers = tuple(Matcher(n, v) for n, v in (("metric", metric), ("region", region)) if v is not None)
    try:
        created = Silence(
            id=f"s-{uuid.uuid4().hex[:10]}",
            matchers=matchers,
            reason=reason,
            created_by=_actor(by),
            created_at=now,
            expires_at=now + duration,
        )
    except AlertDataError as exc:
        raise CommandError(str(exc)) from None
    _store(config).add(created)
    if as_json:
        click.echo(json.dumps(created.to_dict(), indent=2))
        return
    click.echo(
        f"silence {created.id}: {_describe(created)} until {created.expires_at:%Y-%m-%d %H:%M} UTC "
        f"({reason}, by {created.created_by})"
    )


@silence.command("list")
@with_config
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def silence_list(config_path: Path, show_all: bool, as_json: bool) -> None:
    """Silences active now (all of them with --all)."""
    store = _store(load_config(config_path))
    now = utc_now()
    found = store.list_silences() if show_all else store.list_silences(active_at=now)
    if as_json:
        click.echo(json.dumps([{**s.to_dict(), "active": s.active_at(now)} for s in found], indent=2))
        return
    table = Table(title=f"{len(found)} silence(s)", title_justify="left")
    # The id (what `silence remove` needs) and the matchers stay whole; the rest wraps.
    table.add_column("id", no_wrap=True)
    table.add_column("matches", no_wrap=True)
    for column in ("until (UTC)", "left", "reason", "by"):
        table.add_column(column, overflow="fold")
    for item in found:
        left = item.expires_at - now
        table.add_row(
            item.id,
            _describe(item),
            f"{item.expires_at:%Y-%m-%d %H:%M}",
            _duration(left) if left > timedelta(0) else "expired",
            item.reason,
            item.created_by,
        )
    _console().print(table)


@silence.command("remove")
@click.argument("silence_id")
@with_config
def silence_remove(silence_id: str, config_path: Path) -> None:
    """Remove a silence by id."""
    store = _store(load_config(config_path))
    if not store.remove(silence_id):
        known = [s.id for s in store.list_silences(active_at=utc_now())]
        raise CommandError(
            f"no silence {silence_id!r}; active silences: {', '.join(known) or 'none'} "
            "(see `livewatch silence list`)"
        )
    click.echo(f"removed silence {silence_id}")


# -- backtest ------------------------------------------------------------------------------------------------
@click.command("backtest")
@click.option("--metric", "metric_names", multiple=True, help="Metric to replay (repeatable; default all).")
@click.option("--from", "from_text", default=None, help="Replay start (default: 14 days before --to).")
@click.option(
    "--to", "to_text", default=None, help="Replay end, exclusive (default: the last complete bucket)."
)
@click.option(
    "--labels",
    "labels_spec",
    default=None,
    help="CSV (metric, region, start, end) or a warehouse table; default: the demo's demo_incidents.",
)
@click.option("--budget", type=float, default=None, help="Alerts per week the on-call team accepts.")
@click.option("--cost-ratio", type=float, default=None, help="Cost of a missed incident over a false alert.")
@click.option("--thresholds", "thresholds_text", default=None, help="Comma-separated sweep, e.g. 3,4,5,6.")
@click.option("--workers", type=int, default=None, help="Processes (default: executor.workers or all cores).")
@click.option(
    "--chart",
    "chart_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the tradeoff curve PNG here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@with_config
def backtest(
    metric_names: tuple[str, ...],
    from_text: str | None,
    to_text: str | None,
    labels_spec: str | None,
    budget: float | None,
    cost_ratio: float | None,
    thresholds_text: str | None,
    workers: int | None,
    chart_path: Path | None,
    as_json: bool,
    config_path: Path,
) -> None:
    """Replay history as the daemon would and report precision, recall and alerts/week per sensitivity."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from monitor.source import floor_time
    from monitor.tools.backtest import executor_for, run_backtest
    from monitor.tools.report import backtest_png, print_backtest, to_json
    from monitor.wiring import warehouse_source

    if budget is not None and cost_ratio is not None:
        raise click.UsageError("give either --budget or --cost-ratio, not both")
    thresholds = _thresholds(thresholds_text)
    config = load_config(config_path)
    source = warehouse_source(config)
    now = utc_now()
    if to_text is not None:
        end = parse_time(to_text, now=now)
    else:
        delay = max((m.completeness_delay or timedelta(0)) for m in config.metrics)
        end = floor_time(pd.Timestamp(now) - pd.Timedelta(delay), timedelta(hours=1)).to_pydatetime()
    start = parse_time(from_text, now=now) if from_text is not None else None
    labels = _labels(labels_spec, source.engine) + _false_positive_labels(config)
    progress = Progress(
        TextColumn("scoring series"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with executor_for(config, workers=workers) as (executor, note), progress:
        click.echo(f"backtest: {note}", err=True)
        task = progress.add_task("score", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result, _ = run_backtest(
            config,
            source,
            labels,
            metrics=list(metric_names) or None,
            start=start,
            end=end,
            thresholds=thresholds,
            budget=budget,
            cost_ratio=cost_ratio,
            executor=executor,
            progress=advance,
        )
    if as_json:
        click.echo(to_json(result))
    else:
        print_backtest(result, _console())
    if chart_path is not None:
        chart_path.write_bytes(backtest_png(result, budget=budget))
        click.echo(f"tradeoff chart written to {chart_path}", err=as_json)


def _thresholds(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give numbers separated by commas, e.g. 3,4,5", param_hint="--thresholds"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise click.BadParameter("thresholds must be positive numbers, e.g. 3,4,5", param_hint="--thresholds")
    return values


def _labels(spec: str | None, engine: Any) -> list[Label]:
    """Labels from ``spec``; without one, the demo table when the warehouse has it, else none."""
    import sqlalchemy as sa

    from monitor.tools.backtest import load_labels
    from monitor.tools.demo import DEMO_INCIDENT_TABLE

    if spec is not None:
        return load_labels(spec, engine)
    if sa.inspect(engine).has_table(DEMO_INCIDENT_TABLE):
        return load_labels(DEMO_INCIDENT_TABLE, engine)
    click.echo("backtest: no --labels and no demo_incidents table: every alert counts as false", err=True)
    return []


def _false_positive_labels(config: Config) -> list[Label]:
    """The state store's "not an incident" marks, as labelled negatives (none when it cannot be read)."""
    import sqlalchemy as sa

    from monitor.store import StoreError
    from monitor.tools.backtest import false_positive_labels

    try:
        found = false_positive_labels(_store(config).list_false_positives())
    except (StoreError, sa.exc.SQLAlchemyError, OSError) as exc:
        click.echo(f"backtest: false positives not read from the state store ({exc})", err=True)
        return []
    if found:
        click.echo(
            f"backtest: {len(found)} false positive(s) marked in Slack count as labelled negatives", err=True
        )
    return found


# -- formatting ----------------------------------------------------------------------------------------------
def _describe(item: Silence) -> str:
    return ", ".join(f"{m.name}={m.value}" for m in item.matchers)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ")


def _minutes(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 60.0, 1)


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = value.total_seconds() / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.1f} d"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
