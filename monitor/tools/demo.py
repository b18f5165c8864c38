"""The embedded demo warehouse: hourly trust-and-safety facts of a live-streaming platform.

``build_demo(engine, end=..., days=60, seed=7)`` writes two tables:

* ``live_safety_hourly``: one row per hour x region x category x language x device x creator tier with
  views, reports, reviews, violations, bans and review_seconds. Daily and weekly seasonality follow each
  region's local time; regional public holidays (the ``holidays`` package, offline) lift traffic; a slow
  trend; Poisson / binomial noise; one tiny region (SA); and a few hours that never arrived (data delays).
* ``demo_incidents``: the ground truth of the injected incidents, one row per (incident, metric):
  a category x language spike, a policy-change level shift, a mix shift (traffic moves to a riskier
  segment while every segment's rate stays flat), a multi-metric raid, a latency incident, a noise burst
  in the tiny region that must NOT alert, and a data gap that must not read as a dip.

Two experiments (issue 17) get their own tables, per viewer (the randomisation unit):

* ``experiment_assignments``: ``experiment, unit, arm, assigned_at``, one row per viewer and experiment;
* ``experiment_unit_hourly``: ``ts, unit, category, language`` and ``views, reports, reviews,
  violations`` per viewer and active hour, from a week before each launch (the CUPED pre-period).

``feed_ranking_v2`` (launched 6 days before ``end``) changes nothing. ``autoplay_next`` (launched 3 days
before ``end``) quadruples reports and raises violations of treatment viewers watching hate-speech streams
(:func:`demo_experiments` is the ground truth). Viewer report rates are gamma-distributed, so reports are
overdispersed as in real data.

Incidents are placed relative to ``end`` so a freshly built warehouse looks live. The output is
deterministic for a (seed, end, days) triple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import holidays
import numpy as np
import pandas as pd
import sqlalchemy as sa

__all__ = [
    "DEMO_ASSIGNMENT_TABLE",
    "DEMO_EXPERIMENT_UNITS",
    "DEMO_FACT_TABLE",
    "DEMO_INCIDENT_TABLE",
    "DEMO_UNIT_TABLE",
    "DemoExperiment",
    "DemoIncident",
    "build_demo",
    "build_demo_experiments",
    "demo_experiments",
    "demo_incidents",
    "demo_url",
    "ensure_demo_warehouse",
]

DEMO_FACT_TABLE = "live_safety_hourly"
DEMO_INCIDENT_TABLE = "demo_incidents"
DEMO_ASSIGNMENT_TABLE = "experiment_assignments"
DEMO_UNIT_TABLE = "experiment_unit_hourly"
DEMO_EXPERIMENT_UNITS = 3000  # viewers per demo experiment

# region -> (hourly views at the daily mean, UTC offset in hours, primary and secondary language)
REGIONS: dict[str, tuple[float, int, tuple[str, str]]] = {
    "US": (420_000, -5, ("en", "es")),
    "BR": (260_000, -3, ("pt", "en")),
    "ID": (210_000, 7, ("id", "en")),
    "GB": (120_000, 0, ("en", "pl")),
    "DE": (110_000, 1, ("de", "tr")),
    "JP": (90_000, 9, ("ja", "en")),
    "KR": (80_000, 9, ("ko", "en")),
    "MX": (150_000, -6, ("es", "en")),
    "PH": (95_000, 8, ("tl", "en")),
    "TR": (70_000, 3, ("tr", "en")),
    "VN": (60_000, 7, ("vi", "en")),
    "SA": (2_500, 3, ("ar", "en")),
}
# category -> (share of views, reports per 1k views, probability a review finds a violation)
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "hate_speech": (0.12, 4.0, 0.35),
    "bullying": (0.15, 3.5, 0.30),
    "self_harm": (0.05, 2.0, 0.40),
    "nudity": (0.15, 3.0, 0.50),
    "violent_extremism": (0.03, 1.5, 0.45),
    "spam": (0.30, 2.5, 0.60),
    "minor_safety": (0.10, 1.5, 0.30),
    "animal_cruelty": (0.10, 1.0, 0.35),
}
LANGUAGE_SHARES = (0.8, 0.2)
# device -> (share of views, violation multiplier)
DEVICES: dict[str, tuple[float, float]] = {"mobile": (0.8, 0.95), "web": (0.2, 1.3)}
# creator tier -> (share of views, violation multiplier)
TIERS: dict[str, tuple[float, float]] = {
    "new": (0.30, 1.6),
    "established": (0.50, 1.0),
    "partner": (0.20, 0.6),
}
PROACTIVE_REVIEWS_PER_1K_VIEWS = 1.0
BAN_PROBABILITY = 0.08
SECONDS_PER_REVIEW = 120.0


@dataclass(frozen=True)
class DemoIncident:
    """One injected incident on one metric (a multi-metric incident has a row per metric)."""

    incident: str
    metric: str
    region: str
    start: datetime
    end: datetime
    kind: str
    root_cause: str
    effect: str
    should_alert: bool
    note: str


def demo_incidents(end: datetime) -> list[DemoIncident]:
    """The ground truth for a warehouse whose last (exclusive) hour is ``end``."""
    day = timedelta(days=1)
    hour = timedelta(hours=1)
    spike = end - 10 * day + 20 * hour
    shift = end - 8 * day + 9 * hour
    mix = end - 6 * day + 12 * hour
    latency = end - 5 * day + 13 * hour
    raid = end - 4 * day + 2 * hour
    gap = end - 3 * day + 5 * hour
    burst = end - 2 * day + 15 * hour
    # fmt: off
    rows = [
        ("br_hate_spike", "user_reports", "BR", spike, spike + 5 * hour, "spike",
         "category=hate_speech&language=pt", "rate", True, "coordinated hate raid in Portuguese streams"),
        ("br_hate_spike", "report_rate_per_1k", "BR", spike, spike + 5 * hour, "spike",
         "category=hate_speech&language=pt", "rate", True, "same raid, seen per view"),
        ("de_policy_shift", "violation_rate", "DE", shift, end, "level_shift",
         "category=hate_speech", "rate", True, "stricter hate-speech policy launched in DE"),
        ("id_mix_shift", "violation_rate", "ID", mix, mix + 8 * hour, "spike",
         "creator_tier=new", "mix", True, "traffic moves to new creators; every segment's rate is flat"),
        ("id_mix_shift", "user_reports", "ID", mix, mix + 8 * hour, "spike",
         "creator_tier=new", "rate", True, "more traffic on new creators brings more reports"),
        ("de_latency", "review_latency", "DE", latency, latency + 6 * hour, "spike",
         "language=tr", "rate", True, "Turkish-language review queue backed up"),
        ("mx_bullying_raid", "user_reports", "MX", raid, raid + 6 * hour, "spike",
         "category=bullying", "rate", True, "bullying raid: reports, violations and bans up together"),
        ("mx_bullying_raid", "violation_rate", "MX", raid, raid + 6 * hour, "spike",
         "category=bullying", "rate", True, "bullying raid"),
        ("mx_bullying_raid", "bans", "MX", raid, raid + 6 * hour, "spike",
         "category=bullying", "rate", True, "bullying raid"),
        ("ph_data_gap", "user_reports", "PH", gap, gap + 3 * hour, "data_missing",
         "", "", False, "three hours never arrived: must not read as a dip"),
        ("sa_noise_burst", "user_reports", "SA", burst, burst + 2 * hour, "spike",
         "category=spam", "rate", False, "a handful of extra reports in a tiny region: must NOT alert"),
    ]
    # fmt: on
    return [DemoIncident(*row) for row in rows]


def _leaf_grid() -> pd.DataFrame:
    """Every region x category x language x device x tier with its share of the region's views."""
    rows = []
    for region, (_, _, languages) in REGIONS.items():
        for category, (cat_share, report_rate, violation_p) in CATEGORIES.items():
            for language, lang_share in zip(languages, LANGUAGE_SHARES, strict=True):
                for device, (dev_share, dev_mult) in DEVICES.items():
                    for tier, (tier_share, tier_mult) in TIERS.items():
                        rows.append(
                            (
                                region,
                                category,
                                language,
                                device,
                                tier,
                                cat_share * lang_share * dev_share * tier_share,
                                report_rate,
                                min(0.95, violation_p * dev_mult * tier_mult),
                            )
                        )
    return pd.DataFrame(
        rows,
        columns=[
            "region",
            "category",
            "language",
            "device",
            "creator_tier",
            "share",
            "report_rate",
            "violation_p",
        ],
    )


