"""One real tick end to end on a small demo warehouse: fetch, detect, slice, alert, deliver, exactly once."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerts.sinks.console import ConsoleSink
from monitor.config import Config, parse_config
from monitor.pipeline.tick import Monitor
from monitor.tools.demo import build_demo, demo_incidents
from monitor.wiring import build_monitor, build_routes, open_store, warehouse_source
from tests.fakeslack import FakeSlack

END = datetime(2026, 11, 29, tzinfo=UTC)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    build_demo(engine, end=END, days=24, seed=7)
    engine.dispose()
    return path


def demo_config(warehouse: Path, state: Path) -> Config:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{warehouse}"},
            "state": {"url": f"sqlite:///{state}"},
            "regions": {"BR": "BR", "MX": "MX", "SA": "SA", "PH": "PH", "US": "US"},
            "defaults": {
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
            ],
            "alerts": {"jsonl_path": None},
            "scheduler": {"max_catchup": "11d"},
        },
        env={},
    )


def test_tick_reports_injected_incidents_once_and_not_the_noise(warehouse: Path, tmp_path: Path) -> None:
    config = demo_config(warehouse, tmp_path / "state.db")
    stream = io.StringIO()
    sinks = {"console": ConsoleSink(stream)}
    monitor = Monitor(
        config, warehouse_source(config), open_store(config), sinks, build_routes(config, sinks, "console")
    )

    report = monitor.tick(END + timedelta(minutes=30))

    assert report.errors == 0 and report.series_scored == 12
    incidents = monitor.store.list_incidents()
    truth = {(i.metric, i.region): i for i in demo_incidents(END) if i.metric == "user_reports"}
    found = {(m.metric, m.region) for inc in incidents for m in inc.signals}
    # the raids in BR and MX and the new-creator surge in ID are found, with their true root cause first
    for key in [("user_reports", "BR"), ("user_reports", "MX"), ("user_reports", "ID")]:
        assert key in found, f"missed {key}"
        member = next(m for inc in incidents for m in inc.signals if (m.metric, m.region) == key)
        assert abs(member.start - truth[key].start) <= timedelta(hours=2)
        assert member.root_causes[0].segment == truth[key].root_cause
    # the noise burst in the tiny region and the data gap do not alert
    assert ("user_reports", "SA") not in found and ("user_reports", "PH") not in found
    assert "[CRITICAL]" in stream.getvalue() or "[WARNING]" in stream.getvalue()

    # a second tick over the same data scores nothing again and sends nothing new
    again = monitor.tick(END + timedelta(minutes=45))
    assert again.series_scored == 0 and again.notifications == []
    assert len(monitor.store.list_incidents()) == len(incidents)


def test_tick_posts_one_living_slack_message_per_incident(
    warehouse: Path, tmp_path: Path, fake_slack: FakeSlack
) -> None:
    data = demo_config(warehouse, tmp_path / "state.db").model_dump(mode="json", by_alias=True)
    slack = {**data["alerts"]["slack"], "api_url": fake_slack.api_url}
    data["alerts"].update({"console": False, "slack": slack})
    config = parse_config(data, env={})
    monitor = build_monitor(config, {"SLACK_BOT_TOKEN": fake_slack.token})

    monitor.tick(END + timedelta(minutes=30))

    incidents = [i for i in monitor.store.list_incidents() if i.notified]
    posts = fake_slack.top_level("#livewatch-alerts")
    assert len(posts) == len(incidents) >= 3  # one top-level message per incident
    assert len(fake_slack.files()) == len(incidents)  # a chart in each thread
    for post in posts:
        assert "livewatch investigate user_reports --region" in str(post["blocks"])
    resolved = [i for i in incidents if i.state.value == "resolved"]
    assert len(fake_slack.calls("chat.update")) >= len(resolved) > 0  # resolution edits the message

    before = len(fake_slack.requests)
    monitor.tick(END + timedelta(minutes=50))
    assert len(fake_slack.top_level("#livewatch-alerts")) == len(posts)  # nothing new posted
    assert len(fake_slack.requests) == before
