"""Experiment guardrails in the product: config, sources, evaluation, signals, grouping and the CLI.

One small seeded warehouse (the two demo experiments with 1,500 viewers each) is built once per module:
``autoplay_next`` raises reports in hate-speech streams of its treatment arm, ``feed_ranking_v2`` changes
nothing (ground truth: :func:`monitor.tools.demo.demo_experiments`).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from alerts.incidents import group_signals
from alerts.model import AlertSignal
from detectors.sequential import Decision
from monitor.cli.main import cli
from monitor.config import Config, parse_config
from monitor.config_types import SqlSource
from monitor.errors import ConfigError
from monitor.experiments.evaluate import ExperimentMonitor, evaluate_experiment
from monitor.experiments.source import ExperimentDataError, SqlExperimentSource
from monitor.tools.demo import DEMO_ASSIGNMENT_TABLE, build_demo_experiments, demo_experiments

END = datetime(2026, 3, 20, tzinfo=UTC)
UNITS = 1500
TRUTH = {e.name: e for e in demo_experiments(END)}

METRICS: list[dict[str, Any]] = [
    {
        "name": "report_rate_per_1k",
        "source": {"table": "live_safety_hourly"},
        "kind": "ratio",
        "numerator": "reports",
        "denominator": "views",
        "scale": 1000,
        "direction": "up",
    },
    {
        "name": "violation_rate",
        "source": {"table": "live_safety_hourly"},
        "kind": "ratio",
        "numerator": "violations",
        "denominator": "reviews",
    },
    {"name": "user_reports", "source": {"table": "live_safety_hourly"}, "kind": "count", "value": "reports"},
]


def _experiment(name: str, treatment: str, **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "assignment": {"table": "experiment_assignments"},
        "outcomes": {"table": "experiment_unit_hourly"},
        "control": "control",
        "split": {"control": 0.5, treatment: 0.5},
        "segments": ["category", "language"],
        "pre_period": "7d",
        "guardrails": [
            {"metric": "report_rate_per_1k", "min_effect": 0.1},
            {"metric": "violation_rate", "direction": "up", "min_effect": 0.1},
        ],
    }
    entry.update(changes)
    return entry


def _data(url: str, *experiments: dict[str, Any]) -> dict[str, Any]:
    return {
        "database": {"url": url},
        "metrics": copy.deepcopy(METRICS),
        "experiments": list(experiments)
        or [_experiment("feed_ranking_v2", "ranked_feed"), _experiment("autoplay_next", "autoplay")],
    }


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("experiments") / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    build_demo_experiments(engine, end=END, units=UNITS, seed=7)
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def config(warehouse: str) -> Config:
    return parse_config(_data(warehouse), env={})


def _source(url: str) -> SqlExperimentSource:
    return SqlExperimentSource(sa.create_engine(url))


def _hours(start: datetime, end: datetime) -> list[pd.Timestamp]:
    return list(pd.date_range(start, end, freq="h", inclusive="left"))


# -- evaluation: the harmful one is flagged within a day, the harmless one never -----------------------------
def test_harmful_experiment_is_flagged_within_24_hours_of_launch(config: Config, warehouse: str) -> None:
    metrics = {m.name: m for m in config.metrics}
    evaluation = evaluate_experiment(config.experiments[1], metrics, _source(warehouse), END)
    reports = next(g for g in evaluation.guardrails if g.spec.metric == "report_rate_per_1k")
    first = reports.first_harm()
    launch = pd.Timestamp(TRUTH["autoplay_next"].launch)
    assert first is not None and launch <= first <= launch + pd.Timedelta(hours=24), first
    assert reports.latest.decision == Decision.HARM
    # The breakdown names the segment that carries the harm first.
    top = reports.breakdown(("category", "language")).iloc[0]
    assert (top["segment"], top["value"]) == ("category", "hate_speech")
    assert not evaluation.srm.mismatch


def test_harmless_experiment_is_never_flagged(config: Config, warehouse: str) -> None:
    metrics = {m.name: m for m in config.metrics}
    evaluation = evaluate_experiment(config.experiments[0], metrics, _source(warehouse), END)
    for guardrail in evaluation.guardrails:
        assert guardrail.first_harm() is None, guardrail.spec.metric
        assert all(r.srm is None or not r.srm.mismatch for r in guardrail.timeline)
    # CUPED from the pre-period is used and removes variance.
    assert evaluation.guardrails[0].latest.variance_reduction > 0.1


def test_monitor_signals_label_the_experiment_arm_with_kind_guardrail(config: Config, warehouse: str) -> None:
    monitor = ExperimentMonitor(config, _source(warehouse))
    buckets = _hours(END - timedelta(days=7), END)
    by_bucket, errors = monitor.signals(buckets, END)
    assert errors == {}
    signals = [s for bucket in sorted(by_bucket) for s in by_bucket[bucket]]
    assert signals, "the harmful experiment must signal"
    assert {s.region for s in signals} == {"experiment/autoplay_next/autoplay"}
    assert {s.kind for s in signals} == {"guardrail"}
    first = min(pd.Timestamp(s.end) for s in signals)
    assert first - pd.Timestamp(TRUTH["autoplay_next"].launch) <= pd.Timedelta(hours=24)
    assert signals[-1].root_causes[0].segment == "category=hate_speech"
    assert signals[-1].investigate == "livewatch experiments show autoplay_next"


def test_a_split_that_the_assignment_does_not_follow_is_an_srm_signal(warehouse: str) -> None:
    # The harmless experiment is assigned 50/50; configured as 70/30 the SRM test must say so.
    skewed = _experiment("feed_ranking_v2", "ranked_feed", split={"control": 0.7, "ranked_feed": 0.3})
    config = parse_config(_data(warehouse, skewed), env={})
    by_bucket, errors = ExperimentMonitor(config, _source(warehouse)).signals(
        _hours(END - timedelta(days=1), END), END
    )
    assert errors == {}
    srm = [s for signals in by_bucket.values() for s in signals if s.kind == "srm"]
    assert srm and {s.labels["region"] for s in srm} == {"experiment/feed_ranking_v2"}
    assert srm[0].metric == "assignment" and abs(srm[0].observed - 50.6) < 2 and srm[0].expected == 70.0


def test_experiment_incidents_never_merge_with_regional_ones() -> None:
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def signal(region: str, kind: str) -> AlertSignal:
        return AlertSignal("report_rate_per_1k", region, kind, 3.0, 2.0, 50.0, 6.0, 1000.0, at, at)

    grouped = group_signals(
        [],
        [
            signal("BR", "spike"),
            signal("experiment/a/t", "guardrail"),
            signal("experiment/b/t", "guardrail"),
            signal("experiment/a/t", "srm"),
        ],
        at,
    )
    regions = sorted(sorted(c.incident.regions) for c in grouped.changes)
    # Same metric everywhere: still one regional incident and one per experiment arm.
    assert regions == [["BR"], ["experiment/a/t"], ["experiment/b/t"]]


# -- bad assignment data: a clear error naming the experiment and the column, the others go on ------------
def _copy_warehouse(warehouse: str, tmp_path: Path) -> sa.Engine:
    target = tmp_path / "bad.db"
    target.write_bytes(Path(sa.make_url(warehouse).database or "").read_bytes())
    return sa.create_engine(f"sqlite:///{target}")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        # an arm outside the configured split
        (
            {"unit": "auto-99999", "arm": "autoplay_v2"},
            r"experiment 'autoplay_next'.*column 'arm'.*autoplay_v2",
        ),
        # a unit already in control shows up in treatment too
        (
            {"unit": "auto-00000", "arm": "SWAP"},
            r"experiment 'autoplay_next'.*column 'unit'.*more than one arm",
        ),
    ],
)
def test_bad_assignment_data_names_experiment_and_column(
    config: Config, warehouse: str, tmp_path: Path, row: dict[str, str], match: str
) -> None:
    engine = _copy_warehouse(warehouse, tmp_path)
    with engine.begin() as conn:
        arm = row["arm"]
        if arm == "SWAP":
            current = conn.execute(
                sa.text(f"SELECT arm FROM {DEMO_ASSIGNMENT_TABLE} WHERE unit = :u"), {"u": row["unit"]}
            ).scalar_one()
            arm = "autoplay" if current == "control" else "control"
        conn.execute(
            sa.text(f"INSERT INTO {DEMO_ASSIGNMENT_TABLE} VALUES ('autoplay_next', :u, :a, :t)"),
            {"u": row["unit"], "a": arm, "t": "2026-03-18 00:00:00.000000"},
        )
    metrics = {m.name: m for m in config.metrics}
    with pytest.raises(ExperimentDataError, match=match):
        evaluate_experiment(config.experiments[1], metrics, SqlExperimentSource(engine), END)
    # One bad experiment never stops the others.
    _, errors = ExperimentMonitor(config, SqlExperimentSource(engine)).signals(
        _hours(END - timedelta(hours=2), END), END
    )
    assert list(errors) == ["experiment:autoplay_next"]


def test_missing_assignment_table_is_an_error_of_that_experiment_only(config: Config, warehouse: str) -> None:
    data = _data(warehouse)
    data["experiments"][0]["assignment"] = {"table": "experiment_assignment"}
    broken = parse_config(data, env={})
    by_bucket, errors = ExperimentMonitor(broken, _source(warehouse)).signals(
        _hours(END - timedelta(days=1), END), END
    )
    assert "did you mean 'experiment_assignments'" in errors["experiment:feed_ranking_v2"]
    assert any(s.region.startswith("experiment/autoplay_next") for v in by_bucket.values() for s in v)


# -- config: strict, references checked, key paths --------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a misspelled key
        (
            lambda e: e["guardrails"][0].update(min_efect=0.1),
            "experiments[0].guardrails[0].min_efect: unknown key",
        ),
        (lambda e: e.update(pre_perid="7d"), "experiments[0].pre_perid: unknown key"),
        # a metric that is not configured
        (
            lambda e: e["guardrails"][1].update(metric="violation_rat"),
            "experiments[0].guardrails[1].metric: unknown metric",
        ),
        # the control arm is not an arm of the split
        (lambda e: e.update(control="baseline"), "control: arm 'baseline' is not among the arms"),
        # a count metric needs the exposure column
        (
            lambda e: e["guardrails"].append({"metric": "user_reports"}),
            "experiments[0].guardrails[2].metric: count metric",
        ),
        # the harmful direction of a 'both' metric must be said
        (lambda e: e["guardrails"][1].pop("direction"), "experiments[0].guardrails[1].direction"),
        # a query without the bound time parameters
        (
            lambda e: e.update(assignment={"query": "SELECT * FROM a"}),
            "experiments[0].assignment: query must filter",
        ),
        (lambda e: e["guardrails"][0].update(min_effect=0), "experiments[0].guardrails[0].min_effect"),
        (lambda e: e.update(alpha=0.7), "experiments[0].alpha"),
    ],
)
def test_config_errors_name_the_key_path(change: Any, message: str) -> None:
    entry = _experiment("feed_ranking_v2", "ranked_feed")
    change(entry)
    with pytest.raises(ConfigError) as caught:
        parse_config(_data("sqlite:///x.db", entry), env={})
    assert message in str(caught.value), str(caught.value)


def test_repo_config_has_the_demo_experiments() -> None:
    config = parse_config(
        yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text()), env={}
    )
    assert [e.name for e in config.experiments] == ["feed_ranking_v2", "autoplay_next"]
    assert config.experiments[1].assignment.query is not None


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_show_json_has_the_timeline_decision_power_and_srm(warehouse: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_data(warehouse)))
    chart = tmp_path / "chart.png"
    result = CliRunner().invoke(
        cli,
        [
            "experiments",
            "show",
            "autoplay_next",
            "--config",
            str(path),
            "--at",
            END.isoformat(),
            "--json",
            "--chart",
            str(chart),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload) >= {"experiment", "control", "split", "launch", "units", "srm", "guardrails"}
    assert set(payload["srm"]) >= {"mismatch", "p_value", "counts", "reason"}
    first = payload["guardrails"][0]
    assert set(first) >= {
        "metric",
        "treatment",
        "decision",
        "effect",
        "lower",
        "upper",
        "ruled_out_beyond",
        "timeline",
        "segments",
    }
    assert first["decision"] == "harm"
    assert set(first["timeline"][0]) == {"ts", "effect", "lower", "upper", "decision"}
    assert first["segments"][0]["value"] == "hate_speech"
    assert chart.stat().st_size > 1000

    listed = CliRunner().invoke(cli, ["experiments", "list", "--config", str(path), "--at", END.isoformat()])
    assert listed.exit_code == 0, listed.output
    assert "autoplay_next" in listed.output and "feed_ranking_v2" in listed.output

    unknown = CliRunner().invoke(cli, ["experiments", "show", "nope", "--config", str(path)])
    assert unknown.exit_code != 0 and "unknown experiment 'nope'" in unknown.output


def test_outcome_rows_with_iso_text_timestamps_fall_in_their_window(config: Config, tmp_path: Path) -> None:
    # ISO 8601 text with a T or an offset compares as a string after every "YYYY-MM-DD hh:mm" bound of the
    # same day; the source compares timestamps instead.
    engine = sa.create_engine(f"sqlite:///{tmp_path}/outcomes.db")
    stamps = [
        "2026-11-01T01:30:00Z",
        "2026-11-01T03:10:00+01:00",
        "2026-11-01 02:50:00",
        "2026-11-01T04:00:00Z",
    ]
    pd.DataFrame({"ts": stamps, "unit": ["u1", "u2", "u3", "u4"], "reports": [1, 2, 3, 4]}).to_sql(
        "text_outcomes", engine, index=False
    )
    start = datetime(2026, 11, 1, 2, tzinfo=UTC)
    rows = SqlExperimentSource(engine).outcomes(
        config.experiments[0],
        SqlSource(table="text_outcomes"),
        ["reports"],
        start,
        start + timedelta(hours=2),
    )
    assert rows["unit"].tolist() == ["u2", "u3"]  # 02:10 UTC and 02:50; not 01:30 nor 04:00
    assert rows["ts"].tolist() == [
        pd.Timestamp("2026-11-01 02:10", tz="UTC"),
        pd.Timestamp("2026-11-01 02:50", tz="UTC"),
    ]
