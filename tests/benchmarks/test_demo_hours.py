"""benchmarks/demo_hours.py: matching the incidents a tick opened against the demo's ground truth."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.demo_hours import Opened, match
from monitor.tools.demo import demo_experiments, demo_incidents

END = pd.Timestamp("2026-12-04", tz="UTC")
TRUTH = demo_incidents(END.to_pydatetime())
EXPERIMENTS = demo_experiments(END.to_pydatetime())
RAID = next(t for t in TRUTH if t.incident == "mx_bullying_raid")
BURST = next(t for t in TRUTH if t.incident == "sa_noise_burst")


def _opened(metrics: tuple[str, ...], regions: tuple[str, ...], started: pd.Timestamp) -> Opened:
    return Opened(metrics, regions, "spike", started)


@pytest.mark.parametrize(
    ("opened", "found", "false"),
    [
        # the raid, opened an hour after it began: found
        (
            _opened(("bans", "user_reports"), ("MX",), pd.Timestamp(RAID.start) + pd.Timedelta(hours=1)),
            {"mx_bullying_raid"},
            0,
        ),
        # the right region and time but a metric the raid did not move
        (_opened(("review_latency",), ("MX",), pd.Timestamp(RAID.start)), set(), 1),
        # the right metric a day later
        (_opened(("bans",), ("MX",), pd.Timestamp(RAID.end) + pd.Timedelta(days=1)), set(), 1),
        # the burst that must not alert is no incident to find
        (_opened(("user_reports",), ("SA",), pd.Timestamp(BURST.start)), set(), 1),
        # the harmful experiment is found, the harmless one is false
        (_opened(("report_rate_per_1k",), ("experiment/autoplay_next/autoplay",), END), {"autoplay_next"}, 0),
        (_opened(("report_rate_per_1k",), ("experiment/feed_ranking_v2/ranked_feed",), END), set(), 1),
    ],
)
def test_match(opened: Opened, found: set[str], false: int) -> None:
    got_found, got_false = match([opened], TRUTH, EXPERIMENTS)
    assert got_found == found
    assert len(got_false) == false
