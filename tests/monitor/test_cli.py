"""The CLI surface: help, check-config's one-line problems, no tracebacks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from monitor.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A one-row warehouse with the demo's columns (check-config only needs the schema)."""
    path = tmp_path / "w.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE live_safety_hourly (ts DATETIME, region TEXT, category TEXT, language TEXT, "
                "device TEXT, creator_tier TEXT, views INT, reports INT, reviews INT, violations INT, "
                "bans INT, review_seconds REAL)"
            )
        )
    engine.dispose()
    return path


def config_with(tmp_path: Path, warehouse: Path, *replacements: tuple[str, str]) -> Path:
    text = (REPO / "config.yaml").read_text()
    text = text.replace("sqlite:///livewatch-demo.db", f"sqlite:///{warehouse}")
    text = text.replace("sqlite:///livewatch-state.db", f"sqlite:///{tmp_path / 'state.db'}")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("check-config", "demo", "run", "db"):
        assert command in result.output


def test_check_config_accepts_the_shipped_config(tmp_path: Path, warehouse: Path) -> None:
    result = CliRunner().invoke(
        cli, ["check-config", "--config", str(config_with(tmp_path, warehouse))], env={}
    )
    assert result.exit_code == 0, result.output
    assert "5 metrics checked" in result.output


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        # a misspelled key: one line naming the path
        (("  console: true", "  consol: true"), "error: alerts.consol: unknown key"),
        # a column missing from the table: one line naming the metric index, the key and a suggestion
        (
            ("denominator: reviews", "denominator: reviewd"),
            "error: metrics[1].denominator: unknown column 'reviewd' in table live_safety_hourly "
            "(did you mean 'reviews'?)",
        ),
        # a table that does not exist
        (
            ("source: {table: live_safety_hourly}", "source: {table: live_safety}"),
            "error: metrics[0].source: table 'live_safety' does not exist; "
            "did you mean 'live_safety_hourly'?",
        ),
    ],
)
def test_check_config_reports_one_line_per_problem(
    tmp_path: Path, warehouse: Path, replacement: tuple[str, str], expected: str
) -> None:
    config = config_with(tmp_path, warehouse, replacement)
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config)], env={})
    assert result.exit_code == 2
    assert any(line.startswith(expected) for line in result.output.splitlines()), result.output
    assert "Traceback" not in result.output


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check-config", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_check_config_probes_the_dask_scheduler(tmp_path: Path, warehouse: Path) -> None:
    closed = _free_port()  # bound then released: nothing listens there
    executor = ("type: local ", f"{{type: dask, address: 'tcp://127.0.0.1:{closed}'}} ")
    result = CliRunner().invoke(
        cli, ["check-config", "--config", str(config_with(tmp_path, warehouse, executor))], env={}
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: executor.address: cannot reach the Dask scheduler at 127.0.0.1:{closed} "
        "(connection refused); start it (dask scheduler) or fix the address"
    ]

    with socket.create_server(("127.0.0.1", 0)) as scheduler:  # a listening socket is all the probe needs
        port = scheduler.getsockname()[1]
        executor = ("type: local ", f"{{type: dask, address: 'tcp://127.0.0.1:{port}'}} ")
        result = CliRunner().invoke(
            cli, ["check-config", "--config", str(config_with(tmp_path, warehouse, executor))], env={}
        )
    assert result.exit_code == 0, result.output


class _Terminal:
    def isatty(self) -> bool:
        return True


CATCH_UP = (
    "  user_reports/JP/20261120T210000Z: user_reports in JP, warning, started 11-20 16:00 (opened 11-20 "
    "21:00), resolved 11-21 04:00, +11%"
)


@pytest.mark.parametrize("columns", [60, 80, 100, 200])
@pytest.mark.parametrize("err", [False, True])
def test_fit_line_wraps_at_spaces_under_its_own_indent(
    monkeypatch: pytest.MonkeyPatch, columns: int, err: bool
) -> None:
    import os
    import sys

    from monitor.cli.options import fit_line

    monkeypatch.setattr(sys, "stderr" if err else "stdout", _Terminal())
    monkeypatch.setattr("shutil.get_terminal_size", lambda *_: os.terminal_size((columns, 24)))
    lines = fit_line(CATCH_UP, err=err).splitlines()
    assert all(len(line) <= columns for line in lines)
    assert " ".join(line.strip() for line in lines) == CATCH_UP.strip()  # cut at spaces only
    assert lines[0].startswith("  user_reports/JP/20261120T210000Z:")  # the id whole, on the first line
    assert all(line.startswith("      ") for line in lines[1:])  # continuation under the item
    assert (len(lines) == 1) is (columns >= len(CATCH_UP))


def test_fit_line_leaves_piped_output_one_line_per_item() -> None:
    from monitor.cli.options import fit_line

    assert fit_line(CATCH_UP) == CATCH_UP  # pytest captures stdout: not a terminal
