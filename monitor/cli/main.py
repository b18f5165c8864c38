"""The ``livewatch`` command line. Errors reach the user as one line and a non-zero exit (``--debug``
shows the traceback). The clock is read here, at the edge, and passed into the logic as ``now``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pandas as pd

from monitor.cli.daemon import run as run_command
from monitor.cli.daemon import status as status_command
from monitor.cli.experiments import experiments
from monitor.cli.ops import backtest, incidents, investigate, silence
from monitor.cli.options import LivewatchGroup, parse_time, utc_now, with_config
from monitor.config import Config, load_config
from monitor.errors import ConfigError, database_reason

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
    problems = check_database(config, source) + check_executor(config) + check_slack(config, os.environ)
    if problems:
        raise ConfigError(problems)
    click.echo(f"ok: {config_path} is valid; {len(config.metrics)} metrics checked against the database")


def check_slack(
    config: Config, env: Mapping[str, str], *, warn: Callable[[str], None] | None = None
) -> list[str]:
    """When a bot token is set: Slack must be reachable at ``api_url`` and ``auth.test`` must pass (a
    revoked token is a config problem). Each optional scope the token lacks is a warning line saying what
    is lost without it (see :data:`SCOPE_COSTS`); only a missing ``chat:write`` is a problem.

    Args:
        config: The loaded config.
        env: Where the token named by ``alerts.slack.token_env`` is read.
        warn: Gets each warning line (default: printed to stderr with ``warning:``).

    Returns:
        One line per problem, each starting with the config key to fix.
    """
    from alerts.sinks.slack import REQUIRED_SCOPES, SCOPES, SlackSink

    slack = config.alerts.slack
    token = env.get(slack.token_env)
    if not token:
        return []
    say = warn or (lambda line: click.echo(f"warning: {line}", err=True))
    where = f"alerts.slack.api_url: {slack.api_url}"
    parts = urlsplit(slack.api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{where} is not an http(s) URL (Slack's is https://slack.com/api/)"]
    if not parts.path.endswith("/"):
        return [f"{where} must end with '/' (methods are joined to it: https://slack.com/api/auth.test)"]
    timeout = max(1, int(slack.timeout.total_seconds()))
    sink = SlackSink.from_token(token, api_url=slack.api_url, timeout=timeout, max_retries=0)
    check = sink.check()
    if not check.ok and check.scopes is None:  # auth.test itself failed: ask again to say why
        return [_auth_problem(sink, slack.api_url, slack.token_env, timeout) or check.detail]
    if check.scopes is None:
        say("alerts.slack: Slack did not list the token's scopes (x-oauth-scopes); they were not checked")
    problems: list[str] = []
    for scope in check.missing:
        line = f"alerts.slack: token lacks {scope}: {SCOPE_COSTS.get(scope, SCOPES[scope])}"
        if scope in REQUIRED_SCOPES:
            problems.append(line)
        else:
            say(line)
    return problems


#: What check-config says a missing scope costs (the sink's :data:`~alerts.sinks.slack.SCOPES` text
#: is the fallback).
SCOPE_COSTS = {
    "chat:write": "nothing can be posted or edited (required: add it and reinstall the app)",
    "channels:read": "channel names cannot be resolved to ids before the first post, so crash recovery "
    "cannot look up a post interrupted before then (at most one duplicate after a crash)",
    "groups:read": "private channel names cannot be resolved to ids (as channels:read, for private channels)",
    "channels:history": "crash recovery cannot look up an earlier post, reply or chart upload "
    "(at most one duplicate after a crash)",
    "groups:history": "crash recovery in private channels cannot look up an earlier post "
    "(at most one duplicate after a crash)",
    "files:write": "messages go out without their chart",
    "usergroups:read": "Slack actions cannot be authorised by user group",
}


def _auth_problem(sink: Any, api_url: str, token_env: str, timeout: int) -> str | None:
    """Why ``auth.test`` fails, as one line naming the key to fix; None if it passes this time."""
    from http.client import HTTPException
    from urllib.error import URLError

    from slack_sdk.errors import SlackApiError, SlackClientError

    from alerts.sinks.slack import PERMANENT_ERRORS

    try:
        sink.client.auth_test()
    except SlackApiError as exc:
        code = str(exc.response.get("error") or "unknown_error")
        status = exc.response.status_code
        if code.startswith("Received a response in a non-JSON format"):
            return f"alerts.slack.api_url: {api_url} answered HTTP {status} without JSON: not Slack's Web API"
        fix = PERMANENT_ERRORS.get(code)
        return f"alerts.slack: {token_env} was refused by auth.test: {code}" + (f": {fix}" if fix else "")
    except (URLError, OSError, HTTPException, SlackClientError) as exc:
        return f"alerts.slack.api_url: cannot reach {api_url} ({_network_reason(exc, timeout)})"
    return None


#: Dask's default scheduler port, when ``executor.address`` names none.
DASK_SCHEDULER_PORT = 8786
#: Seconds ``check-config`` waits for the Dask scheduler to accept a connection.
DASK_PROBE_TIMEOUT = 2


def check_executor(config: Config, *, timeout: int = DASK_PROBE_TIMEOUT) -> list[str]:
    """A ``dask`` executor's scheduler must accept a TCP connection at ``executor.address``.

    Only ``tcp://`` and ``tls://`` addresses (or a bare ``host:port``) are probed; other transports are
    left to the daemon's start-up. The probe opens and closes a socket: no Dask import, no handshake.
    """
    import socket

    executor = config.executor
    if executor.type != "dask" or not executor.address:
        return []
    address = executor.address if "://" in executor.address else f"tcp://{executor.address}"
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls"):
        return []
    try:
        port = parts.port or DASK_SCHEDULER_PORT
    except ValueError:
        return [f"executor.address: {executor.address!r} has no valid port, e.g. tcp://scheduler:8786"]
    if not parts.hostname:
        return [f"executor.address: {executor.address!r} names no host, e.g. tcp://scheduler:8786"]
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        reason = _network_reason(exc, timeout, timeout_key=None)
        return [
            f"executor.address: cannot reach the Dask scheduler at {parts.hostname}:{port} ({reason}); "
            "start it (dask scheduler) or fix the address"
        ]
    return []


def _network_reason(
    exc: BaseException, timeout: int, *, timeout_key: str | None = "alerts.slack.timeout"
) -> str:
    """A few words for a connection failure (``connection refused``, ``host not found``, ...)."""
    import socket
    import ssl
    from http.client import RemoteDisconnected
    from urllib.error import URLError

    reason: object = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host not found"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout} s" + (f" ({timeout_key})" if timeout_key else "")
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {getattr(reason, 'reason', None) or reason}"
    if isinstance(reason, RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def check_database(config: Config, source: Any) -> list[str]:
    from sqlalchemy.exc import SQLAlchemyError

    from monitor.source import check_metrics

    try:
        return check_metrics(source, config.metrics)
    except SQLAlchemyError as exc:
        reason = database_reason(exc)
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
        reason = database_reason(exc)
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
