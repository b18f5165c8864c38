"""Deciding whether an incident deserves a message now. Pure; the reason is always returned.

``should_notify(previous, incident, now, repeat_interval, *, grow_factor=1.5) -> NotifyReason``
    ``previous`` is the :class:`~alerts.model.NotifiedSnapshot` of the last notification for this receiver
    (``None`` if never notified). Checked in this order (first hit wins):

    1. incident resolved: ``resolved`` if a non-resolution message went out before, else ``nothing_new``
       (nobody was told it was open, so nobody needs to hear it closed);
    2. snoozed (``snoozed_until > now``): ``snoozed``;
    3. never notified: ``first``;
    4. a metric not in the last message: ``new_metric_joined``;
    5. a region not in the last message: ``spread``;
    6. severity rose, or the largest ``|change %|`` reached ``grow_factor`` times the notified one: ``grew``;
    7. a segment among the top root causes that was not in the last message: ``new_root_cause``;
    8. acknowledged: ``acknowledged`` (people are on it; reminders stop);
    9. ``repeat_interval`` elapsed since the last message: ``repeat_elapsed``;
    10. otherwise ``nothing_new``.

``snapshot(incident, receiver, reason, now) -> NotifiedSnapshot`` records what a notification showed.

``catch_up_gate(reason, previous, incident, *, live) -> NotifyReason``
    Catch-up (buckets older than the live edge, ``live=False``) delivers each incident once, as its final
    state; reminders and intermediate updates only happen in live time. Checked in order:

    1. ``live``: the reason is unchanged;
    2. ``resolved`` (people were told before the downtime): sent, it is the final state;
    3. the incident resolved in this bucket and nobody was ever told (``previous is None``):
       ``catch_up_summary`` -- one message with its final state and a short timeline;
    4. any other reason that would send (first, grew, spread, new metric / root cause, reminder):
       ``catching_up`` -- not sent; the first live bucket diffs against the last snapshot and sends one
       message with the state then (an incident still open is announced as new);
    5. otherwise the reason is unchanged (nothing new, snoozed, acknowledged).

``summarise_timeline(events, *, limit=8) -> str`` -- the short timeline of a catch-up summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from alerts.model import (
    AlertDataError,
    Incident,
    IncidentState,
    LifecycleEvent,
    NotifiedSnapshot,
    NotifyReason,
    ensure_utc,
)

__all__ = ["catch_up_gate", "should_notify", "snapshot", "summarise_timeline"]


def should_notify(
    previous: NotifiedSnapshot | None,
    incident: Incident,
    now: datetime,
    repeat_interval: timedelta,
    *,
    grow_factor: float = 1.5,
) -> NotifyReason:
    """Why (or why not) to notify; see the module docstring for the ordered rules."""
    ensure_utc(now, what="should_notify(now)")
    if grow_factor <= 1.0:
        raise AlertDataError(f"grow_factor must be > 1 (1.5 = 50% larger), got {grow_factor}")
    if incident.state is IncidentState.RESOLVED:
        if previous is None or previous.resolved:
            return NotifyReason.NOTHING_NEW
        return NotifyReason.RESOLVED
    if (
        incident.state is IncidentState.SNOOZED
        and incident.snoozed_until is not None
        and incident.snoozed_until > now
    ):
        return NotifyReason.SNOOZED
    if previous is None or previous.resolved:
        return NotifyReason.FIRST
    if set(incident.metrics) - previous.metrics:
        return NotifyReason.NEW_METRIC_JOINED
    if set(incident.regions) - previous.regions:
        return NotifyReason.SPREAD
    grew_in_size = (
        incident.magnitude > previous.magnitude and incident.magnitude >= previous.magnitude * grow_factor
    )
    if incident.severity.rank > previous.severity.rank or grew_in_size:
        return NotifyReason.GREW
    if incident.top_segments() - previous.root_causes:
        return NotifyReason.NEW_ROOT_CAUSE
    if incident.state is IncidentState.ACKNOWLEDGED:
        return NotifyReason.ACKNOWLEDGED
    if now - previous.at >= repeat_interval:
        return NotifyReason.REPEAT_ELAPSED
    return NotifyReason.NOTHING_NEW


def snapshot(incident: Incident, receiver: str, reason: NotifyReason, now: datetime) -> NotifiedSnapshot:
    """What a notification sent now for ``incident`` to ``receiver`` shows."""
    return NotifiedSnapshot(
        receiver=receiver,
        at=now,
        reason=reason,
        severity=incident.severity,
        metrics=frozenset(incident.metrics),
        regions=frozenset(incident.regions),
        root_causes=incident.top_segments(),
        magnitude=incident.magnitude,
        resolved=reason in (NotifyReason.RESOLVED, NotifyReason.CATCH_UP_SUMMARY),
    )


def catch_up_gate(
    reason: NotifyReason, previous: NotifiedSnapshot | None, incident: Incident, *, live: bool
) -> NotifyReason:
    """What to send for ``reason`` during a catch-up; see the module docstring. Pure."""
    if live or reason is NotifyReason.RESOLVED:
        return reason
    if incident.state is IncidentState.RESOLVED and previous is None:
        return NotifyReason.CATCH_UP_SUMMARY
    if reason.notify:
        return NotifyReason.CATCHING_UP
    return reason


def summarise_timeline(events: Sequence[LifecycleEvent], *, limit: int = 8) -> str:
    """One line per lifecycle event (``"2026-02-02 12:00 opened: 1 signal(s)"``), notifications left out,
    the first ``limit - 1`` and the last one when there are more."""
    lines = [
        f"{e.at:%Y-%m-%d %H:%M} {e.kind.value}" + (f": {e.detail}" if e.detail else "")
        for e in events
        if e.kind.value not in ("notified", "suppressed")
    ]
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"… {len(lines) - limit} more …", lines[-1]]
    return "\n".join(lines)
