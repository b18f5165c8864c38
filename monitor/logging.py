"""Logging set-up in one place: one format for every line on stderr, ours and every library's.

``configure_logging(level, format=...)`` routes structlog *and* the standard library's root logger through
the same renderer (structlog's :class:`~structlog.stdlib.ProcessorFormatter`), so apscheduler, alembic,
prophet or SQLAlchemy lines come out in the same format as livewatch's own events:

* ``format="json"``: one JSON object per line (``timestamp``, ``level``, ``logger``, ``event`` and the
  bound context such as ``run_id``, ``metric``, ``region``); what log shippers want.
* ``format="console"``: aligned ``key=value`` text for people.
* ``format=None``: JSON unless stderr is a terminal.

The config's ``logging: {format, level}`` section is applied with :func:`configure_from_config`. Noisy
third-party loggers (cmdstanpy, prophet, matplotlib) are quieted here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

__all__ = ["LOG_FORMATS", "LogFormat", "configure_from_config", "configure_logging"]

LogFormat = Literal["json", "console"]
LOG_FORMATS: tuple[str, ...] = ("json", "console")

#: Libraries that log too much at INFO for a daemon's stderr.
_NOISY = ("cmdstanpy", "prophet", "prophet.plot", "matplotlib")


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, format: str | None = None, stream: Any = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) in one format.

    Args:
        level: Minimum level name (``DEBUG``, ``INFO``, ``WARNING``...), applied to the root logger.
        json: Legacy switch; ``format`` wins when both are given.
        format: ``"json"`` or ``"console"``; None picks JSON unless the stream is a terminal.
        stream: Where lines go (default ``sys.stderr``).

    Raises:
        ValueError: ``format`` or ``level`` is not a known value.
    """
    out = sys.stderr if stream is None else stream
    if format is None:
        use_json = (not out.isatty()) if json is None else json
    elif format in LOG_FORMATS:
        use_json = format == "json"
    else:
        raise ValueError(f"logging.format {format!r} is not one of {', '.join(LOG_FORMATS)}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"logging.level {level!r} is not a level name (DEBUG, INFO, WARNING, ERROR)")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _shared_processors()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
    # slack_sdk logs every failed attempt itself; the sinks report failures once, with context.
    logging.getLogger("slack_sdk").setLevel(logging.CRITICAL)
    # Libraries that install their own handlers (cmdstanpy) would print twice and in their own format.
    for name in ("cmdstanpy", "alembic", "apscheduler"):
        lib = logging.getLogger(name)
        for old in list(lib.handlers):
            lib.removeHandler(old)
        lib.propagate = True


def configure_from_config(config: Any, *, level: str | None = None, format: str | None = None) -> None:
    """Apply the config's ``logging: {format, level}``; ``level`` / ``format`` given here (the command
    line's) win."""
    section = getattr(config, "logging", None)
    configure_logging(
        level or getattr(section, "level", None) or "WARNING",
        format=format or getattr(section, "format", None),
    )
