"""Grouping signals into incidents and the incident lifecycle. Pure functions; ``now`` is injected.

``group_signals(active, signals, now, *, config, policy) -> GroupingResult``
    Called once per evaluated bucket with every active incident and every signal of that bucket.

    * **Grouping.** Signals are linked when they share a metric (the same metric in several regions at once)
      or a region (several metrics rising together in one region), and linked to an active incident that
      has a member with that metric or region. Each connected set becomes, or joins, ONE incident with one
      root-cause summary. A signal joins the incident it matches best (same metric and region, then same
      metric, then same region; oldest first); a signal linked only through other signals joins the oldest
      incident of its set. Existing incidents are never merged (each already has its own Slack message).
      A level-shift incident held open by its new level and quiet for longer than
      ``config.join_window`` takes only signals of its own series.
    * **Inhibition.** A signal with a ``segment`` label whose metric and region are already covered by a
      metric-level member of an active incident is *absorbed*: counted on the incident, not a new member.
    * **Updates.** Members are keyed by fingerprint (labels); new numbers replace old ones. An ``updated``
      event says what changed: metric joined, spread to region, new root cause, severity raised. Severity
      never drops while the incident is active (a calmer bucket does not downgrade a critical incident).
    * **Resolution** is the pure decision :func:`decide_resolution` (table-tested). Spikes and dips resolve
      after ``config.resolve_after_clean`` consecutive evaluations without a member signal. A level shift
      does not end because the detector went quiet (it goes quiet once the new level is the norm): it
      stays open until every shifted series is back near its pre-shift level (:func:`level_returned`, each
      bucket judged against the model's expectation of it when ``expected`` is given) for
      ``resolve_after_clean`` consecutive evaluations (a bucket at the new level restarts the count), or a
      person acknowledged it (the new level is accepted) and it has been clean as long, or a person resolves
      it. An expired snooze returns the incident to ``open``.

``acknowledge(incident, actor, now)``, ``snooze(incident, actor, until, now)``, ``resolve(incident, actor,
now)`` apply people's actions and return an :class:`IncidentChange` (new incident + lifecycle event).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from alerts.model import (
    EXPERIMENT_KINDS,
    AlertDataError,
    AlertSignal,
    Incident,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    ensure_utc,
)
from alerts.severity import DEFAULT_SEVERITY_POLICY, SeverityPolicy, incident_severity

__all__ = [
    "SYSTEM_ACTOR",
    "GroupingConfig",
    "GroupingResult",
    "IncidentChange",
    "IncidentStateError",
    "Resolution",
    "ResolutionReason",
    "acknowledge",
    "decide_resolution",
    "group_signals",
    "level_returned",
    "resolve",
    "snooze",
]

#: Actor recorded on automatic lifecycle events.
SYSTEM_ACTOR = "livewatch"


class ResolutionReason(StrEnum):
    """Why an incident is (or is not) resolved automatically after an evaluation."""

    FIRING = "firing"
    WAITING = "waiting"
    BACK_TO_NORMAL = "back_to_normal"
    SHIFT_PERSISTS = "shift_persists"
    LEVEL_RETURNED = "level_returned"
    NEW_LEVEL_ACCEPTED = "new_level_accepted"

    @property
    def describe(self) -> str:
        """The words people read (events, Slack)."""
        return {
            "firing": "still firing",
            "waiting": "waiting for more clean buckets",
            "back_to_normal": "back to normal",
            "shift_persists": "the level shift persists; acknowledge to accept the new level or resolve it",
            "level_returned": "the series returned to its previous level",
            "new_level_accepted": "the new level was accepted (acknowledged) and no member fired since",
        }[self.value]


@dataclass(frozen=True)
class Resolution:
    """:func:`decide_resolution`'s answer: resolve or not, and why."""

    resolve: bool
    reason: ResolutionReason


