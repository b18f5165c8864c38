"""A small Alertmanager-style route tree: labels -> receivers. Pure.

``route(root, labels) -> list[RouteMatch]``
    Depth-first like Alertmanager's ``dispatch/route.go``: a node matches when all its matchers match; its
    children are tried in order and the first matching child stops the search unless that child has
    ``continue_matching`` (Alertmanager's ``continue``); a matching node none of whose children match is
    itself the result. ``receiver``, ``channel`` and ``repeat_interval`` are inherited from the parent when
    a node leaves them unset. Each :class:`RouteMatch` carries the ``path`` of node names that led to it:
    the reason it was chosen.

``route_incident(root, incident) -> list[RouteMatch]``
    Routes every member's labels plus ``severity`` (the incident's) and returns the union, the headline
    member's matches first: an incident that spread into a region goes to that region's team too.

``validate_tree(root)`` raises :class:`RoutingError` unless the root sets a receiver, a channel and a
repeat interval and has no matchers (it must catch everything).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from alerts.model import Incident, Matcher, matches_all

__all__ = ["Route", "RouteMatch", "RoutingError", "route", "route_incident", "validate_tree"]


class RoutingError(ValueError):
    """The route tree is incomplete or inconsistent."""


@dataclass(frozen=True)
class Route:
    """One node of the route tree.

    Attributes:
        name: Shown in ``RouteMatch.path``.
        matchers: All must match the labels (none: matches everything).
        receiver: Sink name; inherited when None.
        channel: Slack channel; inherited when None.
        repeat_interval: Reminder period for a still-firing incident; inherited when None.
        continue_matching: Keep trying later siblings after this node matched.
        routes: Child nodes, tried in order.
    """

    name: str = "root"
    matchers: tuple[Matcher, ...] = ()
    receiver: str | None = None
    channel: str | None = None
    repeat_interval: timedelta | None = None
    continue_matching: bool = False
    routes: tuple[Route, ...] = field(default=())


@dataclass(frozen=True)
class RouteMatch:
    """Where to send, how often to remind, and the path of route names that chose it."""

    receiver: str
    channel: str
    repeat_interval: timedelta
    path: tuple[str, ...]


def validate_tree(root: Route) -> None:
    """Raise :class:`RoutingError` naming the offending node if the tree cannot route every label set."""
    if root.matchers:
        raise RoutingError(f"root route {root.name!r} has matchers; the root must match everything")
    missing = [
        n
        for n, v in (
            ("receiver", root.receiver),
            ("channel", root.channel),
            ("repeat_interval", root.repeat_interval),
        )
        if v is None
    ]
    if missing:
        raise RoutingError(f"root route {root.name!r} must set {', '.join(missing)} (children inherit them)")

    def walk(node: Route, path: tuple[str, ...]) -> None:
        if node.repeat_interval is not None and node.repeat_interval <= timedelta(0):
            raise RoutingError(f"route {'/'.join(path)}: repeat_interval must be positive")
        for child in node.routes:
            walk(child, (*path, child.name))

    walk(root, (root.name,))


def _match(
    node: Route,
    labels: Mapping[str, str],
    inherited: tuple[str | None, str | None, timedelta | None],
    path: tuple[str, ...],
) -> list[RouteMatch]:
    if not matches_all(node.matchers, labels):
        return []
    receiver = node.receiver if node.receiver is not None else inherited[0]
    channel = node.channel if node.channel is not None else inherited[1]
    repeat = node.repeat_interval if node.repeat_interval is not None else inherited[2]
    here = (*path, node.name)
    found: list[RouteMatch] = []
    for child in node.routes:
        matches = _match(child, labels, (receiver, channel, repeat), here)
        found.extend(matches)
        if matches and not child.continue_matching:
            break
    if not found:
        if receiver is None or channel is None or repeat is None:
            raise RoutingError(f"route {'/'.join(here)} resolved without receiver/channel/repeat_interval")
        found.append(RouteMatch(receiver, channel, repeat, here))
    return found


def route(root: Route, labels: Mapping[str, str]) -> list[RouteMatch]:
    """Receivers for one label set (see the module docstring); never empty for a valid tree."""
    return _match(root, labels, (None, None, None), ())


def route_incident(root: Route, incident: Incident) -> list[RouteMatch]:
    """Union of the matches of every member (headline first), one per (receiver, channel)."""
    headline = incident.headline
    members = [headline, *(s for s in incident.signals if s is not headline)]
    seen: dict[tuple[str, str], RouteMatch] = {}
    for signal in members:
        labels = {**signal.labels, "severity": incident.severity.value}
        for match in route(root, labels):
            seen.setdefault((match.receiver, match.channel), match)
    return list(seen.values())
