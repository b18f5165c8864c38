"""One log format for every line: livewatch's events and stdlib loggers (apscheduler, alembic) alike."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from monitor.logging import configure_from_config, configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _emit() -> None:
    structlog.get_logger("livewatch").info("tick_done", run_id="r1", metric="bans")
    logging.getLogger("apscheduler.scheduler").info("Scheduler started")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0002 -> 0003")


def test_json_format_applies_to_every_library() -> None:
    out = io.StringIO()
    configure_logging("INFO", format="json", stream=out)
    _emit()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["logger"], d["event"]) for d in lines] == [
        ("livewatch", "tick_done"),
        ("apscheduler.scheduler", "Scheduler started"),
        ("alembic.runtime.migration", "Running upgrade 0002 -> 0003"),
    ]
    assert lines[0]["run_id"] == "r1" and all(d["level"] == "info" and "timestamp" in d for d in lines)


def test_console_format_is_the_same_shape_for_every_library() -> None:
    out = io.StringIO()
    configure_logging("INFO", format="console", stream=out)
    _emit()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all("[info" in line for line in lines)
    assert "[apscheduler.scheduler]" in lines[1] and "metric=bans" in lines[0]
    assert not any(line.lstrip().startswith("{") for line in lines)


def test_level_filters_library_lines_too() -> None:
    out = io.StringIO()
    configure_logging("WARNING", format="json", stream=out)
    _emit()
    assert out.getvalue() == ""


def test_bad_format_or_level_is_named() -> None:
    with pytest.raises(ValueError, match=r"logging\.format 'xml'"):
        configure_logging("INFO", format="xml")
    with pytest.raises(ValueError, match=r"logging\.level 'loud'"):
        configure_logging("loud")


def test_config_section_applies_and_the_command_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        "monitor.logging.configure_logging", lambda level, format=None: seen.append((level, format))
    )

    class Section:
        format, level = "json", "info"

    class Config:
        logging = Section()

    configure_from_config(Config())
    configure_from_config(Config(), level="DEBUG", format="console")
    assert seen == [("info", "json"), ("DEBUG", "console")]