def decide_resolution(
    incident: Incident,
    *,
    fired: bool,
    clean_buckets: int,
    returned: Collection[str],
    resolve_after: int,
) -> Resolution:
    """Whether ``incident`` resolves by itself after this evaluation. Pure.

    Args:
        incident: The incident (its members say whether it is a level shift; its state whether a person
            acknowledged it).
        fired: A member signal arrived in this evaluation.
        clean_buckets: Consecutive evaluations without a member signal, this one included.
        returned: ``"metric/region"`` of series back within their pre-shift band for at least
            ``resolve_after`` evaluations (as the pipeline judged it; empty when unknown).
        resolve_after: Clean evaluations needed.
    """
    if fired:
        return Resolution(False, ResolutionReason.FIRING)
    if clean_buckets < resolve_after:
        return Resolution(False, ResolutionReason.WAITING)
    shifted = {f"{s.metric}/{s.region}" for s in incident.signals if s.kind == "level_shift"}
    if not shifted:
        return Resolution(True, ResolutionReason.BACK_TO_NORMAL)
    if shifted <= set(returned):
        return Resolution(True, ResolutionReason.LEVEL_RETURNED)
    if incident.state is IncidentState.ACKNOWLEDGED:
        return Resolution(True, ResolutionReason.NEW_LEVEL_ACCEPTED)
    return Resolution(False, ResolutionReason.SHIFT_PERSISTS)


#: A shifted series is back when it has covered at least this fraction of the way to its previous level.
#: Not half: the new level of a ratio moves with its mix over the day, and a halfway rule took a calm
#: afternoon of a persisting shift (its 6-bucket mean at 30 % of the shift) for the return.
RETURN_FRACTION = 0.75


def level_returned(member: AlertSignal, observed: float, expected: float | None = None) -> bool:
    """Whether a level-shift member's series is back: it has covered at least :data:`RETURN_FRACTION` of the
    way from the shifted level (``member.observed``) back to the pre-shift level (``member.expected``). Pure.

    With ``expected`` (the model's expectation of the same bucket as ``observed``) the bucket's deviation
    is compared with the shift's, so a seasonal series is judged at every hour of its cycle: relatively when
    both expectations are positive, else in metric units. Without it, ``observed`` is compared with the
    pre-shift level itself.
    """
    shift = member.observed - member.expected
    if not (math.isfinite(shift) and math.isfinite(observed)) or shift == 0:
        return math.isfinite(observed)
    if expected is not None and math.isfinite(expected):
        if member.expected > 0 and expected > 0:
            remaining = (observed / expected - 1.0) / (member.observed / member.expected - 1.0)
        else:
            remaining = (observed - expected) / shift
    else:
        remaining = (observed - member.expected) / shift
    return remaining <= 1.0 - RETURN_FRACTION


class IncidentStateError(ValueError):
    """A person's action does not apply to the incident's current state."""


@dataclass(frozen=True)
class GroupingConfig:
    """Grouping and lifecycle settings.

    Attributes:
        resolve_after_clean: Consecutive evaluations without a member signal before auto-resolution.
        join_window: A level-shift incident held open by its new level whose last member signal is older
            than this takes only signals of its own series (metric and region): a shift that settled days
            ago is not the cause of a new anomaly in another region or metric, which opens its own incident.
    """

    resolve_after_clean: int = 3
    join_window: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        if self.resolve_after_clean < 1:
            raise AlertDataError(
                f"resolve_after_clean must be >= 1, got {self.resolve_after_clean}; 1 resolves at the first "
                "clean bucket"
            )


@dataclass(frozen=True)
class IncidentChange:
    """An incident after a step, the incident before it (None when just opened) and what happened."""

    incident: Incident
    previous: Incident | None
    events: tuple[LifecycleEvent, ...]


@dataclass(frozen=True)
class GroupingResult:
    """Every incident touched by :func:`group_signals` (all active ones plus new ones), and what was absorbed.

    Attributes:
        changes: One entry per incident, existing ones first in the given order, then new ones.
        absorbed: ``(segment signal, incident id)`` pairs inhibited by a metric-level incident.
    """

    changes: tuple[IncidentChange, ...]
    absorbed: tuple[tuple[AlertSignal, str], ...]


