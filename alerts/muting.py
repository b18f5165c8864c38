"""Silences and maintenance/event windows. Pure.

``is_muted(labels, silences, windows, now) -> MuteDecision``
    Muted when an active silence (``created_at <= now < expires_at``) matches all its matchers against the
    labels, or when an active window (``start <= now < end``) with ``suppress=True`` matches. Windows with
    ``suppress=False`` (e.g. a policy launch expected to raise reports) do not mute but add an annotation
    so the message says "during <window>". The decision names the silence or window that decided it.

``is_incident_muted(incident, silences, windows, now) -> MuteDecision``
    An incident is muted only when every member is muted (one unmuted member is news); annotations of all
    members are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from alerts.model import AlertDataError, Incident, Matcher, Silence, ensure_utc, matches_all

__all__ = ["MaintenanceWindow", "MuteDecision", "is_incident_muted", "is_muted"]


@dataclass(frozen=True)
class MaintenanceWindow:
    """A planned period (policy launch, live event, maintenance) affecting matching signals.

    Attributes:
        name: Shown in messages and reasons.
        start: Inclusive start (UTC-aware).
        end: Exclusive end (UTC-aware).
        matchers: All must match; none matches everything.
        suppress: True mutes matching signals; False only annotates their messages.
    """

    name: str
    start: datetime
    end: datetime
    matchers: tuple[Matcher, ...] = ()
    suppress: bool = True

    def __post_init__(self) -> None:
        ensure_utc(self.start, what=f"window {self.name!r} start")
        ensure_utc(self.end, what=f"window {self.name!r} end")
        if self.end <= self.start:
            raise AlertDataError(f"window {self.name!r} ends ({self.end}) before it starts ({self.start})")

    def active_at(self, now: datetime) -> bool:
        return self.start <= now < self.end


@dataclass(frozen=True)
class MuteDecision:
    """Whether to stay quiet, why, and annotations to add when not muted."""

    muted: bool
    reason: str | None = None
    annotations: tuple[str, ...] = ()


def _describe(matchers: Iterable[Matcher]) -> str:
    ops = {(False, False): "=", (False, True): "!=", (True, False): "=~", (True, True): "!~"}
    return ",".join(f"{m.name}{ops[(m.regex, m.negate)]}{m.value}" for m in matchers) or "everything"


def is_muted(
    labels: Mapping[str, str],
    silences: Sequence[Silence],
    windows: Sequence[MaintenanceWindow],
    now: datetime,
) -> MuteDecision:
    """Decide for one label set; see the module docstring."""
    ensure_utc(now, what="is_muted(now)")
    for silence in silences:
        if silence.active_at(now) and matches_all(silence.matchers, labels):
            return MuteDecision(
                True,
                f"silence {silence.id} ({_describe(silence.matchers)}) by {silence.created_by} until "
                f"{silence.expires_at.isoformat()}: {silence.reason}",
            )
    notes: list[str] = []
    for window in windows:
        if window.active_at(now) and matches_all(window.matchers, labels):
            if window.suppress:
                return MuteDecision(True, f"window {window.name} until {window.end.isoformat()}")
            notes.append(f"during {window.name} (until {window.end.isoformat()})")
    return MuteDecision(False, None, tuple(notes))


def is_incident_muted(
    incident: Incident,
    silences: Sequence[Silence],
    windows: Sequence[MaintenanceWindow],
    now: datetime,
) -> MuteDecision:
    """Muted only if every member is muted; reasons and annotations are merged without repeats."""
    decisions = [
        is_muted({**s.labels, "severity": incident.severity.value}, silences, windows, now)
        for s in incident.signals
    ]
    annotations = tuple(dict.fromkeys(a for d in decisions for a in d.annotations))
    if decisions and all(d.muted for d in decisions):
        reasons = "; ".join(dict.fromkeys(d.reason for d in decisions if d.reason))
        return MuteDecision(True, reasons, annotations)
    return MuteDecision(False, None, annotations)
