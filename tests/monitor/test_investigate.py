"""``monitor.tools.investigate`` on a small demo warehouse: true causes first, covers, stored models, errors.

The warehouse (24 days, seed 7) is built once per session and shared with the backtest and CLI tests. A
10-day ``history`` keeps every model the robust baseline (no Prophet fit), so each investigation is fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from alerts.model import Matcher, Silence
from monitor.config import Config, MetricConfig, parse_config
from monitor.pipeline.models import FitTask, fit_chunk
from monitor.pipeline.slicing import baseline_spans
from monitor.pipeline.spec import DETECTOR_NAME, series_frame, stack_params
from monitor.source import FetchResult, SqlMetricSource
from monitor.tools.demo import build_demo, demo_incidents
from monitor.tools.investigate import (
    SCORED_BEFORE,
    Investigation,
    OutOfRangeError,
    UnknownMetricError,
    UnknownRegionError,
    investigate,
)
from monitor.wiring import open_store, warehouse_source

END = datetime(2026, 11, 29, tzinfo=UTC)
DAYS = 24
NOW = END + timedelta(hours=3)
TRUTH = {(i.incident, i.metric): i for i in demo_incidents(END)}


HOUR = timedelta(hours=1)


class ReadRecorder(SqlMetricSource):
    """The warehouse as the product reads it, noting each range asked for: ``(sliced, start, end)``."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.spans: list[tuple[bool, datetime, datetime]] = []

    def fetch(self, metric: MetricConfig, start: datetime, end: datetime, **kwargs: Any) -> FetchResult:
        self.spans.append((bool(kwargs.get("slices")), start, end))
        return super().fetch(metric, start, end, **kwargs)


def demo_warehouse(factory: pytest.TempPathFactory) -> Path:
    """The shared demo warehouse (built on first use in this pytest session)."""
    path = factory.getbasetemp() / f"livewatch-demo-{DAYS}d.db"
    if not path.exists():
        engine = sa.create_engine(f"sqlite:///{path}")
        build_demo(engine, end=END, days=DAYS, seed=7)
        engine.dispose()
    return path


def demo_config(warehouse: Path, state: Path) -> Config:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{warehouse}"},
            "state": {"url": f"sqlite:///{state}"},
            "regions": {"BR": "BR", "MX": "MX", "ID": "ID", "DE": "DE", "SA": "SA"},
            "defaults": {
                "history": "10d",
                "slice_dimensions": ["category", "language", "device", "creator_tier"],
                "noise_floors": {"min_volume": 200, "min_rel_effect": 0.1},
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
                    "name": "violation_rate",
                    "source": {"table": "live_safety_hourly"},
                    "kind": "ratio",
                    "numerator": "violations",
                    "denominator": "reviews",
                    "unit": "%",
                    "scale": 100,
                },
                {
                    "name": "bans",
                    "source": {"table": "live_safety_hourly"},
                    "kind": "count",
                    "value": "bans",
                    "direction": "up",
                    "noise_floors": {"min_volume": 20, "min_abs_effect": 5, "min_rel_effect": 0.3},
                },
            ],
            "alerts": {"jsonl_path": None},
        },
        env={},
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    state = tmp_path_factory.mktemp("investigate") / "state.db"
    return demo_config(demo_warehouse(tmp_path_factory), state)


def run(
    config: Config,
    metric: str,
    region: str,
    start: datetime,
    end: datetime | None = None,
    *,
    related: bool = True,
) -> Investigation:
    return investigate(
        config,
        warehouse_source(config),
        open_store(config),
        metric,
        region,
        start=start,
        end=end,
        now=NOW,
        related=related,
    )