class _Draft:
    """Mutable working copy of one incident while a bucket is grouped."""

    def __init__(self, base: Incident | None, order: int, *, settled: bool = False) -> None:
        self.base = base
        self.order = order
        self.settled = settled
        self.members: dict[str, AlertSignal] = (
            {} if base is None else {s.fingerprint: s for s in base.signals}
        )
        self.fresh: list[AlertSignal] = []
        self.absorbed = 0 if base is None else base.absorbed

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.members.values()}

    @property
    def regions(self) -> set[str]:
        return {s.region for s in self.members.values()}

    def covers(self, signal: AlertSignal) -> bool:
        """A metric-level member with the signal's metric and region exists."""
        return any(
            m.segment is None and m.metric == signal.metric and m.region == signal.region
            for m in self.members.values()
        )

    def affinity(self, signal: AlertSignal) -> int | None:
        """0: same metric and region, 1: same metric, 2: same region, None: unrelated.

        Experiment signals (:data:`alerts.model.EXPERIMENT_KINDS`) relate only through their region.
        """
        if any(not _same_stream(signal, m) for m in self.members.values()):
            return None
        if self.settled:
            own = {(m.metric, m.region) for m in self.members.values()}
            return 0 if (signal.metric, signal.region) in own else None
        if signal.kind in EXPERIMENT_KINDS:
            return 2 if signal.region in self.regions else None
        pairs = {(m.metric, m.region) for m in self.members.values()}
        if (signal.metric, signal.region) in pairs:
            return 0
        if signal.metric in self.metrics:
            return 1
        if signal.region in self.regions:
            return 2
        return None

    def add(self, signal: AlertSignal) -> None:
        self.members[signal.fingerprint] = signal
        self.fresh.append(signal)

    def sort_key(self) -> tuple[datetime, str, int]:
        if self.base is None:
            return (datetime.max.replace(tzinfo=None), "", self.order)
        return (self.base.opened_at.replace(tzinfo=None), self.base.id, self.order)


def _settled(incident: Incident, now: datetime, config: GroupingConfig) -> bool:
    """A level-shift incident quiet for longer than ``config.join_window`` (see :class:`GroupingConfig`)."""
    return now - incident.last_signal_at > config.join_window and any(
        s.kind == "level_shift" for s in incident.signals
    )


def _same_stream(a: AlertSignal, b: AlertSignal) -> bool:
    """Both experiment signals or both regional anomalies: the two never share an incident."""
    return (a.kind in EXPERIMENT_KINDS) == (b.kind in EXPERIMENT_KINDS)


def _related(a: AlertSignal, b: AlertSignal) -> bool:
    if not _same_stream(a, b):
        return False
    if a.kind in EXPERIMENT_KINDS:
        return a.region == b.region
    return a.metric == b.metric or a.region == b.region


