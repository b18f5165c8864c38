"""Human-readable sink writing to a text stream (the offline demo and local runs).

``ConsoleSink(stream=sys.stdout)``; ``send(notification) -> DeliveryResult`` (``channel="console"``,
``ts=None``). Plain text: nothing is Slack-escaped, since a terminal does not parse Slack markup; control
characters in data are replaced so a segment name cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import sys
from typing import TextIO

from alerts.model import IncidentState, Notification
from alerts.sinks.base import DeliveryResult

__all__ = ["ConsoleSink", "format_notification"]


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def format_notification(notification: Notification) -> str:
    """Multi-line plain-text summary of a notification."""
    incident = notification.incident
    head = incident.headline
    status = "RESOLVED" if incident.state is IncidentState.RESOLVED else incident.severity.value.upper()
    lines = [
        f"[{status}] {', '.join(incident.metrics)} in {', '.join(incident.regions)} "
        f"({notification.reason.value}: {notification.reason.describe}) -> {notification.channel}",
        f"  incident {incident.id}, state {incident.state.value}, started {incident.started_at.isoformat()}",
    ]
    for s in sorted(incident.signals, key=lambda s: (-abs(s.score), s.fingerprint)):
        segment = f" [{s.segment}]" if s.segment else ""
        lines.append(
            f"  - {s.metric} in {s.region}{segment} {s.kind}: observed {s.observed:,.4g} vs expected "
            f"{s.expected:,.4g} ({s.change_pct:+.1f}%), score {s.score:+.1f}, volume {s.volume:,.0f}"
        )
    for rc in incident.root_causes[:5]:
        split = ""
        if rc.mix is not None or rc.rate is not None:
            split = f" (mix {rc.mix or 0.0:.0%}, rate {rc.rate or 0.0:.0%})"
        lines.append(f"  cause: {rc.segment}: {rc.share:.0%} of the deviation{split}")
    if notification.annotation:
        lines.append(f"  note: {notification.annotation}")
    if head.investigate:
        lines.append(f"  investigate: {head.investigate}")
    return "\n".join(_clean(line) for line in lines)


class ConsoleSink:
    """Writes :func:`format_notification` blocks to ``stream``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def send(self, notification: Notification) -> DeliveryResult:
        try:
            self.stream.write(format_notification(notification) + "\n\n")
            self.stream.flush()
        except OSError as exc:
            return DeliveryResult.failure(f"console write failed: {exc}", retryable=True)
        return DeliveryResult.success("console", None)
