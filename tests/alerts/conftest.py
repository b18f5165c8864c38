"""Fixtures of the alerts tests: the loopback fake Slack (from :mod:`tests.fakeslack`) and in-memory repos."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.engine import AlertRepos
from alerts.model import Matcher
from alerts.routing import Route
from alerts.testing import InMemoryIncidentRepository, InMemoryOutbox, InMemorySilenceRepository
from tests.fakeslack import fake_slack, fake_slack_server, strict_slack

__all__ = ["fake_slack", "fake_slack_server", "repos", "routes", "strict_slack"]


@pytest.fixture
def repos() -> AlertRepos:
    return AlertRepos(InMemoryIncidentRepository(), InMemoryOutbox(), InMemorySilenceRepository())


@pytest.fixture
def routes() -> Route:
    """One Slack receiver: everything to #tns-alerts (4 h reminders), criticals also to #tns-oncall (1 h)."""
    return Route(
        receiver="slack",
        channel="#tns-alerts",
        repeat_interval=timedelta(hours=4),
        routes=(
            Route(
                name="oncall",
                matchers=(Matcher("severity", "critical"),),
                receiver="oncall",
                channel="#tns-oncall",
                repeat_interval=timedelta(hours=1),
                continue_matching=True,
            ),
            Route(name="default"),
        ),
    )