def _components(signals: Sequence[AlertSignal]) -> list[list[int]]:
    """Connected components (indices) of signals linked by a shared metric or region."""
    parent = list(range(len(signals)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(signals)):
        for j in range(i + 1, len(signals)):
            if _related(signals[i], signals[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(signals)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _attach(drafts: list[_Draft], signals: Sequence[AlertSignal]) -> None:
    """Attach ``signals`` to drafts (existing or new) following the grouping rule of the module docstring."""
    if not signals:
        return
    ordered = sorted(drafts, key=lambda d: d.sort_key())
    for component in _components(signals):
        members = [signals[i] for i in component]
        touching = [d for d in ordered if any(d.affinity(s) is not None for s in members)]
        if not touching:
            draft = _Draft(None, order=len(drafts))
            drafts.append(draft)
            for s in members:
                draft.add(s)
            continue
        plan: list[tuple[AlertSignal, _Draft]] = []
        for s in members:
            scored = [(aff, i) for i, d in enumerate(touching) if (aff := d.affinity(s)) is not None]
            plan.append((s, touching[min(scored)[1]] if scored else touching[0]))
        for s, draft in plan:
            draft.add(s)


def _new_id(first: AlertSignal, now: datetime) -> str:
    return f"{first.metric}/{first.region}/{now.strftime('%Y%m%dT%H%M%SZ')}"


def _event(
    incident: Incident, kind: LifecycleKind, now: datetime, detail: str, actor: str = SYSTEM_ACTOR
) -> LifecycleEvent:
    return LifecycleEvent(incident.id, kind, now, actor, detail)


def _describe_growth(before: Incident, after: Incident) -> str:
    parts: list[str] = []
    for metric in sorted(set(after.metrics) - set(before.metrics)):
        parts.append(f"metric {metric} joined")
    for region in sorted(set(after.regions) - set(before.regions)):
        parts.append(f"spread to region {region}")
    for segment in sorted(after.top_segments() - before.top_segments()):
        parts.append(f"new root cause {segment}")
    if after.severity.rank > before.severity.rank:
        parts.append(f"severity {before.severity} -> {after.severity}")
    return "; ".join(parts)


def _dedupe(signals: Iterable[AlertSignal]) -> list[AlertSignal]:
    latest: dict[str, AlertSignal] = {}
    for s in signals:
        latest[s.fingerprint] = s
    return [latest[k] for k in sorted(latest)]


def group_signals(
    active: Sequence[Incident],
    signals: Sequence[AlertSignal],
    now: datetime,
    *,
    config: GroupingConfig = GroupingConfig(),
    policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY,
    returned: Collection[str] = (),
    observed: Mapping[str, float] | None = None,
    expected: Mapping[str, float] | None = None,
) -> GroupingResult:
    """Group one bucket of signals into incidents; see the module docstring for the rules.

    Args:
        active: Every active incident (resolved ones are ignored if passed).
        signals: Every signal of the evaluated bucket (duplicates by fingerprint: the last one wins).
        now: Evaluation time (UTC-aware).
        config: Grouping settings.
        policy: Severity rules.
        returned: ``"metric/region"`` of series known to be back at their pre-shift level.
        observed: ``"metric/region"`` -> this bucket's observed value of every scored series; a level-shift
            member whose series is back (:func:`level_returned`), or is not observed in this bucket, counts
            as returned (only an observation at the new level holds a level shift open).
        expected: ``"metric/region"`` -> the model's expectation of the same bucket, so the return of a
            seasonal series is judged against its own hour (see :func:`level_returned`).

    Returns:
        The incidents after this bucket with their lifecycle events, and the absorbed segment signals.
    """
    ensure_utc(now, what="group_signals(now)")
    drafts = [_Draft(i, order=n, settled=_settled(i, now, config)) for n, i in enumerate(active) if i.active]
    unique = _dedupe(signals)

    _attach(drafts, [s for s in unique if s.segment is None])
    absorbed: list[tuple[AlertSignal, _Draft]] = []
    loose: list[AlertSignal] = []
    for s in (s for s in unique if s.segment is not None):
        owner = next((d for d in sorted(drafts, key=lambda d: d.sort_key()) if d.covers(s)), None)
        if owner is None:
            loose.append(s)
        else:
            owner.absorbed += 1
            absorbed.append((s, owner))
    _attach(drafts, loose)

    changes: list[IncidentChange] = []
    for draft in drafts:
        # A shifted series holds its new level only on evidence: observed this bucket and not back. One that
        # is not observed (another scoring group, a self-monitoring check) cannot hold an incident open.
        seen, model = observed or {}, expected or {}
        back = set(returned) | {
            key
            for m in draft.members.values()
            if m.kind == "level_shift"
            and (
                (key := f"{m.metric}/{m.region}") not in seen or level_returned(m, seen[key], model.get(key))
            )
        }
        changes.append(_finish(draft, now, config, policy, back))
    by_draft = {id(d): c.incident.id for d, c in zip(drafts, changes, strict=True)}
    return GroupingResult(
        changes=tuple(changes),
        absorbed=tuple((s, by_draft[id(d)]) for s, d in absorbed),
    )


def _finish(
    draft: _Draft, now: datetime, config: GroupingConfig, policy: SeverityPolicy, returned: Collection[str]
) -> IncidentChange:
    members = tuple(draft.members[k] for k in sorted(draft.members))
    before = draft.base
    if before is None:
        first = min(members, key=lambda s: (-abs(s.score), -s.volume, s.fingerprint))
        opened = Incident(
            id=_new_id(first, now),
            group_key=f"{first.metric}/{first.region}",
            state=IncidentState.OPEN,
            severity=incident_severity(members, policy),
            opened_at=now,
            updated_at=now,
            signals=members,
            last_signal_at=now,
            absorbed=draft.absorbed,
        )
        detail = (
            f"{len(members)} signal(s): {', '.join(sorted({s.metric for s in members}))} in "
            + ", ".join(sorted({s.region for s in members}))
        )
        return IncidentChange(opened, None, (_event(opened, LifecycleKind.OPENED, now, detail),))

    incident = before.with_changes(absorbed=draft.absorbed)
    events: list[LifecycleEvent] = []
    if (
        incident.state is IncidentState.SNOOZED
        and incident.snoozed_until is not None
        and incident.snoozed_until <= now
    ):
        incident = incident.with_changes(state=IncidentState.OPEN, snoozed_until=None, updated_at=now)
        events.append(_event(incident, LifecycleKind.UPDATED, now, "snooze expired"))

    if draft.fresh:
        grown = incident.with_changes(
            signals=members,
            severity=max(incident.severity, incident_severity(members, policy), key=lambda s: s.rank),
            last_signal_at=now,
            updated_at=now,
            clean_buckets=0,
        )
        growth = _describe_growth(incident, grown)
        if growth:
            events.append(_event(grown, LifecycleKind.UPDATED, now, growth))
        return IncidentChange(grown, before, tuple(events))

    shifted = {f"{s.metric}/{s.region}" for s in incident.signals if s.kind == "level_shift"}
    holding = bool(shifted - set(returned)) and incident.state is not IncidentState.ACKNOWLEDGED
    # While a shifted series holds its new level, a quiet detector is not a clean bucket: the count restarts,
    # so a level shift resolves only after ``resolve_after_clean`` consecutive buckets back at the old level.
    clean = 0 if holding else incident.clean_buckets + 1
    decision = decide_resolution(
        incident,
        fired=False,
        clean_buckets=clean,
        returned=returned,
        resolve_after=config.resolve_after_clean,
    )
    if decision.resolve:
        resolved = incident.with_changes(
            state=IncidentState.RESOLVED,
            clean_buckets=clean,
            resolved_at=now,
            resolved_by=SYSTEM_ACTOR,
            updated_at=now,
            snoozed_until=None,
        )
        detail = f"{decision.reason.describe} ({clean} clean bucket(s))"
        events.append(_event(resolved, LifecycleKind.RESOLVED, now, detail))
        return IncidentChange(resolved, before, tuple(events))
    return IncidentChange(incident.with_changes(clean_buckets=clean), before, tuple(events))


def _require_active(incident: Incident, action: str) -> None:
    if not incident.active:
        raise IncidentStateError(
            f"cannot {action} incident {incident.id}: it was resolved at {incident.resolved_at}; "
            "a new anomaly opens a new incident"
        )


def acknowledge(incident: Incident, actor: str, now: datetime) -> IncidentChange:
    """A person takes the incident: repeat reminders stop; growth and resolution still notify."""
    ensure_utc(now, what="acknowledge(now)")
    _require_active(incident, "acknowledge")
    if not actor:
        raise IncidentStateError(f"acknowledging incident {incident.id} needs an actor (who is taking it)")
    after = incident.with_changes(
        state=IncidentState.ACKNOWLEDGED, acknowledged_by=actor, acknowledged_at=now, updated_at=now
    )
    return IncidentChange(after, incident, (_event(after, LifecycleKind.ACKNOWLEDGED, now, "", actor),))


def snooze(incident: Incident, actor: str, until: datetime, now: datetime) -> IncidentChange:
    """A person silences this incident until ``until``; it keeps grouping and can still resolve."""
    ensure_utc(now, what="snooze(now)")
    ensure_utc(until, what="snooze(until)")
    _require_active(incident, "snooze")
    if until <= now:
        raise IncidentStateError(
            f"snooze of incident {incident.id} ends at {until.isoformat()}, which is not after now "
            f"({now.isoformat()}); pass a future time"
        )
    if not actor:
        raise IncidentStateError(f"snoozing incident {incident.id} needs an actor")
    after = incident.with_changes(
        state=IncidentState.SNOOZED, snoozed_by=actor, snoozed_until=until, updated_at=now
    )
    event = _event(after, LifecycleKind.SNOOZED, now, f"until {until.isoformat()}", actor)
    return IncidentChange(after, incident, (event,))


def resolve(incident: Incident, actor: str, now: datetime) -> IncidentChange:
    """A person closes the incident."""
    ensure_utc(now, what="resolve(now)")
    _require_active(incident, "resolve")
    if not actor:
        raise IncidentStateError(f"resolving incident {incident.id} needs an actor")
    after = incident.with_changes(
        state=IncidentState.RESOLVED, resolved_at=now, resolved_by=actor, updated_at=now, snoozed_until=None
    )
    return IncidentChange(after, incident, (_event(after, LifecycleKind.RESOLVED, now, "by hand", actor),))
