"""Exactly-once delivery of one notification as a sequence of idempotent *steps*. Pure.

A Slack notification is not one call but several, each with its own effect in Slack:

* ``post``   -- ``chat.postMessage`` of the incident's top-level message (first notification only);
* ``upload`` -- ``files_upload_v2`` of the chart into that message's thread (first notification, if a chart);
* ``update`` -- ``chat.update`` of the living message (every later notification);
* ``reply``  -- ``chat.postMessage(thread_ts=...)`` of the short thread note (every later notification).

``plan_steps(has_thread, has_chart) -> tuple[StepKind, ...]`` gives the steps of a notification.

Each step is recorded durably through :class:`alerts.ports.StepLog`: ``started`` right *before* the Slack
call (with the channel id, and the thread ts for thread steps), ``done`` right after Slack answered (with
Slack's ``ts`` or the uploaded ``file_id``), ``failed`` when Slack answered "no" (nothing happened in
Slack), ``skipped`` when the step is given up for good (e.g. the chart upload lacks ``files:write``).

After a crash (``kill -9`` between Slack's answer and the ``done`` record) a step is ``started`` but not
``done``: Slack may or may not have the effect. :func:`decide_step` says what to do, from the step's last
record and, when asked for, what a lookup in Slack found:

============  =================  ===========  ==========  =========================================
step          last record        lookup       action      reason
============  =================  ===========  ==========  =========================================
any           done / skipped     -            skip        ``already_done``
any           none (no attempt)  -            run         ``not_started``
any           failed             -            run         ``failed_before`` (Slack said no)
update        started            -            run         ``idempotent_retry`` (same content again)
post/reply/   started, or none   not asked    lookup      ``unconfirmed`` (may be in Slack already)
upload        after an attempt
post/reply/   (as above)         found        adopt       ``found_in_slack`` (record done, no resend)
upload
post/reply/   (as above)         absent       run         ``not_in_slack``
upload
post/reply/   (as above)         unavailable  run         ``cannot_verify`` (no history scope or Slack
upload                                                    down: at most one duplicate, never lost)
============  =================  ===========  ==========  =========================================

"none after an attempt" covers a store without step records (or one that lost them): the outbox says an
earlier attempt started (``attempts > 0``), so the effect may exist. Posts and thread replies are found by
their message ``metadata`` (``event_type=livewatch_notification``, ``event_payload={notification_id, step,
incident_id}``) with ``conversations.history`` / ``conversations.replies`` (``include_all_metadata``);
uploads by their deterministic file name among the thread's files.

The chosen safe behaviour when Slack cannot be asked (``cannot_verify``) is to send again: a duplicate is
visible and harmless, a lost alert is not. The sink reports it as a warning, and
:meth:`alerts.sinks.slack.SlackSink.check` names the missing scope beforehand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from alerts.model import ensure_utc

__all__ = [
    "LookupOutcome",
    "StepAction",
    "StepDecision",
    "StepKind",
    "StepReason",
    "StepRecord",
    "StepStatus",
    "decide_step",
    "last_records",
    "plan_steps",
]


class StepKind(StrEnum):
    """One Slack effect of a notification."""

    POST = "post"
    UPLOAD = "upload"
    UPDATE = "update"
    REPLY = "reply"

    @property
    def idempotent(self) -> bool:
        """True when doing it twice has the same effect as once (``chat.update`` with the same content)."""
        return self is StepKind.UPDATE


class StepStatus(StrEnum):
    """What a :class:`StepRecord` says about its step."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepAction(StrEnum):
    """What :func:`decide_step` tells the sink to do."""

    SKIP = "skip"
    RUN = "run"
    LOOKUP = "lookup"
    ADOPT = "adopt"


class StepReason(StrEnum):
    """Why (logged with every step)."""

    ALREADY_DONE = "already_done"
    NOT_STARTED = "not_started"
    FAILED_BEFORE = "failed_before"
    IDEMPOTENT_RETRY = "idempotent_retry"
    UNCONFIRMED = "unconfirmed"
    FOUND_IN_SLACK = "found_in_slack"
    NOT_IN_SLACK = "not_in_slack"
    CANNOT_VERIFY = "cannot_verify"


