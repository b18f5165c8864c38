"""Delivery that loses nothing: send what the outbox holds, record what happened.

``deliver_pending(outbox, sinks, now, *, limit=None) -> DeliveryReport``

Notifications were recorded in the :class:`~alerts.ports.Outbox` *before* any send (by
:func:`alerts.engine.process`). For each pending one, in enqueue order:

1. if an earlier notification of the same (incident, receiver) failed retryably in this run, skip it
   (``deferred``): order within an incident's thread is kept, so a Slack outage of any length delays but
   never loses or reorders;
2. look up the incident's thread (``Outbox.thread_for``, the idempotency key), call
   ``Outbox.mark_sending`` (attempts += 1), then ``sink.send`` with the thread and the count of earlier
   attempts;
3. success: ``Outbox.mark_delivered`` with the channel and Slack ``ts`` (the first one becomes the thread,
   so every later notification edits that message); failure: ``Outbox.mark_failed`` with the error and
   the retryable flag (permanent failures are not retried and say why).

A crash between a send and its record leaves the notification pending with ``attempts > 0``; the next run
sends it again, and the sink makes that safe: the Slack sink splits a notification into recorded steps
(post, upload, update, reply; :mod:`alerts.steps` through :class:`alerts.ports.StepLog`), skips the ones
recorded done and looks up in Slack the ones that were started but not recorded, so nothing is posted
twice and nothing is lost. A sink raising (a bug) is caught here, logged, and treated as a retryable
failure of that incident only, so one broken sink or incident never stops the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from alerts.model import ensure_utc
from alerts.ports import Outbox
from alerts.sinks.base import AlertSink, DeliveryResult

__all__ = ["DeliveryAttempt", "DeliveryReport", "deliver_pending"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeliveryAttempt:
    """What happened to one pending notification in this run (``result`` None: deferred, not tried)."""

    notification_id: str
    incident_id: str
    receiver: str
    result: DeliveryResult | None


@dataclass(frozen=True)
class DeliveryReport:
    """All attempts of one :func:`deliver_pending` run, in order."""

    attempts: tuple[DeliveryAttempt, ...]

    @property
    def delivered(self) -> int:
        return sum(1 for a in self.attempts if a.result is not None and a.result.ok)

    @property
    def failed_permanently(self) -> int:
        return sum(
            1 for a in self.attempts if a.result is not None and not a.result.ok and not a.result.retryable
        )

    @property
    def retrying(self) -> int:
        """Failed retryably, or deferred behind such a failure: still pending."""
        return sum(1 for a in self.attempts if a.result is None or (not a.result.ok and a.result.retryable))


def deliver_pending(
    outbox: Outbox, sinks: Mapping[str, AlertSink], now: datetime, *, limit: int | None = None
) -> DeliveryReport:
    """Send pending notifications in order; see the module docstring.

    Args:
        outbox: Where notifications wait.
        sinks: Sink per receiver name (the routing ``receiver``).
        now: Recorded as the attempt / delivery time (UTC-aware).
        limit: Send at most this many (deferred ones do not count).

    Returns:
        One :class:`DeliveryAttempt` per pending notification looked at.
    """
    ensure_utc(now, what="deliver_pending(now)")
    blocked: set[tuple[str, str]] = set()
    attempts: list[DeliveryAttempt] = []
    sent = 0
    for pending in outbox.pending():
        key = (pending.incident_id, pending.receiver)
        if key in blocked:
            attempts.append(DeliveryAttempt(pending.id, pending.incident_id, pending.receiver, None))
            continue
        if limit is not None and sent >= limit:
            break
        sent += 1
        bound = log.bind(
            notification_id=pending.id, incident_id=pending.incident_id, receiver=pending.receiver
        )
        sink = sinks.get(pending.receiver)
        if sink is None:
            result = DeliveryResult.failure(
                f"no sink is configured for receiver {pending.receiver!r} (known: {sorted(sinks)}); "
                "add it to the receivers config",
                retryable=False,
            )
        else:
            thread = outbox.thread_for(pending.incident_id, pending.receiver)
            outbox.mark_sending(pending.id, now)
            try:
                result = sink.send(replace(pending, thread=thread))
            except Exception as exc:  # one broken sink must not stop the others
                bound.exception("alert_sink_crashed")
                result = DeliveryResult.failure(f"sink {pending.receiver!r} crashed: {exc!r}", retryable=True)
        if result.ok:
            outbox.mark_delivered(pending.id, result.channel or "", result.ts, now)
            bound.info("alert_delivered", channel=result.channel, ts=result.ts, reason=pending.reason.value)
            for warning in result.warnings:
                bound.warning("alert_delivery_warning", warning=warning)
        else:
            outbox.mark_failed(pending.id, result.error or "unknown error", result.retryable, now)
            if result.retryable:
                blocked.add(key)
                bound.warning("alert_delivery_deferred", error=result.error)
            else:
                bound.error("alert_delivery_failed", error=result.error)
        attempts.append(DeliveryAttempt(pending.id, pending.incident_id, pending.receiver, result))
    return DeliveryReport(tuple(attempts))
