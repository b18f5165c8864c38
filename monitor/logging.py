"""Logging set-up in one place: structlog to stderr, JSON lines when stderr is not a terminal.

Every line can carry bound context (``run_id``, ``metric``, ``region``). Noisy third-party loggers
(cmdstanpy, prophet) are quieted here.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and stdlib logging to stderr; ``json=None`` picks JSON unless stderr is a TTY."""
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("cmdstanpy", "prophet", "prophet.plot", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack_sdk logs every failed attempt itself; the sinks report failures once, with context.
    logging.getLogger("slack_sdk").setLevel(logging.CRITICAL)
