"""The SQL metric source on SQLite and PostgreSQL: aggregates, UTC, bound parameters, bad data."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from monitor.config import MetricConfig, parse_config
from monitor.errors import SourceError
from monitor.source import NULL_SEGMENT, SqlMetricSource, check_metrics, missing_buckets
from monitor.tools.demo import build_demo, demo_incidents

POSTGRES_URL = os.environ.get("LIVEWATCH_TEST_POSTGRES_URL")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _postgres_engine() -> Iterator[sa.Engine]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need LIVEWATCH_TEST_POSTGRES_URL (set by .ci/run)")
    schema = f"lw_src_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path}/warehouse.db")
        yield engine
        engine.dispose()
    else:
        yield from _postgres_engine()


def facts_table(metadata: sa.MetaData, value_type: sa.types.TypeEngine[object] | None = None) -> sa.Table:
    return sa.Table(
        "facts",
        metadata,
        sa.Column("ts", sa.DateTime(timezone=True)),
        sa.Column("region", sa.String(8)),
        sa.Column("category", sa.String(16)),
        sa.Column("reports", value_type if value_type is not None else sa.Integer()),
        sa.Column("reviews", sa.Integer),
        sa.Column("violations", sa.Integer),
    )


def load(
    engine: sa.Engine, rows: list[dict[str, object]], value_type: sa.types.TypeEngine[object] | None = None
) -> None:
    metadata = sa.MetaData()
    table = facts_table(metadata, value_type)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


def metrics() -> dict[str, MetricConfig]:
    config = parse_config(
        {
            "database": {"url": "sqlite://"},
            "defaults": {"slice_dimensions": ["category"]},
            "metrics": [
                {"name": "reports", "source": {"table": "facts"}, "kind": "count", "value": "reports"},
                {
                    "name": "violation_rate",
                    "source": {"table": "facts"},
                    "kind": "ratio",
                    "numerator": "violations",
                    "denominator": "reviews",
                    "scale": 100,
                },
                {
                    "name": "reports_q",
                    "source": {"query": "SELECT * FROM facts WHERE ts >= :start AND ts < :end"},
                    "kind": "count",
                    "value": "reports",
                },
                {
                    "name": "reports_15m",
                    "source": {"table": "facts"},
                    "kind": "count",
                    "value": "reports",
                    "granularity": "1h",
                },
            ],
        },
        env={},
    )
    return {m.name: m for m in config.metrics}


def rows_for(hours: int, regions: tuple[str, ...] = ("BR", "DE")) -> list[dict[str, object]]:
    rows = []
    for h in range(hours):
        for r, region in enumerate(regions):
            for c, category in enumerate(("spam", "hate")):
                rows.append(
                    {
                        "ts": T0 + timedelta(hours=h),
                        "region": region,
                        "category": category,
                        "reports": 10 * h + r + c,
                        "reviews": 20 + c,
                        "violations": 5 + h % 3,
                    }
                )
    return rows


def test_count_and_ratio_aggregate_per_bucket_and_series(engine: sa.Engine) -> None:
    load(engine, rows_for(4))
    source = SqlMetricSource(engine)
    result = source.fetch(metrics()["reports"], T0, T0 + timedelta(hours=4))
    frame = result.frame
    assert result.problems == []
    assert len(frame) == 8 and str(frame["ts"].dt.tz) == "UTC"
    br = frame[frame["series"] == "BR"].set_index("ts")
    assert br["value"].tolist() == [1.0, 21.0, 41.0, 61.0]  # sum over both categories: 10h + 0 + 10h + 1
    assert br["den"].isna().all()
    ratio = source.fetch(metrics()["violation_rate"], T0, T0 + timedelta(hours=2)).frame
    de = ratio[ratio["series"] == "DE"].iloc[0]
    assert (de["num"], de["den"]) == (10.0, 41.0)  # numerator and denominator kept apart
    assert de["value"] == pytest.approx(100 * 10 / 41)


def test_time_bounds_are_half_open_and_query_sources_bind_start_end(engine: sa.Engine) -> None:
    load(engine, rows_for(6))
    source = SqlMetricSource(engine)
    table = source.fetch(metrics()["reports"], T0 + timedelta(hours=2), T0 + timedelta(hours=4)).frame
    query = source.fetch(metrics()["reports_q"], T0 + timedelta(hours=2), T0 + timedelta(hours=4)).frame
    assert sorted(table["ts"].unique()) == [pd.Timestamp(T0 + timedelta(hours=h)) for h in (2, 3)]
    pd.testing.assert_frame_equal(table, query)


def test_slices_and_series_filter_are_bound(engine: sa.Engine) -> None:
    load(engine, rows_for(2))
    source = SqlMetricSource(engine)
    sliced = source.fetch(metrics()["reports"], T0, T0 + timedelta(hours=2), slices=True, series=["DE"]).frame
    assert set(sliced["series"]) == {"DE"} and set(sliced["category"]) == {"spam", "hate"}
    hostile = source.fetch(metrics()["reports"], T0, T0 + timedelta(hours=2), series=["DE' OR '1'='1"]).frame
    assert hostile.empty  # the value is a bound parameter, never SQL


def test_missing_buckets_stay_missing(engine: sa.Engine) -> None:
    rows = [r for r in rows_for(5) if not (r["region"] == "BR" and r["ts"] == T0 + timedelta(hours=2))]
    load(engine, rows)
    frame = SqlMetricSource(engine).fetch(metrics()["reports"], T0, T0 + timedelta(hours=5)).frame
    br = frame[frame["series"] == "BR"]
    assert len(br) == 4 and not (br["value"] == 0).any()
    gaps = missing_buckets(frame, T0, T0 + timedelta(hours=5), timedelta(hours=1))
    assert gaps.to_dict("records") == [{"series": "BR", "ts": pd.Timestamp(T0 + timedelta(hours=2))}]


def test_bad_rows_are_reported_per_series_and_skipped(engine: sa.Engine) -> None:
    rows = rows_for(3)
    rows[0]["reports"] = None  # BR, hour 0: NULL
    rows[-1]["reports"] = -4  # DE, hour 2: negative count
    load(engine, rows)
    result = SqlMetricSource(engine).fetch(metrics()["reports"], T0, T0 + timedelta(hours=3))
    messages = [str(p) for p in result.problems]
    assert any(m.startswith("reports/BR: NULL values in column 'reports'") for m in messages)
    assert any(m.startswith("reports/DE: negative values in column 'reports'") for m in messages)
    # the bad buckets are skipped, the healthy ones of the same series are still there
    assert len(result.frame) == 4


def test_non_numeric_values_on_sqlite(tmp_path: object) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/w.db")
    rows = rows_for(2)
    rows[1]["reports"] = "lots"  # SQLite stores text in an untyped column
    load(engine, rows, value_type=sa.String())
    result = SqlMetricSource(engine).fetch(metrics()["reports"], T0, T0 + timedelta(hours=2))
    assert [str(p).split(" in ")[0] for p in result.problems] == ["reports/BR: non-numeric values"]
    assert set(result.frame["series"]) == {"BR", "DE"} and len(result.frame) == 3


def test_duplicated_load_is_flagged(engine: sa.Engine) -> None:
    rows = rows_for(10, regions=("BR",))
    rows += [r for r in rows if r["ts"] == T0 + timedelta(hours=7)]  # the 07:00 load ran twice
    load(engine, rows)
    result = SqlMetricSource(engine).fetch(metrics()["reports"], T0, T0 + timedelta(hours=10))
    assert len(result.problems) == 1 and "duplicated load" in str(result.problems[0])
    assert pd.Timestamp(T0 + timedelta(hours=7)) not in set(result.frame["ts"])


def test_unknown_table_and_column_errors_name_the_fix(engine: sa.Engine) -> None:
    load(engine, rows_for(1))
    source = SqlMetricSource(engine)
    bad = metrics()["violation_rate"].model_copy(update={"denominator": "reviewd"})
    with pytest.raises(
        SourceError, match=r"unknown column 'reviewd' in table facts \(did you mean 'reviews'\?\)"
    ):
        source.fetch(bad, T0, T0 + timedelta(hours=1))
    problems = check_metrics(source, [metrics()["reports"], bad])
    assert problems == [
        "metrics[1].denominator: unknown column 'reviewd' in table facts (did you mean 'reviews'?)"
    ]
    missing = metrics()["reports"].model_copy(
        update={"source": metrics()["reports"].source.model_copy(update={"table": "fact"})}
    )
    assert "table 'fact' does not exist; did you mean 'facts'?" in check_metrics(source, [missing])[0]


def _text_time_table(engine: sa.Engine, stamps: list[object], time_type: sa.types.TypeEngine[object]) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "events",
        metadata,
        sa.Column("stamp", time_type),
        sa.Column("region", sa.String(8)),
        sa.Column("category", sa.String(16), nullable=True),
        sa.Column("reports", sa.Integer),
    )
    metadata.create_all(engine)
    categories = ["spam", None] * len(stamps)
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {"stamp": stamp, "region": "BR", "category": categories[i], "reports": i + 1}
                for i, stamp in enumerate(stamps)
            ],
        )


def _events_metric() -> MetricConfig:
    return parse_config(
        {
            "database": {"url": "sqlite://"},
            "defaults": {"time_column": "stamp", "slice_dimensions": ["category"]},
            "metrics": [
                {"name": "reports", "source": {"table": "events"}, "kind": "count", "value": "reports"}
            ],
        },
        env={},
    ).metrics[0]


def test_iso_text_timestamps_with_t_or_an_offset_fall_in_their_window(engine: sa.Engine) -> None:
    # Compared as strings, "2026-11-01T03:30:00+01:00" (02:30 UTC) is after every "2026-11-01 hh:mm" bound,
    # so one-hour windows read nothing; the source converts both sides in SQL.
    stamps = [
        "2026-11-01 01:00:00",
        "2026-11-01T02:00:00Z",
        "2026-11-01T03:30:00+01:00",
        "2026-11-01T03:00:00.250000",
        "2026-11-01T05:00:00+00:00",
    ]
    _text_time_table(engine, stamps, sa.String(40))
    source = SqlMetricSource(engine)
    frame = source.fetch(_events_metric(), T0 + timedelta(hours=2), T0 + timedelta(hours=4)).frame
    assert frame["ts"].tolist() == [pd.Timestamp(T0 + timedelta(hours=h)) for h in (2, 3)]
    assert frame["value"].tolist() == [5.0, 4.0]  # 02:00Z and 02:30 UTC, then 03:00.25
    assert check_metrics(source, [_events_metric()]) == []


@pytest.mark.parametrize("declared", ["DATETIME", "TIMESTAMP", ""])
def test_sqlite_iso_text_in_a_datetime_or_untyped_column_falls_in_its_window(
    tmp_path: object, declared: str
) -> None:
    # SQLite has no timestamp storage: a DATETIME column written by another tool can hold any ISO text
    engine = sa.create_engine(f"sqlite:///{tmp_path}/warehouse.db")
    with engine.begin() as conn:
        ddl = f"CREATE TABLE events (stamp {declared}, region TEXT, category TEXT, reports INT)"
        conn.execute(sa.text(ddl))
        stamps = ["2026-11-01T02:00:00Z", "2026-11-01T03:30:00+01:00", "2026-11-01T03:15:00"]
        for i, stamp in enumerate(stamps):
            conn.execute(
                sa.text("INSERT INTO events VALUES (:stamp, 'BR', 'spam', :reports)"),
                {"stamp": stamp, "reports": i + 1},
            )
    window = (T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    frame = SqlMetricSource(engine).fetch(_events_metric(), *window).frame
    engine.dispose()
    assert frame["ts"].tolist() == [pd.Timestamp(T0 + timedelta(hours=h)) for h in (2, 3)]
    assert frame["value"].tolist() == [3.0, 3.0]  # 02:00Z and 02:30 UTC, then 03:15


def test_null_segments_are_kept_as_a_segment(engine: sa.Engine) -> None:
    _text_time_table(engine, [T0, T0, T0 + timedelta(hours=1)], sa.DateTime(timezone=True))
    frame = SqlMetricSource(engine).fetch(_events_metric(), T0, T0 + timedelta(hours=2), slices=True).frame
    cells = {(r.ts.hour, r.category): r.value for r in frame.itertuples()}
    assert cells == {(0, "spam"): 1.0, (0, NULL_SEGMENT): 2.0, (1, "spam"): 3.0}
    with engine.begin() as conn:  # a row without region is a series of its own, not "None"
        conn.execute(sa.text("UPDATE events SET region = NULL WHERE reports = 3"))
    series = SqlMetricSource(engine).fetch(_events_metric(), T0, T0 + timedelta(hours=2)).frame["series"]
    assert sorted(series) == sorted(["BR", NULL_SEGMENT])


@pytest.mark.parametrize("declared", ["", "DATETIME"])
def test_sqlite_epoch_numbers_in_an_untyped_or_datetime_column_are_refused(
    tmp_path: object, declared: str
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/warehouse.db")
    with engine.begin() as conn:  # SQLite stores whatever it is given, whatever the declared type
        conn.execute(
            sa.text(f"CREATE TABLE events (stamp {declared}, region TEXT, category TEXT, reports INT)")
        )
        conn.execute(sa.text("INSERT INTO events VALUES (1793000000, 'BR', 'spam', 1)"))
    source = SqlMetricSource(engine)
    problems = check_metrics(source, [_events_metric()])
    assert len(problems) == 1
    assert "time_column 'stamp' of table events holds numbers (stored as SQLite integer)" in problems[0]
    assert "unixepoch" in problems[0]
    engine.dispose()


def test_a_numeric_time_column_is_refused_with_the_fix(engine: sa.Engine) -> None:
    _text_time_table(engine, [1_793_000_000, 1_793_003_600], sa.BigInteger())
    source = SqlMetricSource(engine)
    problems = check_metrics(source, [_events_metric()])
    assert len(problems) == 1
    assert problems[0].startswith("metrics[0].source: metric 'reports': time_column 'stamp' of table events")
    assert "holds numbers" in problems[0] and "unixepoch" in problems[0] and "to_timestamp" in problems[0]
    with pytest.raises(SourceError, match="holds numbers"):
        source.fetch(_events_metric(), T0, T0 + timedelta(hours=1))


def test_naive_times_are_rejected(engine: sa.Engine) -> None:
    load(engine, rows_for(1))
    with pytest.raises(SourceError, match="naive"):
        SqlMetricSource(engine).fetch(metrics()["reports"], datetime(2026, 11, 1), T0)


def test_demo_warehouse_is_deterministic_and_has_ground_truth(engine: sa.Engine) -> None:
    end = datetime(2026, 11, 29, tzinfo=UTC)
    build_demo(engine, end=end, days=4, seed=3)
    source = SqlMetricSource(engine)
    config = parse_config(
        {
            "database": {"url": "sqlite://"},
            "metrics": [
                {
                    "name": "user_reports",
                    "source": {"table": "live_safety_hourly"},
                    "kind": "count",
                    "value": "reports",
                }
            ],
        },
        env={},
    )
    first = source.fetch(config.metrics[0], end - timedelta(days=4), end).frame
    assert set(first["series"]) >= {"US", "BR", "SA"} and len(first) > 4 * 24 * 11
    gap = next(i for i in demo_incidents(end) if i.kind == "data_missing")
    ph = first[(first["series"] == gap.region) & (first["ts"] >= gap.start) & (first["ts"] < gap.end)]
    assert ph.empty  # the data gap is absent, not zero
    with engine.connect() as conn:
        truth = conn.execute(sa.text("SELECT incident, metric, should_alert FROM demo_incidents")).all()
    assert ("sa_noise_burst", "user_reports", False) in [tuple(r) for r in truth]
    build_demo(engine, end=end, days=4, seed=3)
    again = SqlMetricSource(engine).fetch(config.metrics[0], end - timedelta(days=4), end).frame
    pd.testing.assert_frame_equal(first, again)
