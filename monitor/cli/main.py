"""The ``livewatch`` command line. Errors reach the user as one line and a non-zero exit (``--debug``
shows the traceback). The clock is read here, at the edge, and passed into the logic as ``now``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pandas as pd

from monitor.cli.daemon import run as run_command
from monitor.cli.daemon import status as status_command
from monitor.cli.experiments import experiments
from monitor.cli.ops import backtest, incidents, investigate, silence
from monitor.cli.options import LivewatchGroup, parse_time, utc_now, with_config
from monitor.config import Config, load_config
from monitor.errors import ConfigError

__all__ = ["main"]


@click.group(
    cls=LivewatchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120}
)
@click.version_option(None, "--version", "-V", package_name="livewatch", message="livewatch %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    help="Log level (logs go to stderr); the daemon uses the config's logging.level unless this is given.",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Log line format (default: the config's logging.format, else JSON unless stderr is a terminal).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_level: str, log_format: str | None) -> None:
    """livewatch: anomaly and incident detection for trust-and-safety metrics."""
    from monitor.logging import configure_logging

    explicit = ctx.get_parameter_source("log_level") is not click.core.ParameterSource.DEFAULT
    ctx.ensure_object(dict).update(log_level=log_level if explicit else None, log_format=log_format)
    configure_logging(log_level, format=log_format)


@cli.command("check-config")
@with_config
def check_config(config_path: Path) -> None:
    """Validate the config, connect to the database and check every metric's table and columns."""
    from monitor.wiring import warehouse_source

    config = load_config(config_path)
    source = warehouse_source(config)
    problems = check_database(config, source) + check_slack(config, os.environ)
    if problems:
        raise ConfigError(problems)
    click.echo(f"ok: {config_path} is valid; {len(config.metrics)} metrics checked against the database")


def check_slack(config: Config, env: Mapping[str, str]) -> list[str]:
    """When a bot token is set, ``auth.test`` must pass (a revoked token is a config problem)."""
    from alerts.sinks.slack import SlackSink

    slack = config.alerts.slack
    token = env.get(slack.token_env)
    if not token:
        return []
    check = SlackSink.from_token(token, api_url=slack.api_url, max_retries=0).check()
    return (
        [] if check.ok else [f"alerts.slack: {slack.token_env} is set but auth.test failed: {check.detail}"]
    )


def check_database(config: Config, source: Any) -> list[str]:
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.source import check_metrics

    try:
        return check_metrics(source, config.metrics)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return [f"database.url: cannot connect ({reason})"]


@cli.group()
def demo() -> None:
    """The embedded demo warehouse."""


@demo.command("init")
@click.option(
    "--db",
    "db_target",
    default="livewatch-demo.db",
    show_default=True,
    help="SQLite file to (re)create, or any SQLAlchemy URL (postgresql+psycopg://user@host/db loads with "
    "COPY; trino://..., snowflake://... need their dialect installed).",
)
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same data).")
@click.option("--days", default=60, show_default=True, help="Days of hourly history.")
@click.option("--end", "end_text", default=None, help="Exclusive end of the data (default: this hour).")
def demo_init(db_target: str, seed: int, days: int, end_text: str | None) -> None:
    """Build the demo warehouse (SQLite file or any database URL) with injected incidents and ground truth."""
    import sqlalchemy as sa

    from monitor.tools.demo import DEMO_EXPERIMENT_UNITS, build_demo, demo_incidents, demo_url

    end = parse_time(end_text, now=utc_now())
    end = pd.Timestamp(end).floor("h").to_pydatetime()
    url = demo_url(db_target)
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError([f"demo init --db {db_target!r}: {exc}"]) from exc
    try:
        rows = build_demo(engine, end=end, days=days, seed=seed, experiment_units=DEMO_EXPERIMENT_UNITS)
    except sa.exc.OperationalError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError([f"demo init --db: cannot write to {url.render_as_string()} ({reason})"]) from exc
    finally:
        engine.dispose()
    incidents = {i.incident for i in demo_incidents(end)}
    click.echo(
        f"wrote {rows:,} rows of live_safety_hourly and {len(incidents)} ground-truth incidents "
        f"to {url.render_as_string(hide_password=True)} (data ends {end:%Y-%m-%d %H:%M} UTC)"
    )


@cli.group()
def db() -> None:
    """The state database (incidents, outbox, watermarks, models, silences)."""


@db.command("upgrade")
@with_config
def db_upgrade(config_path: Path) -> None:
    """Create or migrate the state database to the latest schema (idempotent)."""
    from monitor.store import make_engine, upgrade

    config = load_config(config_path)
    upgrade(make_engine(config.state.url))
    click.echo("ok: state database is at the latest schema")


for command in (run_command, status_command, investigate, incidents, silence, backtest, experiments):
    cli.add_command(command)


def main() -> None:
    """Console entry point."""
    cli(prog_name="livewatch")
