"""Route tree: Alertmanager matching with `continue`, inheritance and a reason path (table-driven)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.model import Matcher
from alerts.routing import Route, RoutingError, route, route_incident, validate_tree
from tests.alerts.factories import incident, signal

H = timedelta(hours=1)
TREE = Route(
    receiver="slack",
    channel="#tns-alerts",
    repeat_interval=4 * H,
    routes=(
        Route(
            name="oncall",
            matchers=(Matcher("severity", "critical"),),
            channel="#tns-oncall",
            repeat_interval=H,
            continue_matching=True,
        ),
        Route(
            name="latam",
            matchers=(Matcher("region", "BR|MX|AR", regex=True),),
            channel="#tns-latam",
            routes=(
                Route(name="latam-bans", matchers=(Matcher("metric", "bans"),), receiver="bans-webhook"),
            ),
        ),
        Route(
            name="not-reports", matchers=(Matcher("metric", "reports", negate=True),), channel="#tns-other"
        ),
    ),
)


def _targets(labels: dict[str, str]) -> list[tuple[str, str, timedelta, str]]:
    return [(m.receiver, m.channel, m.repeat_interval, "/".join(m.path)) for m in route(TREE, labels)]


CASES = [
    # (labels, expected [(receiver, channel, repeat, path)], what it proves)
    (
        {"metric": "reports", "region": "EU", "severity": "warning"},
        [("slack", "#tns-alerts", 4 * H, "root")],
        "nothing below matches: the root itself is the route",
    ),
    (
        {"metric": "reports", "region": "EU", "severity": "critical"},
        [("slack", "#tns-oncall", H, "root/oncall")],
        "a matching child wins; children inherit the receiver",
    ),
    (
        {"metric": "reports", "region": "BR", "severity": "critical"},
        [("slack", "#tns-oncall", H, "root/oncall"), ("slack", "#tns-latam", 4 * H, "root/latam")],
        "continue lets a later sibling match too; repeat interval inherited from root, not sibling",
    ),
    (
        {"metric": "bans", "region": "MX", "severity": "warning"},
        [("bans-webhook", "#tns-latam", 4 * H, "root/latam/latam-bans")],
        "nested route: deepest match, channel inherited from its parent",
    ),
    (
        {"metric": "bans", "region": "EU", "severity": "info"},
        [("slack", "#tns-other", 4 * H, "root/not-reports")],
        "negated matcher",
    ),
    (
        {"metric": "reports", "region": "BRA", "severity": "info"},
        [("slack", "#tns-alerts", 4 * H, "root")],
        "regex matchers are anchored (fullmatch): BRA is not BR",
    ),
]


@pytest.mark.parametrize(("labels", "expected", "why"), CASES, ids=[c[2] for c in CASES])
def test_route_table(
    labels: dict[str, str], expected: list[tuple[str, str, timedelta, str]], why: str
) -> None:
    assert _targets(labels) == expected, why


def test_route_incident_unions_members_headline_first() -> None:
    inc = incident(signal(region="EU", score=9.0, volume=5_000.0), signal(region="BR", score=4.0))
    matches = route_incident(TREE, inc)
    assert [(m.receiver, m.channel) for m in matches] == [
        ("slack", "#tns-oncall"),
        ("slack", "#tns-latam"),
    ]


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (Route(channel="#a", repeat_interval=H), "must set receiver"),
        (Route(receiver="s", channel="#a", repeat_interval=H, matchers=(Matcher("a", "b"),)), "has matchers"),
        (
            Route(
                receiver="s", channel="#a", repeat_interval=H, routes=(Route(name="x", repeat_interval=-H),)
            ),
            "root/x: repeat_interval must be positive",
        ),
    ],
    ids=["root without receiver", "root with matchers", "negative repeat"],
)
def test_validate_tree_names_the_problem(tree: Route, message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        validate_tree(tree)


def test_valid_tree_passes() -> None:
    validate_tree(TREE)
