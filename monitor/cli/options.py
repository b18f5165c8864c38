"""What every ``livewatch`` command shares: the clock, time parsing, the ``--config`` option and the group
that turns errors into one line. The wall clock is read here, at the edge, and passed into the logic."""

from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from monitor.errors import ConfigError, LivewatchError

__all__ = ["DEFAULT_CONFIG", "LivewatchGroup", "parse_time", "utc_now", "with_config"]

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


def with_config(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--config`` option every livewatch command takes."""
    return click.option(
        "--config",
        "config_path",
        default=DEFAULT_CONFIG,
        show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Path of the YAML configuration.",
    )(func)


class LivewatchGroup(click.Group):
    """Turns every livewatch error into one line on stderr and exit code 1 (2 for config errors)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(fit_line(f"error: {problem}", err=True), err=True)
            _maybe_traceback(ctx)
            sys.exit(2)
        except (LivewatchError, ValueError, OSError) as exc:
            click.echo(fit_line(f"error: {exc}", err=True), err=True)
            _maybe_traceback(ctx)
            sys.exit(1)
        except Exception as exc:  # the last resort: still one line, the traceback on --debug
            click.echo(
                f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)", err=True
            )
            _maybe_traceback(ctx)
            sys.exit(1)


def fit_line(line: str, *, err: bool = False) -> str:
    """A line for stdout (stderr with ``err``) wrapped at spaces to the terminal's width, its continuation
    lines indented under it; piped output keeps one line per item for grep."""
    if not (sys.stderr if err else sys.stdout).isatty():
        return line
    width = shutil.get_terminal_size().columns
    indent = line[: len(line) - len(line.lstrip(" "))]
    return click.wrap_text(
        line.lstrip(" "),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        preserve_paragraphs=False,
    )


def _maybe_traceback(ctx: click.Context) -> None:
    if ctx.find_root().params.get("debug"):
        traceback.print_exc()