class LookupOutcome(StrEnum):
    """What looking for a step's effect in Slack found."""

    FOUND = "found"
    ABSENT = "absent"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class StepRecord:
    """One durable record of a step (append-only; the last record per (notification, step) counts).

    Attributes:
        notification_id: The notification the step belongs to.
        step: Which step.
        status: What happened.
        at: When it was recorded (UTC-aware).
        channel: Slack channel *id* the step talks to.
        ts: For ``post``/``reply``: the message ts Slack gave; for ``upload``/``update``/``reply`` in a
            ``started`` record: the thread (top-level message) ts.
        file_id: For ``upload``: the Slack file id.
        detail: Error or warning text (``failed`` / ``skipped``), or the reason.
    """

    notification_id: str
    step: StepKind
    status: StepStatus
    at: datetime
    channel: str | None = None
    ts: str | None = None
    file_id: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        ensure_utc(self.at, what=f"StepRecord({self.notification_id}, {self.step}).at")

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "step": self.step.value,
            "status": self.status.value,
            "at": self.at.isoformat(),
            "channel": self.channel,
            "ts": self.ts,
            "file_id": self.file_id,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=data["notification_id"],
            step=StepKind(data["step"]),
            status=StepStatus(data["status"]),
            at=datetime.fromisoformat(data["at"]),
            channel=data.get("channel"),
            ts=data.get("ts"),
            file_id=data.get("file_id"),
            detail=data.get("detail", ""),
        )


@dataclass(frozen=True)
class StepDecision:
    """What to do with one step, and why."""

    step: StepKind
    action: StepAction
    reason: StepReason


def plan_steps(*, has_thread: bool, has_chart: bool) -> tuple[StepKind, ...]:
    """The steps of a notification: post (+ upload) for the first message, update + reply afterwards."""
    if has_thread:
        return (StepKind.UPDATE, StepKind.REPLY)
    return (StepKind.POST, StepKind.UPLOAD) if has_chart else (StepKind.POST,)


def last_records(records: Iterable[StepRecord]) -> dict[StepKind, StepRecord]:
    """The latest record per step (records are in insertion order)."""
    latest: dict[StepKind, StepRecord] = {}
    for record in records:
        latest[record.step] = record
    return latest


def decide_step(
    step: StepKind,
    last: StepRecord | None,
    *,
    attempted_before: bool,
    lookup: LookupOutcome | None = None,
) -> StepDecision:
    """What to do with ``step``; see the table in the module docstring.

    Args:
        step: The step.
        last: Its latest record, or None.
        attempted_before: The outbox counted an earlier send attempt of this notification.
        lookup: What the lookup in Slack found, once the first decision said ``lookup``.
    """

    def decision(action: StepAction, reason: StepReason) -> StepDecision:
        return StepDecision(step, action, reason)

    status = None if last is None else last.status
    if status in (StepStatus.DONE, StepStatus.SKIPPED):
        return decision(StepAction.SKIP, StepReason.ALREADY_DONE)
    if status is StepStatus.FAILED:
        return decision(StepAction.RUN, StepReason.FAILED_BEFORE)
    if status is None and not attempted_before:
        return decision(StepAction.RUN, StepReason.NOT_STARTED)
    if step.idempotent:
        reason = StepReason.IDEMPOTENT_RETRY if status is StepStatus.STARTED else StepReason.NOT_STARTED
        return decision(StepAction.RUN, reason)
    if lookup is None:
        return decision(StepAction.LOOKUP, StepReason.UNCONFIRMED)
    if lookup is LookupOutcome.FOUND:
        return decision(StepAction.ADOPT, StepReason.FOUND_IN_SLACK)
    if lookup is LookupOutcome.ABSENT:
        return decision(StepAction.RUN, StepReason.NOT_IN_SLACK)
    return decision(StepAction.RUN, StepReason.CANNOT_VERIFY)