@pytest.mark.parametrize(
    ("incident", "metric", "use_span"),
    [
        # a count spike from --at its start: the window widens over the flagged run; the cause is 2-D
        ("br_hate_spike", "user_reports", False),
        # the multi-metric raid: a 1-D category cause
        ("mx_bullying_raid", "user_reports", False),
        # a ratio metric whose rate moved only through traffic mix: named by the labelled window (--from/--to)
        ("id_mix_shift", "violation_rate", True),
    ],
)
def test_names_the_true_root_cause_first(config: Config, incident: str, metric: str, use_span: bool) -> None:
    truth = TRUTH[(incident, metric)]
    found = run(config, metric, truth.region, truth.start, truth.end if use_span else None)

    assert found.root_causes, "no root cause found"
    assert found.root_causes[0].label() == truth.root_cause
    assert found.start == truth.start
    if not use_span:
        # --at widened to the anomalous run, which lies inside the labelled incident
        assert found.flagged >= 3 and found.end <= truth.end + timedelta(hours=1)
        assert found.kind in ("spike", "level_shift")
        assert {d.name for d in found.detectors if d.fired} >= {"stack", "robust"}


def test_mix_shift_reports_mix_rather_than_rate(config: Config) -> None:
    truth = TRUTH[("id_mix_shift", "violation_rate")]
    found = run(config, "violation_rate", truth.region, truth.start, truth.end, related=False)
    top = found.root_causes[0]
    # traffic moved to new creators, whose rate was always high: the deviation is mix, not rate
    assert top.mix_share is not None and top.rate_share is not None
    assert abs(top.mix_share) > abs(top.rate_share)


def test_related_metrics_of_the_raid_are_anomalous_too(config: Config) -> None:
    truth = TRUTH[("mx_bullying_raid", "user_reports")]
    found = run(config, "user_reports", "MX", truth.start, truth.end)
    related = {r.metric: r for r in found.related}
    assert set(related) == {"violation_rate", "bans"}
    assert related["bans"].anomalous and related["bans"].model == "robust"


def test_json_shape_is_plain_and_complete(config: Config) -> None:
    truth = TRUTH[("br_hate_spike", "user_reports")]
    payload = json.loads(json.dumps(run(config, "user_reports", "BR", truth.start, related=False).to_dict()))
    assert set(payload) >= {
        "metric",
        "region",
        "window",
        "summary",
        "series",
        "detectors",
        "changepoints",
        "root_causes",
        "related",
        "covers",
        "model",
        "kind",
        "threshold",
    }
    assert payload["window"]["start"] == "2026-11-19T20:00Z"
    assert {"ts", "observed", "expected", "lower", "upper", "score", "flag", "in_window"} == set(
        payload["series"][0]
    )
    assert payload["root_causes"][0]["segment"] == truth.root_cause
    assert 0.5 < payload["root_causes"][0]["deviation_share"] <= 1.2


