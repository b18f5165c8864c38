"""Strict config: every bad input fails with its key path and a fix; secrets never leak."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import (
    INHERITED,
    Metric,
    MetricConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
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


def with_change(path: list[str | int], value: Any, *more: tuple[list[str | int], Any]) -> dict[str, Any]:
    """A deep copy of BASE with ``value`` at ``path`` (missing mappings on the way are created)."""
    data = copy.deepcopy(BASE)
    for where, what in [(path, value), *more]:
        node: Any = data
        for key in where[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[where[-1]] = what
    return data


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    return caught.value.problems


WINDOW = {"name": "w", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
REGIONS = (["regions"], {"BR": "BR", "US": "US"})


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


# One row per nonsense value: (mutation of BASE, key path the error must name, phrase it must contain).
SEMANTIC_CASES: list[tuple[dict[str, Any], str, str]] = [
    # issue 14 -- durations must be positive, bounded, and say why
    # a zero bucket size would divide by zero downstream
    (with_change(["defaults", "granularity"], "0s"), "defaults.granularity", "must be between 1m and 1d"),
    # a huge bucket parses (7 million days fit a timedelta) but is not a bucket; the bound says so
    (with_change(["metrics", 0, "granularity"], "1000000w"), "metrics[0].granularity", "between 1m and 1d"),
    # buckets align to midnight UTC, so the granularity must divide a day
    (with_change(["defaults", "granularity"], "7m"), "defaults.granularity", "does not divide a day"),
    # sub-minute buckets are below the finest supported resolution
    (with_change(["defaults", "granularity"], "30s"), "defaults.granularity", "between 1m and 1d"),
    # a zero catch-up window would never score a missed bucket
    (with_change(["scheduler", "max_catchup"], "0d"), "scheduler.max_catchup", "between 1m and 365d"),
    # a catch-up shorter than one bucket cannot score even the last one
    (with_change(["scheduler", "max_catchup"], "30m"), "scheduler.max_catchup", "shorter than one bucket"),
    # refitting every 0s would refit on every tick
    (with_change(["scheduler", "refit_every"], "0s"), "scheduler.refit_every", "0 refits on every tick"),
    # a zero repeat interval re-sends every open incident on every tick
    (with_change(["alerts", "repeat_interval"], "0m"), "alerts.repeat_interval", "between 1m and 30d"),
    # ... and so does a zero repeat interval on a route
    (
        with_change(["alerts", "routes"], [{"match": {"severity": "critical"}, "repeat_interval": "0s"}]),
        "alerts.routes[0].repeat_interval",
        "between 1m and 30d",
    ),
    # no history at all cannot train anything
    (with_change(["defaults", "history"], "0d"), "defaults.history", "between 2d and 1095d"),
    # a Slack call with a zero timeout always fails
    (with_change(["alerts", "slack", "timeout"], "0s"), "alerts.slack.timeout", "between 1s and 5m"),
    # a duration too large for a timedelta is an error of its key, not an OverflowError
    (with_change(["defaults", "history"], "99999999999d"), "defaults.history", "too large to represent"),
    # the same for the scheduler's durations
    (with_change(["scheduler", "max_catchup"], "1000000000d"), "scheduler.max_catchup", "too large"),
    # the history rule: two daily cycles for sub-daily buckets ...
    (with_change(["defaults", "history"], "1d"), "defaults.history", "between 2d and 1095d"),
    # ... and two weekly cycles for daily buckets, reported at the key the metric wrote
    (
        with_change(["metrics", 0, "granularity"], "1d", (["defaults", "history"], "10d")),
        "metrics[0].granularity",
        "two weekly cycles, i.e. history >= 14d",
    ),
    # a bucket scored only after its whole history has passed is not live monitoring
    (
        with_change(["defaults", "completeness_delay"], "8d"),
        "defaults.completeness_delay",
        "between 0s and 7d",
    ),
    # issue 14 -- numbers must be finite and bounded
    # YAML reads 1e400 as inf: a threshold nothing can exceed
    (
        with_change(["metrics", 0, "threshold"], float("inf")),
        "metrics[0].threshold",
        "must be a finite number",
    ),
    # a scale that overflowed to inf makes every ratio inf
    (with_change(["metrics", 1, "scale"], float("inf")), "metrics[1].scale", "must be a finite number"),
    # nan is no better than inf
    (
        with_change(["defaults", "noise_floors", "min_volume"], float("nan")),
        "defaults.noise_floors.min_volume",
        "finite",
    ),
    # an incident that needs 10**30 clean buckets never resolves
    (with_change(["alerts", "resolve_after"], 10**30), "alerts.resolve_after", "less than or equal to 1000"),
    # a pool of 10**6 processes is a typo
    (with_change(["executor", "workers"], 10**6), "executor.workers", "less than or equal to 1024"),
    # issue 14 -- URLs, countries, channels
    # an unparsable state URL fails at load, and says what a URL looks like
    (with_change(["state", "url"], "::::"), "state.url", "not a valid SQLAlchemy URL"),
    # the same for the warehouse (no ArgumentError escapes)
    (with_change(["database", "url"], "not a url"), "database.url", "not a valid SQLAlchemy URL"),
    # an unknown dialect lists the built-in ones (no NoSuchModuleError escapes)
    (with_change(["database", "url"], "foo://h/db"), "database.url", "unknown database dialect 'foo'"),
    # a known dialect whose driver is missing says what to install
    (
        with_change(["database", "url"], "postgresql+psycopg2://u@h/db"),
        "database.url",
        "pip install psycopg2",
    ),
    # asyncio drivers cannot run livewatch's synchronous engine
    (with_change(["database", "url"], "postgresql+asyncpg://u@h/db"), "database.url", "asyncio driver"),
    # a region mapped to a country with no holiday calendar
    (with_change(["regions"], {"BR": "BR", "XQ": "XQ"}), "regions.XQ", "unknown ISO country code 'XQ'"),
    # an empty default channel would post nowhere
    (
        with_change(["alerts", "slack", "default_channel"], ""),
        "alerts.slack.default_channel",
        "must not be empty",
    ),
    # ... and so would an empty route channel
    (with_change(["alerts", "routes"], [{"channel": " "}]), "alerts.routes[0].channel", "must not be empty"),
    # an empty metrics list says so (not an unknown metric in the window that names one)
    (
        with_change(
            ["metrics"], [], (["alerts", "windows"], [{**WINDOW, "match": {"metric": "user_reports"}}])
        ),
        "metrics",
        "no metrics configured",
    ),
    # issue 18 -- did you mean
    # a misspelled key suggests the closest valid one
    (
        with_change(["metrics", 1, "denominatr"], "reviews"),
        "metrics[1].denominatr",
        "did you mean 'denominator'?",
    ),
    # in nested models too, and lists the valid keys
    (with_change(["scheduler", "mterics_port"], 1), "scheduler.mterics_port", "did you mean 'metrics_port'?"),
    # an alias is suggested as written ('schema', not 'schema_name')
    (with_change(["database", "shema"], "x"), "database.shema", "did you mean 'schema'?"),
    # a misspelled matcher key
    (
        with_change(["alerts", "routes"], [{"match": {"severty": "critical"}}]),
        "alerts.routes[0].match.severty",
        "did you mean 'severity'?",
    ),
    # a misspelled choice
    (with_change(["metrics", 0, "kind"], "cont"), "metrics[0].kind", "did you mean 'count'?"),
    # issue 18 -- an error at the key the user wrote
    # a bad inherited column is reported under defaults (once; see the test below)
    (
        with_change(["defaults", "slice_dimensions"], ["ok", "bad col"]),
        "defaults.slice_dimensions[1]",
        "plain",
    ),
    # a slice dimension that is the series dimension could never split anything
    (
        with_change(["defaults", "slice_dimensions"], ["region"]),
        "defaults.slice_dimensions",
        "series_dimension",
    ),
    # issue 18 -- matchers that can never match
    # severities are info, warning and critical
    (
        with_change(["alerts", "routes"], [{"match": {"severity": "crit"}, "channel": "#x"}]),
        "alerts.routes[0].match.severity",
        "unknown severity 'crit': this matcher can never match (did you mean 'critical'?",
    ),
    # anomaly kinds are spike, dip and level_shift
    (
        with_change(["alerts", "routes"], [{"match": {"kind": "foo"}}]),
        "alerts.routes[0].match.kind",
        "spike, dip",
    ),
    # with regions configured, a region matcher must name one of them
    (
        with_change(["alerts", "routes"], [{"match": {"region": ["BR", "MX"]}}], REGIONS),
        "alerts.routes[0].match.region",
        "unknown region 'MX'",
    ),
    # nested routes are checked too
    (
        with_change(["alerts", "routes"], [{"routes": [{"match": {"kind": "spkie"}}]}]),
        "alerts.routes[0].routes[0].match.kind",
        "did you mean 'spike'?",
    ),
    # an empty list matches nothing
    (
        with_change(["alerts", "routes"], [{"match": {"metric": []}}]),
        "alerts.routes[0].match.metric",
        "empty list",
    ),
    # windows may only name known metrics
    (
        with_change(["alerts", "windows"], [{**WINDOW, "match": {"metric": "nope"}}]),
        "alerts.windows[0].match.metric",
        "unknown metric 'nope'",
    ),
    # issue 18 -- new keys
    # the /metrics bind address is a host, not host:port
    (
        with_change(["scheduler", "metrics_address"], "127.0.0.1:9108"),
        "scheduler.metrics_address",
        "the port is scheduler.metrics_port",
    ),
    # a log format is console or json
    (with_change(["logging", "format"], "jsn"), "logging.format", "did you mean 'json'?"),
    # a log level is one of four
    (with_change(["logging", "level"], "verbose"), "logging.level", "'debug', 'info', 'warning' or 'error'"),
    # issue 13 -- the per-metric detector is one of the two
    (with_change(["metrics", 0, "detector"], "prophet"), "metrics[0].detector", "'stack' or 'streaming'"),
]


@pytest.mark.parametrize(("data", "path", "phrase"), SEMANTIC_CASES)
def test_nonsense_fails_at_its_key(data: dict[str, Any], path: str, phrase: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(f"{path}: ") and phrase in p for p in problems), problems
    assert not any("unexpected" in p.lower() for p in problems), problems


@pytest.mark.parametrize(
    ("change", "more"),
    [
        # the edges of each range are valid
        ((["defaults", "granularity"], "1m"), (["defaults", "completeness_delay"], "0s")),
        ((["defaults", "granularity"], "1d"), (["defaults", "history"], "14d")),
        ((["defaults", "history"], "2d"), (["scheduler", "max_catchup"], "1h")),
        # Prophet's alias TU (Turkey) is kept
        ((["regions"], {"TR": "TU", "GB": "GB"}), (["alerts", "routes"], [{"match": {"region": "TR"}}])),
        # with no regions configured any region value may occur
        (
            (["alerts", "routes"], [{"match": {"region": "anything"}}]),
            (["scheduler", "metrics_address"], "::"),
        ),
        # a host name and the all-interfaces address bind
        (
            (["scheduler", "metrics_address"], "localhost"),
            (["logging"], {"format": "json", "level": "debug"}),
        ),
        ((["scheduler", "metrics_address"], "0.0.0.0"), (["metrics", 0, "detector"], "streaming")),
        # ISO 8601 durations still parse
        ((["defaults", "granularity"], "PT15M"), (["alerts", "group_window"], "0s")),
    ],
)
def test_sane_values_at_the_edges_load(
    change: tuple[list[str | int], Any], more: tuple[list[str | int], Any]
) -> None:
    parse_config(with_change(*change, more), env={})


def test_an_inherited_error_is_reported_once_at_the_defaults_key() -> None:
    # a bad default: once, under defaults, never under the metrics inheriting it
    problems = problems_of(with_change(["defaults", "granularity"], "7m"))
    assert problems == [problems[0]] and problems[0].startswith("defaults.granularity: ")
    # a cross-field rule broken by inherited values alone: once, at defaults
    data = with_change(["defaults", "granularity"], "1d", (["defaults", "history"], "10d"))
    assert problems_of(data) == [
        "defaults.history: history 10d (from defaults) is too short for 1d buckets (from defaults): the "
        "models need two weekly cycles, i.e. history >= 14d (sub-daily buckets need 2d, daily buckets 14d)"
    ]
    # a metric overriding the history is reported at its own key
    data = with_change(["defaults", "granularity"], "1d", (["metrics", 1, "history"], "3d"))
    assert [p.split(":")[0] for p in problems_of(data)] == ["metrics[1].history"]


def test_metrics_are_resolved_once_with_no_optional_fields() -> None:
    config = parse_config(with_change(["metrics", 0, "history"], "28d"), env={})
    first, second = config.metrics
    assert isinstance(first, Metric) and isinstance(first, MetricConfig)
    assert all(getattr(m, f) is not None for m in config.metrics for f in INHERITED)
    assert (first.history, second.history) == (timedelta(days=28), timedelta(days=56))
    assert (first.inherits("history"), second.inherits("history")) == (False, True)
    assert (second.interval_width, second.detector, second.granularity) == (0.99, "stack", timedelta(hours=1))
    assert config.metric("violation_rate") is second
    # the new top-level keys and their defaults
    assert (config.scheduler.metrics_address, config.logging.format, config.logging.level) == (
        "127.0.0.1",
        "console",
        "warning",
    )


def test_a_dumped_config_loads_again_unchanged() -> None:
    config = load_config(REPO / "config.yaml", env={})
    again = parse_config(config.model_dump(mode="json", by_alias=True), env={})
    assert again == config


def test_parse_duration_overflow_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("99999999999d")
    assert [format_duration(parse_duration(t)) for t in ["90s", "10m", "1h", "14d", "2w", "0s"]] == [
        "90s",
        "10m",
        "1h",
        "14d",
        "14d",
        "0s",
    ]


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
