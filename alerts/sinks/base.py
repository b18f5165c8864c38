"""The sink contract: deliver one :class:`~alerts.model.Notification`, say what happened.

``AlertSink.send(notification) -> DeliveryResult``. A sink never raises for a delivery failure: it returns
``DeliveryResult.failure(error, retryable=...)`` so the outbox can decide to retry (retryable: the outage
will pass, e.g. 429 or 5xx or a timeout) or give up (permanent: bad token, unknown channel). Programming
errors still raise.

``notification.thread`` (filled by :func:`alerts.outbox.deliver_pending`) says where the incident's message
already is; a sink that can edit messages edits it instead of posting a new one. ``notification.attempts``
counts earlier send attempts: when it is > 0 and no thread is known, an earlier attempt may have posted
before the process died, and a sink able to look that up should (see :mod:`alerts.sinks.slack`, which
records each step of a delivery through :class:`alerts.ports.StepLog` and recovers step by step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alerts.model import Notification

__all__ = ["AlertSink", "DeliveryResult"]


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one send.

    Attributes:
        ok: True when the message is out.
        channel: Where it went (Slack channel id for Slack), when ``ok``.
        ts: Message id of the incident's top-level message (Slack ``ts``), or None for sinks without ids.
        error: What went wrong, naming the channel and the fix, when not ``ok``.
        retryable: Whether sending again later may succeed (only meaningful when not ``ok``).
        warnings: Non-fatal problems (e.g. the chart upload failed but the message is out).
    """

    ok: bool
    channel: str | None = None
    ts: str | None = None
    error: str | None = None
    retryable: bool = False
    warnings: tuple[str, ...] = ()

    @classmethod
    def success(cls, channel: str, ts: str | None, warnings: tuple[str, ...] = ()) -> DeliveryResult:
        return cls(ok=True, channel=channel, ts=ts, warnings=warnings)

    @classmethod
    def failure(cls, error: str, *, retryable: bool) -> DeliveryResult:
        return cls(ok=False, error=error, retryable=retryable)


@runtime_checkable
class AlertSink(Protocol):
    """Anything that can deliver a notification."""

    def send(self, notification: Notification) -> DeliveryResult: ...