def test_silence_and_window_covers_are_reported(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = demo_config(demo_warehouse(tmp_path_factory), tmp_path / "state.db")
    truth = TRUTH[("br_hate_spike", "user_reports")]
    store = open_store(config)
    store.add(
        Silence(
            "s-1",
            (Matcher("metric", "user_reports"), Matcher("region", "BR")),
            "raid known",
            "alice",
            truth.start - timedelta(hours=1),
            truth.start + timedelta(hours=2),
        )
    )
    # a silence of another region never covers BR
    store.add(Silence("s-2", (Matcher("region", "MX"),), "other", "bob", truth.start, truth.end))
    found = investigate(
        config,
        warehouse_source(config),
        store,
        "user_reports",
        "BR",
        start=truth.start,
        now=NOW,
        related=False,
    )
    assert [(c.kind, c.id, c.state) for c in found.covers] == [("silence", "s-1", "expired")]


def test_stored_model_is_used_and_refit_fits_on_the_history_before(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = demo_config(demo_warehouse(tmp_path_factory), tmp_path / "state.db")
    truth = TRUTH[("br_hate_spike", "user_reports")]
    metric = config.metric("user_reports")
    source = warehouse_source(config)
    tidy = source.fetch(metric, truth.start - timedelta(days=10), truth.start, series=["BR"]).frame
    state = fit_chunk(
        [FitTask(metric.name, "BR", series_frame(metric, tidy), stack_params(config, metric, "BR"))]
    )
    store = open_store(config)

    # the stored model is what the daemon scores with: investigate uses it
    store.save_model_state(
        "user_reports",
        "BR",
        DETECTOR_NAME,
        str(state[0].state),
        version=2,
        fitted_at=truth.start - timedelta(hours=2),
    )
    reads = ReadRecorder(source.engine)
    before = investigate(
        config, reads, store, "user_reports", "BR", start=truth.start, now=NOW, related=False
    )
    assert before.model.startswith("stored model") and "has seen" not in before.model
    # with a stored model only the buckets it scores are read, and the slicer reads the window and the same
    # hours of the baseline weeks, not every bucket of those weeks
    series_reads = [(lo, hi) for sliced, lo, hi in reads.spans if not sliced]
    assert series_reads and min(lo for lo, _ in series_reads) >= truth.start - SCORED_BEFORE * HOUR
    sliced_reads = [hi - lo for sliced, lo, hi in reads.spans if sliced]
    assert len(sliced_reads) == 5 and max(sliced_reads) <= before.end - before.start
    # a model fitted after the window started says so; --refit fits on the history before the window
    store.save_model_state(
        "user_reports", "BR", DETECTOR_NAME, str(state[0].state), version=2, fitted_at=truth.end
    )
    seen = investigate(config, source, store, "user_reports", "BR", start=truth.start, now=NOW, related=False)
    assert "has seen these buckets" in seen.model
    reads.spans.clear()
    refit = investigate(
        config, reads, store, "user_reports", "BR", start=truth.start, now=NOW, related=False, refit=True
    )
    assert refit.model.startswith("fitted now")
    # a refit reads the configured history (10 days) before the window
    assert min(lo for sliced, lo, _ in reads.spans if not sliced) <= truth.start - timedelta(days=10)
    assert refit.root_causes[0].label() == before.root_causes[0].label() == truth.root_cause


@pytest.mark.parametrize(
    ("metric", "region", "start", "error", "says"),
    [
        # a typo in the metric lists the configured metrics
        (
            "user_report",
            "BR",
            END - timedelta(days=5),
            UnknownMetricError,
            "configured metrics: user_reports",
        ),
        # a region without data lists the regions that have data
        ("user_reports", "XX", END - timedelta(days=5), UnknownRegionError, "regions with data: BR, DE"),
        # a time after the data says which span has data
        ("user_reports", "BR", END + timedelta(days=3), OutOfRangeError, "data covers 2026-11-05T00:00Z"),
        # a time at the very start has no history to learn from
        ("user_reports", "BR", END - timedelta(days=DAYS - 1), OutOfRangeError, "history before it"),
        # the three hours that never arrived in PH are reported as missing, not scored as a dip
        (
            "user_reports",
            "PH",
            TRUTH[("ph_data_gap", "user_reports")].start,
            OutOfRangeError,
            "has no data in",
        ),
    ],
)
def test_bad_requests_give_one_line_errors(
    config: Config, metric: str, region: str, start: datetime, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as caught:
        run(config, metric, region, start)
    message = str(caught.value)
    assert says in message and "\n" not in message


def test_window_end_before_start_is_rejected(config: Config) -> None:
    start = pd.Timestamp(END - timedelta(days=5)).to_pydatetime()
    with pytest.raises(OutOfRangeError, match="must be after"):
        run(config, "user_reports", "BR", start, start - timedelta(hours=2))


W = timedelta(days=7)
T = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "end", "weeks", "spans"),
    [
        # one hour: that hour and the same hour of each earlier week, oldest first
        (T, T + HOUR, 2, [(T - 2 * W, T - 2 * W + HOUR), (T - W, T - W + HOUR), (T, T + HOUR)]),
        # no baseline weeks: the window alone
        (T, T + 3 * HOUR, 0, [(T, T + 3 * HOUR)]),
        # a window of a week touches the one before: one read, no bucket twice
        (T, T + W, 2, [(T - 2 * W, T + W)]),
        # longer than a week: overlapping spans merge
        (T, T + W + HOUR, 1, [(T - W, T + W + HOUR)]),
    ],
)
def test_baseline_spans(
    first: datetime, end: datetime, weeks: int, spans: list[tuple[datetime, datetime]]
) -> None:
    assert baseline_spans(first, end, weeks) == spans
