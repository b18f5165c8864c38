"""The ``livewatch`` command line. Errors reach the user as one line and a non-zero exit (``--debug``
shows the traceback). The clock is read here, at the edge, and passed into the logic as ``now``."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from monitor.config import Config, load_config
from monitor.errors import ConfigError, LivewatchError

__all__ = ["main"]

DEFAULT_CONFIG = "config.yaml"


def utc_now() -> datetime:
    """The one place the CLI reads the wall clock."""
    return datetime.now(UTC)


def parse_time(text: str | None, *, now: datetime) -> datetime:
    """Parse an ISO time (naive means UTC) or 'now'."""
    if text is None or text == "now":
        return now
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time; use ISO 8601, e.g. 2026-11-20T14:00Z") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


class LivewatchGroup(click.Group):
    """Turns every livewatch error into one line on stderr and exit code 1 (2 for config errors)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            _maybe_traceback(ctx)
            sys.exit(2)
        except (LivewatchError, ValueError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            _maybe_traceback(ctx)
            sys.exit(1)
        except Exception as exc:  # the last resort: still one line, the traceback on --debug
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)", err=True
            )
            _maybe_traceback(ctx)
            sys.exit(1)


def _maybe_traceback(ctx: click.Context) -> None:
    if ctx.find_root().params.get("debug"):
        traceback.print_exc()


config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Path of the YAML configuration.",
)


def with_config(func: Callable[..., Any]) -> Callable[..., Any]:
    return config_option(func)


@click.group(
    cls=LivewatchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120}
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--log-level", default="WARNING", show_default=True, help="Log level (logs go to stderr).")
def cli(debug: bool, log_level: str) -> None:
    """livewatch: anomaly and incident detection for trust-and-safety metrics."""
    from monitor.logging import configure_logging

    configure_logging(log_level)


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
    "db_path",
    default="livewatch-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to (re)create.",
)
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same data).")
@click.option("--days", default=60, show_default=True, help="Days of hourly history.")
@click.option("--end", "end_text", default=None, help="Exclusive end of the data (default: this hour).")
def demo_init(db_path: Path, seed: int, days: int, end_text: str | None) -> None:
    """Build the demo SQLite warehouse with injected incidents and their ground truth."""
    import sqlalchemy as sa

    from monitor.demo import build_demo, demo_incidents

    end = parse_time(end_text, now=utc_now())
    end = pd.Timestamp(end).floor("h").to_pydatetime()
    engine = sa.create_engine(f"sqlite:///{db_path}")
    rows = build_demo(engine, end=end, days=days, seed=seed)
    engine.dispose()
    incidents = {i.incident for i in demo_incidents(end)}
    click.echo(
        f"wrote {rows:,} rows of live_safety_hourly and {len(incidents)} ground-truth incidents "
        f"to {db_path} (data ends {end:%Y-%m-%d %H:%M} UTC)"
    )


def ensure_demo_warehouse(config: Config) -> None:
    """Build the demo warehouse when the config points at a missing ``livewatch-demo.db``."""
    import sqlalchemy as sa

    url = sa.make_url(config.database.url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return
    path = Path(url.database)
    if path.name == "livewatch-demo.db" and not path.exists():
        from monitor.demo import build_demo

        end = pd.Timestamp(utc_now()).floor("h").to_pydatetime()
        click.echo(f"building the demo warehouse {path} (first run, about 30 s)...", err=True)
        engine = sa.create_engine(f"sqlite:///{path}")
        build_demo(engine, end=end)
        engine.dispose()


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


def _register() -> None:
    from monitor.cli_daemon import run as run_command
    from monitor.cli_daemon import status as status_command
    from monitor.cli_ops import backtest, incidents, investigate, silence

    for command in (run_command, status_command, investigate, incidents, silence, backtest):
        cli.add_command(command)


_register()


def main() -> None:
    """Console entry point."""
    cli(prog_name="livewatch")
