"""``livewatch run`` (daemon, ``--once``, replay) and ``livewatch status``, as click commands.

Registered on the main group in :mod:`monitor.cli.main`;
``python -m monitor.cli.daemon`` runs them standalone. The wall clock and the signals are read here, at
the edge; the daemon code gets a clock and a stop event.

The daemon also listens for actions from Slack (``alerts.slack.interactivity``, see
:mod:`monitor.daemon.interactivity`); ``--once`` and replays do not.

Exit codes: ``--once`` exits 1 when a metric or series failed; the daemon and a replay exit 0 when they
stop on SIGTERM / SIGINT or reach the end (tick failures are logged and counted, not fatal). A second
signal abandons the running tick at once (safe: every bucket's effects are committed atomically and the
next start scores it again).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import structlog

from monitor.cli.options import LivewatchGroup, fit_line, parse_time, utc_now, with_config
from monitor.config import Config, load_config

#: Where ``/metrics`` listens without ``scheduler.metrics_address`` (loopback: nothing is exposed by default).
DEFAULT_METRICS_ADDRESS = "127.0.0.1"

if TYPE_CHECKING:  # the daemon's modules load on use, so other commands start fast
    from monitor.daemon.scheduler import Daemon, TickResult

__all__ = ["main", "run", "status"]

log = structlog.get_logger(__name__)


@click.command("run")
@with_config
@click.option("--once", is_flag=True, help="Run one tick of every metric and exit (otherwise: the daemon).")
@click.option("--at", "at_text", default=None, help="With --once: evaluate as of this UTC time.")
@click.option(
    "--live-only",
    is_flag=True,
    help="With --once: record the catch-up (buckets older than the live edge) without sending anything "
    "(by default each incident found there is delivered once, as its final state with a short timeline).",
)
@click.option(
    "--replay-from",
    "replay_from",
    default=None,
    help="Replay: drive the daemon over historical data from this UTC time (simulated clock).",
)
@click.option("--replay-to", "replay_to", default=None, help="Replay: until this UTC time (default: now).")
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Replay speed in simulated seconds per real second (3600: an hour a second); "
    "default as fast as possible.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Override scheduler.metrics_port (0: any free port, -1: no /metrics).",
)
@click.option(
    "--metrics-address",
    default=None,
    help="Override scheduler.metrics_address, the interface /metrics listens on (0.0.0.0: all).",
)
def run(
    config_path: Path,
    once: bool,
    at_text: str | None,
    live_only: bool,
    replay_from: str | None,
    replay_to: str | None,
    speed: float | None,
    metrics_port: int | None,
    metrics_address: str | None,
) -> None:
    """Score, alert and deliver: the scheduled daemon (default), one tick (--once) or a replay."""
    if once and replay_from:
        raise click.UsageError("--once and --replay-from are exclusive")
    if (replay_to or speed) and not replay_from:
        raise click.UsageError("--replay-to and --speed need --replay-from")
    if live_only and not once:
        raise click.UsageError("--live-only goes with --once (the daemon sends a catch-up once per incident)")
    if at_text and not once:
        raise click.UsageError("--at goes with --once (a replay takes --replay-from/--replay-to)")
    from monitor.daemon.scheduler import build_daemon, replay, run_daemon
    from monitor.tools.demo import ensure_demo_warehouse

    config = load_config(config_path)
    _apply_logging(config)
    ensure_demo_warehouse(
        config.database.url, now=utc_now(), announce=lambda line: click.echo(line, err=True)
    )
    wall = utc_now()
    if once:
        now = parse_time(at_text, now=wall)
        daemon = build_daemon(config, clock=utc_now, started=now)
        results = [daemon.score(group, now, mute_catch_up=live_only) for group in daemon.groups]
        for result in results:
            _echo_tick(result)
        if any(r.report is None or r.report.errors for r in results):
            sys.exit(1)
        return
    stop = threading.Event()
    _stop_on_signals(stop)
    if replay_from:
        start = parse_time(replay_from, now=wall)
        end = parse_time(replay_to, now=wall)
        if end <= start:
            raise click.BadParameter(f"--replay-to {end:%Y-%m-%dT%H:%MZ} must be after --replay-from")
        daemon = build_daemon(config, clock=utc_now, started=start)
        _serve(daemon, config, metrics_port, metrics_address)
        outcome = replay(daemon, start, end, speed=speed, stop=stop, on_tick=_echo_tick)
        fitted = sum(len(r.fitted) for r in outcome.refits)
        click.echo(
            f"replay {'stopped' if outcome.stopped else 'done'}: {len(outcome.ticks)} ticks, "
            f"{len(outcome.refits)} refits ({fitted} models) from {start:%Y-%m-%d %H:%M} "
            f"to {end:%Y-%m-%d %H:%M} UTC"
        )
        return
    daemon = build_daemon(config, clock=utc_now)
    _serve(daemon, config, metrics_port, metrics_address)
    click.echo(
        f"livewatch daemon started ({len(daemon.groups)} scoring job(s) + refit); stop with SIGTERM", err=True
    )
    run_daemon(daemon, stop)
    click.echo("livewatch daemon stopped", err=True)


def metrics_address(config: Config, override: str | None = None) -> str:
    """Where `/metrics` listens: --metrics-address, else scheduler.metrics_address, else loopback."""
    return override or getattr(config.scheduler, "metrics_address", None) or DEFAULT_METRICS_ADDRESS


def _apply_logging(config: Config) -> None:
    """The config's ``logging: {format, level}``; ``--log-level`` / ``--log-format`` given on the command line
    win."""
    from monitor.logging import configure_from_config

    ctx = click.get_current_context(silent=True)
    obj = (ctx.find_root().obj or {}) if ctx is not None else {}
    configure_from_config(config, level=obj.get("log_level"), format=obj.get("log_format"))


def _serve(daemon: Daemon, config: Config, override: int | None, address: str | None = None) -> None:
    port = config.scheduler.metrics_port if override is None else override
    if port is None or port < 0 or daemon.health is None:
        return
    addr = metrics_address(config, address)
    bound = daemon.health.serve(port, addr=addr)
    host = f"[{addr}]" if ":" in addr else addr
    click.echo(f"serving Prometheus metrics on http://{host}:{bound}/metrics", err=True)


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT: finish the running tick, then stop (exit 0); a second one: stop now."""

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second stop signal: abandoning the running tick", signal=name)
            os._exit(0)
        log.info("stop requested: finishing the running tick", signal=name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _echo_tick(result: TickResult) -> None:
    report = result.report
    if report is None:
        click.echo(f"tick at {result.now:%Y-%m-%d %H:%M} UTC failed: {result.error}", err=True)
        return
    for problem in report.problems:
        click.echo(f"data: {problem}", err=True)
    for metric, error in report.metric_errors.items():
        click.echo(f"error: metric {metric}: {error}", err=True)
    for outcome in report.outcomes:
        if outcome.error:
            click.echo(f"error: {outcome.metric}/{outcome.series}: {outcome.error}", err=True)
    delivered = report.delivery.delivered if report.delivery else 0
    click.echo(
        fit_line(
            f"tick {report.run_id} at {result.now:%Y-%m-%d %H:%M} UTC: {report.series_scored} series scored, "
            f"{report.signals} anomalous buckets, {len(report.notifications)} notifications, "
            f"{delivered} delivered ({result.duration:.2f} s)"
        )
    )
    if result.catch_up is not None and result.catch_up.incidents:
        for line in result.catch_up.lines():
            click.echo(fit_line(line))
    for self_problem in result.problems:
        click.echo(f"self-check: {self_problem.reason}", err=True)


@click.command("status")
@with_config
@click.option("--at", "at_text", default=None, help="Judge watermark lag as of this UTC time (default: now).")
@click.option(
    "--url",
    default=None,
    help="A running daemon's /metrics to add its in-memory figures (tick durations...); "
    "default http://127.0.0.1:<scheduler.metrics_port>/metrics when it answers.",
)
def status(config_path: Path, at_text: str | None, url: str | None) -> None:
    """Print the daemon's figures (the names /metrics uses) from the state store and the running daemon."""
    from rich.console import Console
    from rich.table import Table

    from monitor.daemon.metrics import read_store_figures, status_rows
    from monitor.wiring import open_store

    config = load_config(config_path)
    now = parse_time(at_text, now=utc_now())
    figures = read_store_figures(open_store(config), config.metrics, now)
    port = config.scheduler.metrics_port
    addr = metrics_address(config)
    host = "127.0.0.1" if addr in ("0.0.0.0", "::") else (f"[{addr}]" if ":" in addr else addr)
    live = _scrape(url or (f"http://{host}:{port}/metrics" if port else None))
    table = Table(title=f"livewatch status at {now:%Y-%m-%d %H:%M} UTC")
    for column in ("metric", "labels", "value"):
        table.add_column(column, justify="right" if column == "value" else "left", overflow="fold")
    for row in status_rows(figures, live):
        table.add_row(*row)
    Console().print(table)
    if live is None:
        click.echo("(daemon /metrics not reachable: tick durations and counters since start not shown)")


#: In-memory figures of a running daemon that the store does not hold.
LIVE_ONLY = (
    "livewatch_tick_duration_seconds_count",
    "livewatch_tick_duration_seconds_sum",
    "livewatch_series_scored_total",
    "livewatch_anomalies_total",
    "livewatch_errors_total",
    "livewatch_data_problems_total",
    "livewatch_last_successful_tick_timestamp_seconds",
)


def _scrape(url: str | None) -> dict[str, float] | None:
    """Samples of a running daemon's ``/metrics`` (``None`` when it does not answer within a second)."""
    if not url:
        return None
    from urllib.error import URLError
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(url, timeout=1.0) as response:
            text = response.read().decode("utf-8")
    except (URLError, OSError, ValueError):
        return None
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in LIVE_ONLY:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def main() -> None:
    """``python -m monitor.cli.daemon``: the same commands without the rest of the CLI."""
    from monitor.logging import configure_logging

    @click.group(cls=LivewatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
    @click.option("--log-level", default="WARNING", show_default=True, help="Log level (logs go to stderr).")
    def group(debug: bool, log_level: str) -> None:
        """livewatch daemon commands (also registered on the main ``livewatch`` group)."""
        configure_logging(log_level)

    group.add_command(run)
    group.add_command(status)
    group(prog_name="livewatch")


if __name__ == "__main__":
    main()
