"""Strict config: every bad input fails with its key path and a fix; secrets never leak."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config, parse_config, parse_duration
from monitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "database": {"url": "sqlite:///x.db"},
    "metrics": [
        {"name": "user_reports", "source": {"table": "facts"}, "kind": "count", "value": "reports"},
        {
            "name": "violation_rate",
            "source": {"table": "facts"},
            "kind": "ratio",
            "numerator": "violations",
            "denominator": "reviews",
        },
    ],
}


def with_change(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert {m.name for m in config.metrics} >= {
        "user_reports",
        "violation_rate",
        "report_rate_per_1k",
        "bans",
        "review_latency",
    }
    assert all(m.granularity == timedelta(hours=1) for m in config.metrics)


def test_defaults_fill_unset_fields_and_metric_overrides_win() -> None:
    data = with_change(["metrics", 0, "direction"], "up")
    data["defaults"] = {"direction": "down", "granularity": "5m"}
    config = parse_config(data, env={})
    assert config.metrics[0].direction == "up"  # the metric's own value wins
    assert config.metrics[1].direction == "down"  # inherited from defaults
    assert config.metrics[1].granularity == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # a misspelled key names its full path
        (with_change(["metrics", 1, "denominatr"], "reviews"), "metrics[1].denominatr: unknown key"),
        # a wrong type names the key
        (with_change(["metrics", 0, "threshold"], "high"), "metrics[0].threshold:"),
        # a ratio without its denominator says what is needed
        (with_change(["metrics", 1, "denominator"], None), "needs both 'numerator' and 'denominator'"),
        # a count metric needs its value column
        (with_change(["metrics", 0, "value"], None), "kind 'count' needs 'value'"),
        # an unknown kind lists the choices
        (with_change(["metrics", 0, "kind"], "gauge"), "metrics[0].kind: Input should be 'count' or 'ratio'"),
        # bad durations explain the format
        (with_change(["metrics", 0, "granularity"], "hourly"), "use a number and a unit"),
        # a query must use the bound parameters
        (with_change(["metrics", 0, "source"], {"query": "SELECT * FROM facts"}), ":start and :end"),
        # a table name cannot smuggle SQL
        (with_change(["metrics", 0, "source"], {"table": "facts; DROP TABLE x"}), "not a plain identifier"),
        # table and query are exclusive
        (with_change(["metrics", 0, "source"], {"table": "a", "query": "x :start :end"}), "exactly one of"),
        # names identify metrics
        (with_change(["metrics", 1, "name"], "user_reports"), "duplicate metric names ['user_reports']"),
        # routes may only reference known metrics
        (
            {**BASE, "alerts": {"routes": [{"match": {"metric": "user_report"}, "channel": "#x"}]}},
            "alerts.routes[0].match.metric: unknown metric 'user_report'",
        ),
        # dask needs an address
        ({**BASE, "executor": {"type": "dask"}}, "needs 'address'"),
        # top-level typo
        ({**BASE, "metrcs": []}, "metrcs: unknown key"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_env_substitution_and_missing_variable() -> None:
    data = with_change(["database", "url"], "postgresql+psycopg://lw:${DB_PASSWORD}@db/warehouse")
    config = parse_config(data, env={"DB_PASSWORD": "s3cret"})
    assert config.database.url.endswith("lw:s3cret@db/warehouse")
    with pytest.raises(ConfigError, match=r"database.url: environment variable DB_PASSWORD is not set"):
        parse_config(data, env={})


def test_secret_never_appears_in_errors() -> None:
    data = with_change(["metrics", 0, "threshold"], "${TOKEN}")
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={"TOKEN": "xoxb-very-secret"})
    assert "xoxb-very-secret" not in str(caught.value)
    assert "metrics[0].threshold" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