def _region_views(hours: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    """Expected hourly views per region: local-time daily and weekly cycles, holidays, trend."""
    frames = {}
    days_since_start = (hours - hours[0]) / pd.Timedelta(days=1)
    for region, (base, offset, _) in REGIONS.items():
        local = hours + pd.Timedelta(hours=offset)
        daily = 1.0 + 0.55 * np.cos(2 * np.pi * (local.hour.to_numpy() - 21) / 24)
        weekly = np.where(local.day_of_week.to_numpy() >= 5, 1.18, 1.0)
        country = holidays.country_holidays(region, years=sorted(set(local.year)))
        holiday = np.array([d in country for d in local.date]) * 0.25 + 1.0
        trend = 1.0 + 0.002 * days_since_start.to_numpy() * rng.uniform(0.5, 1.5)
        frames[region] = base * daily * weekly * holiday * trend
    return pd.DataFrame(frames, index=hours)


def _in_window(frame: pd.DataFrame, incident: DemoIncident) -> np.ndarray:
    mask = (
        (frame["ts"] >= incident.start) & (frame["ts"] < incident.end) & (frame["region"] == incident.region)
    )
    for clause in filter(None, incident.root_cause.split("&")):
        column, value = clause.split("=")
        mask &= frame[column] == value
    return mask.to_numpy()


def _facts(end: datetime, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hours = pd.date_range(end=pd.Timestamp(end) - pd.Timedelta(hours=1), periods=days * 24, freq="h")
    region_views = _region_views(hours, rng)
    grid = _leaf_grid()
    n_hours, n_leaves = len(hours), len(grid)
    frame = grid.loc[np.tile(np.arange(n_leaves), n_hours)].reset_index(drop=True)
    frame.insert(0, "ts", np.repeat(hours.to_numpy(), n_leaves))
    frame["ts"] = frame["ts"].dt.tz_localize("UTC") if frame["ts"].dt.tz is None else frame["ts"]
    hour_index = np.repeat(np.arange(n_hours), n_leaves)
    region_columns = region_views.columns.get_indexer(pd.Index(frame["region"]))
    expected_views = region_views.to_numpy()[hour_index, region_columns] * frame["share"].to_numpy()
    report_rate = frame["report_rate"].to_numpy() * (1 + 0.05 * rng.standard_normal(len(frame)))
    violation_p = frame["violation_p"].to_numpy().copy()
    seconds_per_review = np.full(len(frame), SECONDS_PER_REVIEW)
    ban_p = np.full(len(frame), BAN_PROBABILITY)

    incidents = {i.incident: i for i in demo_incidents(end)}
    spike = _in_window(frame, incidents["br_hate_spike"])
    report_rate[spike] *= 5.0
    violation_p[spike] = np.minimum(0.95, violation_p[spike] * 1.6)
    shift = _in_window(frame, incidents["de_policy_shift"])
    violation_p[shift] = np.minimum(0.95, violation_p[shift] * 2.2)
    mix = _in_window(frame, incidents["id_mix_shift"])
    expected_views[mix] *= 4.0  # views (and so reports and reviews) move; rates stay as they were
    latency = _in_window(frame, incidents["de_latency"])
    seconds_per_review[latency] *= 3.0
    raid = _in_window(frame, incidents["mx_bullying_raid"])
    report_rate[raid] *= 4.0
    violation_p[raid] = np.minimum(0.95, violation_p[raid] * 2.5)
    ban_p[raid] *= 3.0
    burst = _in_window(frame, incidents["sa_noise_burst"])
    report_rate[burst] *= 3.0

    views = rng.poisson(expected_views)
    reports = rng.poisson(views * report_rate / 1000.0)
    reviews = rng.binomial(reports, 0.8) + rng.poisson(views * PROACTIVE_REVIEWS_PER_1K_VIEWS / 1000.0)
    violations = rng.binomial(reviews, violation_p)
    bans = rng.binomial(violations, np.minimum(ban_p, 1.0))
    review_seconds = np.where(
        reviews > 0, rng.gamma(np.maximum(reviews, 1) * 4.0, seconds_per_review / 4.0), 0.0
    ).round(1)
    facts = frame[["ts", "region", "category", "language", "device", "creator_tier"]].assign(
        views=views,
        reports=reports,
        reviews=reviews,
        violations=violations,
        bans=bans,
        review_seconds=review_seconds,
    )
    gap = _in_window(facts, incidents["ph_data_gap"])
    # A few late loads that never arrived: whole region-hours are absent, not zero.
    return facts.loc[~gap].reset_index(drop=True)


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    facts = sa.Table(
        DEMO_FACT_TABLE,
        metadata,
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("device", sa.String(16), nullable=False),
        sa.Column("creator_tier", sa.String(16), nullable=False),
        *(
            sa.Column(name, sa.Integer, nullable=False)
            for name in ("views", "reports", "reviews", "violations", "bans")
        ),
        sa.Column("review_seconds", sa.Float, nullable=False),
    )
    incidents = sa.Table(
        DEMO_INCIDENT_TABLE,
        metadata,
        sa.Column("incident", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("root_cause", sa.String(256), nullable=False),
        sa.Column("effect", sa.String(8), nullable=False),
        sa.Column("should_alert", sa.Boolean, nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
    )
    return facts, incidents


def _insert_facts(conn: sa.Connection, table: sa.Table, facts: pd.DataFrame) -> None:
    """Bulk insert through the driver: executemany on SQLite (timestamps written in SQLAlchemy's own SQLite
    DATETIME text format so Core reads them back), COPY on PostgreSQL; Core inserts elsewhere."""
    columns = list(facts.columns)
    utc = facts["ts"].dt.tz_convert("UTC")
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA synchronous = OFF")
        stamps = utc.dt.strftime("%Y-%m-%d %H:%M:%S.000000")
        rows = list(zip(stamps, *(facts[c].tolist() for c in columns[1:]), strict=True))
        placeholders = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", rows)
        return
    if conn.dialect.driver == "psycopg":
        raw = conn.connection.driver_connection
        copy_sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
            for row in zip(utc.dt.to_pydatetime(), *(facts[c].tolist() for c in columns[1:]), strict=True):
                copy.write_row(row)
        return
    records: list[dict[str, Any]] = facts.drop(columns="ts").to_dict("records")  # type: ignore[assignment]
    for record, stamp in zip(records, utc.dt.to_pydatetime(), strict=True):
        record["ts"] = stamp
    chunk = 50_000
    for offset in range(0, len(records), chunk):
        conn.execute(table.insert(), records[offset : offset + chunk])


@dataclass(frozen=True)
class DemoExperiment:
    """Ground truth of one demo experiment."""

    name: str
    launch: datetime
    control: str
    treatment: str
    harmful: bool
    segment: str  # where the harm is ("" when harmless)
    report_lift: float  # multiplier of treatment report rates in the segment
    violation_lift: float


def demo_experiments(end: datetime) -> list[DemoExperiment]:
    """The two demo experiments for a warehouse ending at ``end`` (both still running at ``end``)."""
    day = timedelta(days=1)
    return [
        DemoExperiment("feed_ranking_v2", end - 6 * day, "control", "ranked_feed", False, "", 1.0, 1.0),
        DemoExperiment(
            "autoplay_next",
            end - 3 * day + timedelta(hours=5),
            "control",
            "autoplay",
            True,
            "category=hate_speech",
            4.0,
            1.8,
        ),
    ]


EXPERIMENT_LANGUAGES = ("en", "pt", "es", "id", "tr")
EXPERIMENT_PRE_PERIOD = timedelta(days=7)
ACTIVE_PER_HOUR = 0.2  # share of a viewer's hours with any watching
VIEWS_PER_ACTIVE_HOUR = 40.0


def _experiment_rows(
    experiment: DemoExperiment, end: datetime, units: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(assignment rows, per-viewer hourly outcome rows) of one experiment."""
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][0] for c in names])
    category = rng.choice(len(names), units, p=shares / shares.sum())
    language = rng.choice(len(EXPERIMENT_LANGUAGES), units)
    base_rate = np.array([CATEGORIES[c][1] for c in names])[category] / 1000.0
    unit_rate = base_rate * rng.gamma(2.0, 0.5, units)  # overdispersed viewer report rates, mean base_rate
    violation_p = np.array([CATEGORIES[c][2] for c in names])[category]
    treated = rng.random(units) < 0.5
    launch = pd.Timestamp(experiment.launch).floor("h")
    assigned_at = launch + pd.to_timedelta(rng.exponential(4.0, units).clip(0, 23.9), unit="h")
    ids = np.array([f"{experiment.name[:4]}-{i:05d}" for i in range(units)])
    assignments = pd.DataFrame(
        {
            "experiment": experiment.name,
            "unit": ids,
            "arm": np.where(treated, experiment.treatment, experiment.control),
            "assigned_at": assigned_at,
        }
    )
    hours = pd.date_range(launch - EXPERIMENT_PRE_PERIOD, pd.Timestamp(end), freq="h", inclusive="left")
    active = rng.random((len(hours), units)) < ACTIVE_PER_HOUR
    h_idx, u_idx = np.nonzero(active)
    ts = hours[h_idx]
    views = rng.poisson(VIEWS_PER_ACTIVE_HOUR, len(u_idx))
    harmed = treated[u_idx] & np.asarray(ts >= assigned_at[u_idx])
    if experiment.segment:
        column, value = experiment.segment.split("=")
        assert column == "category"
        harmed &= np.array(names)[category[u_idx]] == value
    rate = unit_rate[u_idx] * np.where(harmed, experiment.report_lift, 1.0)
    reports = rng.poisson(views * rate)
    reviews = rng.binomial(reports, 0.8) + rng.poisson(views * PROACTIVE_REVIEWS_PER_1K_VIEWS / 1000.0)
    p = np.minimum(0.95, violation_p[u_idx] * np.where(harmed, experiment.violation_lift, 1.0))
    outcomes = pd.DataFrame(
        {
            "ts": ts,
            "unit": ids[u_idx],
            "category": np.array(names)[category[u_idx]],
            "language": np.array(EXPERIMENT_LANGUAGES)[language[u_idx]],
            "views": views,
            "reports": reports,
            "reviews": reviews,
            "violations": rng.binomial(reviews, p),
        }
    )
    return assignments, outcomes


def _experiment_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    assignments = sa.Table(
        DEMO_ASSIGNMENT_TABLE,
        metadata,
        sa.Column("experiment", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("arm", sa.String(32), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    units = sa.Table(
        DEMO_UNIT_TABLE,
        metadata,
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        *(
            sa.Column(name, sa.Integer, nullable=False)
            for name in ("views", "reports", "reviews", "violations")
        ),
    )
    return assignments, units


def _insert_rows(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame, time_column: str) -> None:
    """Bulk insert with the timestamp column first (as :func:`_insert_facts` expects)."""
    ordered = frame[[time_column, *(c for c in frame.columns if c != time_column)]]
    if conn.dialect.name == "sqlite":
        stamps = ordered[time_column].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.000000")
        rows = list(zip(stamps, *(ordered[c].tolist() for c in ordered.columns[1:]), strict=True))
        names = ", ".join(ordered.columns)
        marks = ", ".join("?" for _ in ordered.columns)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
        return
    records: list[dict[str, Any]] = ordered.to_dict("records")  # type: ignore[assignment]
    for record in records:
        record[time_column] = pd.Timestamp(record[time_column]).to_pydatetime()
    conn.execute(table.insert(), records)


def build_demo_experiments(engine: sa.Engine, *, end: datetime, units: int = 3000, seed: int = 7) -> int:
    """(Re)create the two experiment tables of :func:`demo_experiments`; returns the outcome rows written."""
    metadata = sa.MetaData()
    assignment_table, unit_table = _experiment_tables(metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    rng = np.random.default_rng([seed, 17])
    written = 0
    with engine.begin() as conn:
        for experiment in demo_experiments(end):
            assignments, outcomes = _experiment_rows(experiment, end, units, rng)
            _insert_rows(conn, assignment_table, assignments, "assigned_at")
            _insert_rows(conn, unit_table, outcomes, "ts")
            written += len(outcomes)
        sa.Index(f"ix_{DEMO_UNIT_TABLE}_ts", unit_table.c.ts).create(conn)
    return written


def build_demo(
    engine: sa.Engine, *, end: datetime, days: int = 60, seed: int = 7, experiment_units: int = 0
) -> int:
    """(Re)create the demo tables on ``engine``; returns the number of fact rows written.

    Args:
        engine: where to write (SQLite file by default; PostgreSQL works too).
        end: exclusive end of the data, UTC-aware, on an hour boundary.
        days: days of history.
        seed: random seed; the same (seed, end, days) gives the same warehouse.
        experiment_units: viewers per demo experiment (0: no experiment tables; the demo uses
            :data:`DEMO_EXPERIMENT_UNITS`).
    """
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    end = pd.Timestamp(end).tz_convert("UTC").floor("h").to_pydatetime()
    facts = _facts(end, days, seed)
    metadata = sa.MetaData()
    fact_table, incident_table = _tables(metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        _insert_facts(conn, fact_table, facts)
        # Indexed after the bulk load: building it once is far cheaper than maintaining it per row.
        sa.Index(f"ix_{DEMO_FACT_TABLE}_ts_region", fact_table.c.ts, fact_table.c.region).create(conn)
        conn.execute(
            incident_table.insert(),
            [{**i.__dict__, "start": i.start, "end": i.end} for i in demo_incidents(end)],
        )
    if experiment_units > 0:
        build_demo_experiments(engine, end=end, units=experiment_units, seed=seed)
    return len(facts)


def demo_url(target: str) -> sa.URL:
    """``demo init --db``'s target as a URL: any SQLAlchemy URL as is, anything else a SQLite file path.

    >>> demo_url("demo.db").render_as_string()
    'sqlite:///demo.db'
    >>> demo_url("postgresql+psycopg://lw@db/warehouse").get_backend_name()
    'postgresql'
    """
    if "://" in target:
        return sa.make_url(target)
    return sa.URL.create("sqlite", database=str(target))


def ensure_demo_warehouse(
    database_url: str, *, now: datetime, announce: Callable[[str], None] | None = None
) -> bool:
    """Build the demo warehouse when ``database_url`` points at a missing ``livewatch-demo.db``.

    Returns whether it was built; ``announce`` gets a line to show the user before the build starts.
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return False
    path = Path(url.database)
    if path.name != "livewatch-demo.db" or path.exists():
        return False
    if announce is not None:
        announce(f"building the demo warehouse {path} (first run, about 30 s)...")
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        build_demo(
            engine, end=pd.Timestamp(now).floor("h").to_pydatetime(), experiment_units=DEMO_EXPERIMENT_UNITS
        )
    finally:
        engine.dispose()
    return True
