"""The people-facing commands through click's test runner: JSON shapes, files written, one-line errors.

Commands are mounted on a :class:`monitor.cli.LivewatchGroup` exactly as ``livewatch`` mounts them; the wall
clock of the CLI (``utc_now``) is pinned so every run is reproducible.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from alerts.incidents import group_signals
from alerts.model import AlertSignal, RootCause
from monitor.cli import ops as cli_ops
from monitor.cli.options import LivewatchGroup
from monitor.config import Config, parse_config
from monitor.pipeline.executor import InlineExecutor
from monitor.tools.backtest import executor_for, run_backtest
from monitor.wiring import open_store, warehouse_source
from tests.monitor.test_investigate import END, TRUTH, demo_config, demo_warehouse

NOW = END + timedelta(hours=3)


@pytest.fixture
def cli() -> click.Group:
    group = LivewatchGroup("livewatch")
    for command in (cli_ops.investigate, cli_ops.incidents, cli_ops.silence, cli_ops.backtest):
        group.add_command(command)
    return group


@pytest.fixture
def config_path(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setattr(cli_ops, "utc_now", lambda: NOW)
    monkeypatch.setenv("USER", "tester")
    warehouse = demo_warehouse(tmp_path_factory)
    config = demo_config(warehouse, tmp_path / "state.db")
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database": {"url": config.database.url},
                "state": {"url": config.state.url},
                "regions": dict(config.regions),
                "defaults": {
                    "history": "10d",
                    "slice_dimensions": ["category", "language", "device", "creator_tier"],
                },
                "metrics": [
                    {
                        "name": "user_reports",
                        "source": {"table": "live_safety_hourly"},
                        "kind": "count",
                        "value": "reports",
                        "direction": "up",
                    },
                    {
                        "name": "bans",
                        "source": {"table": "live_safety_hourly"},
                        "kind": "count",
                        "value": "bans",
                        "direction": "up",
                    },
                ],
                "alerts": {"jsonl_path": None, "console": True},
            }
        )
    )
    return path


def invoke(cli: click.Group, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_investigate_json_chart_and_html(cli: click.Group, config_path: Path, tmp_path: Path) -> None:
    truth = TRUTH[("br_hate_spike", "user_reports")]
    chart, page = tmp_path / "chart.png", tmp_path / "report.html"
    result = invoke(
        cli,
        "investigate",
        "user_reports",
        "--region",
        "BR",
        "--at",
        f"{truth.start:%Y-%m-%dT%H:%MZ}",
        "--config",
        str(config_path),
        "--json",
        "--chart",
        str(chart),
        "--html",
        str(page),
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["root_causes"][0]["segment"] == truth.root_cause
    assert payload["window"] == {
        "start": "2026-11-19T20:00Z",
        "end": "2026-11-20T01:00Z",
        "at": "2026-11-19T20:00Z",
    }
    assert [d["name"] for d in payload["detectors"]] == ["stack", "robust", "cusum"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    # self-contained: inline SVG and script, nothing loaded from elsewhere
    assert "<svg" in text and "series-data" in text and "src=" not in text and "href=" not in text
    assert f"chart written to {chart}" in result.stderr


def test_investigate_tables(cli: click.Group, config_path: Path) -> None:
    truth = TRUTH[("mx_bullying_raid", "user_reports")]
    result = invoke(
        cli,
        "investigate",
        "user_reports",
        "--region",
        "MX",
        "--from",
        f"{truth.start:%Y-%m-%dT%H:%MZ}",
        "--to",
        f"{truth.end:%Y-%m-%dT%H:%MZ}",
        "--config",
        str(config_path),
    )
    assert result.exit_code == 0
    for heading in (
        "Observed vs expected",
        "Detectors",
        "Changepoints",
        "Root causes",
        "Other metrics in MX",
    ):
        assert heading in result.stdout
    assert "category=bullying" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # unknown metric: the configured ones are listed
        (
            ["investigate", "user_report", "--region", "BR", "--at", "2026-11-20T00:00Z"],
            "error: unknown metric 'user_report'; configured metrics: user_reports, bans",
        ),
        # unknown region: the regions with data are listed
        (
            ["investigate", "user_reports", "--region", "ZZ", "--at", "2026-11-20T00:00Z"],
            "error: metric 'user_reports' has no region 'ZZ'; regions with data: BR, DE",
        ),
        # a silence for a metric that does not exist
        (
            ["silence", "add", "--metric", "ban", "--for", "2h", "--reason", "x"],
            "error: unknown metric 'ban'; configured metrics: user_reports, bans",
        ),
        # removing a silence that does not exist
        (["silence", "remove", "s-nope"], "error: no silence 's-nope'; active silences: none"),
        # an incident that does not exist
        (["incidents", "ack", "nope", "--by", "x"], "error: no incident 'nope'"),
        # a backtest of an unknown metric
        (["backtest", "--metric", "nope", "--workers", "1"], "error: unknown metric(s) nope"),
    ],
)
def test_errors_are_one_line(cli: click.Group, config_path: Path, args: list[str], says: str) -> None:
    result = invoke(cli, *args, "--config", str(config_path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(says) and len([ln for ln in lines if ln.startswith("error")]) == 1


def test_usage_errors(cli: click.Group, config_path: Path) -> None:
    neither = invoke(cli, "investigate", "user_reports", "--region", "BR", "--config", str(config_path))
    assert neither.exit_code == 2 and "give either --at T or --from T1 --to T2" in neither.stderr
    both = invoke(cli, "backtest", "--budget", "3", "--cost-ratio", "5", "--config", str(config_path))
    assert both.exit_code == 2 and "not both" in both.stderr


def test_silence_add_list_remove(cli: click.Group, config_path: Path) -> None:
    added = invoke(
        cli,
        "silence",
        "add",
        "--metric",
        "bans",
        "--region",
        "MX",
        "--for",
        "2h",
        "--reason",
        "raid handled",
        "--config",
        str(config_path),
        "--json",
    )
    assert added.exit_code == 0
    silence = json.loads(added.stdout)
    assert silence["created_by"] == "tester"
    assert silence["expires_at"] == (NOW + timedelta(hours=2)).isoformat()
    assert [m["name"] for m in silence["matchers"]] == ["metric", "region"]

    listed = json.loads(invoke(cli, "silence", "list", "--config", str(config_path), "--json").stdout)
    assert [(s["id"], s["active"]) for s in listed] == [(silence["id"], True)]
    table = _invoke_at(cli, 120, "silence", "list", "--config", str(config_path)).stdout
    assert "metric=bans, region=MX" in table and "raid handled" in table
    narrow = _invoke_at(cli, 80, "silence", "list", "--config", str(config_path)).stdout
    assert silence["id"] in narrow and "metric=bans, region=MX" in narrow  # whole even at 80 columns
    assert max(len(line) for line in narrow.splitlines()) <= 80

    removed = invoke(cli, "silence", "remove", silence["id"], "--config", str(config_path))
    assert removed.stdout.strip() == f"removed silence {silence['id']}"
    assert json.loads(invoke(cli, "silence", "list", "--config", str(config_path), "--json").stdout) == []


def test_silence_needs_a_matcher_and_a_valid_duration(cli: click.Group, config_path: Path) -> None:
    nothing = invoke(cli, "silence", "add", "--for", "2h", "--reason", "x", "--config", str(config_path))
    assert nothing.exit_code == 2 and "give --metric, --region or both" in nothing.stderr
    bad = invoke(
        cli,
        "silence",
        "add",
        "--region",
        "BR",
        "--for",
        "soon",
        "--reason",
        "x",
        "--config",
        str(config_path),
    )
    assert bad.exit_code == 2 and "invalid duration 'soon'" in bad.stderr


def seed_incident(config_path: Path, *, region: str = "MX") -> str:
    from monitor.config import load_config

    store = open_store(load_config(config_path))
    opened = NOW - timedelta(hours=2)
    signal = AlertSignal(
        metric="user_reports",
        region=region,
        kind="spike",
        observed=900.0,
        expected=500.0,
        change_pct=80.0,
        score=9.0,
        volume=900.0,
        start=opened - timedelta(hours=1),
        end=opened - timedelta(hours=1),
        root_causes=(RootCause("category=bullying", 0.95),),
        investigate="livewatch investigate user_reports --region MX "
        f"--at {opened - timedelta(hours=1):%Y-%m-%dT%H:%MZ}",
        unit="reports",
        volume_unit="reports",
        bucket=timedelta(hours=1),
        threshold=4.0,
    )
    change = group_signals([], [signal], opened).changes[0]
    store.save(change.incident)
    for event in change.events:
        store.record_event(event)
    return change.incident.id


def test_incident_lifecycle_and_stats(cli: click.Group, config_path: Path) -> None:
    incident_id = seed_incident(config_path)
    config = ["--config", str(config_path)]

    listed = json.loads(
        invoke(cli, "incidents", "list", "--open", "--metric", "user_reports", *config, "--json").stdout
    )
    assert [(i["id"], i["state"], i["root_causes"][0]["segment"]) for i in listed] == [
        (incident_id, "open", "category=bullying")
    ]
    assert json.loads(invoke(cli, "incidents", "list", "--region", "BR", *config, "--json").stdout) == []

    acked = invoke(cli, "incidents", "ack", incident_id, "--by", "alice", *config)
    assert acked.stdout.strip() == f"acknowledged {incident_id} by alice"
    resolved = invoke(cli, "incidents", "resolve", incident_id, "--note", "raid accounts banned", *config)
    assert resolved.exit_code == 0 and f"resolved {incident_id} by tester" in resolved.stdout
    again = invoke(cli, "incidents", "resolve", incident_id, *config)
    assert again.exit_code == 1 and "cannot resolve incident" in again.stderr

    shown = json.loads(invoke(cli, "incidents", "show", incident_id, *config, "--json").stdout)
    assert shown["state"] == "resolved" and shown["time_to_acknowledge_minutes"] == 120.0
    assert [e["kind"] for e in shown["events"]][:1] == ["opened"]
    assert {"acknowledged", "resolved"} <= {e["kind"] for e in shown["events"]}
    assert any(e["detail"] == "note: raid accounts banned" for e in shown["events"])

    stats = json.loads(invoke(cli, "incidents", "stats", *config, "--json").stdout)
    assert (
        stats["all"]
        == stats["user_reports"]
        == {
            "incidents": 1,
            "acknowledged": 1,
            "resolved": 1,
            "median_time_to_acknowledge_minutes": 120.0,
            "median_time_to_resolve_minutes": 120.0,
            "false_positives": 0,
            "false_positive_rate": 0.0,
        }
    )
    table = invoke(cli, "incidents", "show", incident_id, *config).stdout
    assert "Members" in table and "note: raid accounts banned" in table


def test_backtest_json_and_chart(cli: click.Group, config_path: Path, tmp_path: Path) -> None:
    spike = TRUTH[("br_hate_spike", "user_reports")]
    chart = tmp_path / "tradeoff.png"
    result = invoke(
        cli,
        "backtest",
        "--metric",
        "user_reports",
        "--from",
        f"{spike.start - timedelta(hours=4):%Y-%m-%dT%H:%MZ}",
        "--to",
        f"{spike.start + timedelta(hours=4):%Y-%m-%dT%H:%MZ}",
        "--thresholds",
        "4,8",
        "--budget",
        "200",
        "--workers",
        "1",
        "--chart",
        str(chart),
        "--config",
        str(config_path),
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [s["threshold"] for s in payload["settings"]] == [4.0, 8.0]
    assert payload["recommendation"]["rule"] == "budget"
    assert payload["settings"][0]["per_metric"]["user_reports"]["recall"] == 1.0
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert "scoring in this process" in result.stderr


def test_backtest_tables(cli: click.Group, config_path: Path) -> None:
    spike = TRUTH[("br_hate_spike", "user_reports")]
    result = invoke(
        cli,
        "backtest",
        "--metric",
        "user_reports",
        "--from",
        f"{spike.start - timedelta(hours=4):%Y-%m-%dT%H:%MZ}",
        "--to",
        f"{spike.start + timedelta(hours=2):%Y-%m-%dT%H:%MZ}",
        "--thresholds",
        "4",
        "--workers",
        "1",
        "--cost-ratio",
        "5",
        "--config",
        str(config_path),
    )
    assert result.exit_code == 0
    assert "Sensitivity sweep" in result.stdout and "Recommended threshold 4" in result.stdout


def dask_config(address: str) -> Config:
    return parse_config(
        {
            "database": {"url": "sqlite://"},
            "metrics": [{"name": "m", "source": {"table": "t"}, "kind": "count", "value": "v"}],
            "executor": {"type": "dask", "address": address},
        },
        env={},
    )


def test_dask_executor_without_dask_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    with executor_for(dask_config("tcp://127.0.0.1:1"), workers=1) as (executor, note):
        assert isinstance(executor, InlineExecutor)
    assert "needs the 'distributed' package" in note and note.endswith("scoring in this process")


@pytest.mark.slow
def test_backtest_runs_on_a_dask_cluster(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    spike = TRUTH[("br_hate_spike", "user_reports")]
    base = demo_config(demo_warehouse(tmp_path_factory), tmp_path / "state.db")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        config = base.model_copy(update={"executor": dask_config(c.scheduler_address).executor})
        with executor_for(config) as (executor, note):
            assert note.startswith(f"Dask scheduler {c.scheduler_address}")
            result, series = run_backtest(
                config,
                warehouse_source(config),
                [],
                metrics=["user_reports"],
                start=spike.start,
                end=spike.start + timedelta(hours=6),
                thresholds=[4.0],
                executor=executor,
            )
    assert len(series) == 12 and result.refits == 12


def test_start_of_data_is_reported(cli: click.Group, config_path: Path) -> None:
    early = datetime(2026, 11, 5, 12, tzinfo=UTC)
    result = invoke(
        cli,
        "investigate",
        "user_reports",
        "--region",
        "BR",
        "--at",
        f"{early:%Y-%m-%dT%H:%MZ}",
        "--config",
        str(config_path),
    )
    assert result.exit_code == 1 and "history before it" in result.stderr


# -- every table fits the terminal it is printed on ---------------------------------------------------------
def _invoke_at(cli: click.Group, columns: int, *args: str) -> Result:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_incident_tables_fit_the_terminal_and_keep_ids_whole(
    cli: click.Group, config_path: Path, columns: int
) -> None:
    incident_id = seed_incident(config_path)
    config = ["--config", str(config_path)]
    listed = _invoke_at(cli, columns, "incidents", "list", *config)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, listed.stdout
    assert any(incident_id in line for line in lines), "the id show/ack/resolve need is on one line, whole"
    shown = _invoke_at(cli, columns, "incidents", "show", incident_id, *config)
    assert max(len(line) for line in shown.stdout.splitlines()) <= columns, shown.stdout
    at = NOW - timedelta(hours=3)
    command = f"livewatch investigate user_reports --region MX --at {at:%Y-%m-%dT%H:%MZ}"
    flat = " ".join(shown.stdout.split())
    assert command in flat, "the suggested command is whole (or wrapped at spaces only)"
    if columns >= 100:
        assert any(command in line for line in shown.stdout.splitlines()), "one line at 100 columns"


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_incident_list_keeps_long_ids_whole_at_any_width(
    cli: click.Group, config_path: Path, columns: int
) -> None:
    """An experiment's incident id is about 70 characters: below a width that fits it beside the other
    columns, each incident is a block (its id alone on a line, the details wrapped below)."""
    long_id = seed_incident(config_path, region="experiment/autoplay_next/autoplay")
    short_id = seed_incident(config_path)
    listed = _invoke_at(cli, columns, "incidents", "list", "--config", str(config_path))
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, listed.stdout
    for incident_id in (long_id, short_id):
        assert any(incident_id in line for line in lines), listed.stdout
    assert len(lines) <= 12, "no column squeezed into one character per line"


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_investigate_fits_the_terminal(cli: click.Group, config_path: Path, columns: int) -> None:
    truth = TRUTH[("mx_bullying_raid", "user_reports")]
    result = _invoke_at(
        cli,
        columns,
        "investigate",
        "user_reports",
        "--region",
        "MX",
        "--at",
        f"{truth.start:%Y-%m-%dT%H:%MZ}",
        "--no-related",
        "--config",
        str(config_path),
    )
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= columns, result.stdout
