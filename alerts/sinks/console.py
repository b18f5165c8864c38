"""Human-readable sink writing to a text stream (the offline demo and local runs).

``ConsoleSink(stream=sys.stdout)``; ``send(notification) -> DeliveryResult`` (``channel="console"``,
``ts=None``). Plain text: nothing is Slack-escaped, since a terminal does not parse Slack markup; control
characters in data are replaced so a segment name cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import sys
from typing import TextIO

from alerts.model import IncidentState, Notification, bucket_word, kind_word
from alerts.sinks.base import DeliveryResult

__all__ = ["ConsoleSink", "format_notification"]


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _with_unit(value: float, unit: str) -> str:
    return f"{value:,.4g} {unit}" if unit else f"{value:,.4g}"


def format_notification(notification: Notification) -> str:
    """Multi-line plain-text summary of a notification, in the words of the Slack message.

    Same vocabulary as :mod:`alerts.render`: kinds and states in words (``level shift``, not
    ``level_shift``), the reason in words only, every number with its unit, times as bucket starts with the
    bucket size, members below their rule shown as context.
    """
    incident = notification.incident
    head = incident.headline
    resolved = incident.state is IncidentState.RESOLVED
    status = "RESOLVED" if resolved else incident.severity.value.upper()
    why = "" if resolved and notification.reason.value == "resolved" else f" ({notification.reason.describe})"
    sizes = sorted({bucket_word(s.bucket) for s in incident.signals if s.bucket is not None})
    bucket = f"{', '.join(sizes)} buckets, bucket start" if sizes else "bucket start"
    lines = [
        f"[{status}] {', '.join(incident.metrics)} {incident.kind} in {', '.join(incident.regions)}{why} "
        f"-> {notification.channel}",
        f"  incident {incident.id}, {incident.state.word}, started "
        f"{incident.started_at:%Y-%m-%d %H:%M} UTC ({bucket})",
    ]
    for s in sorted(incident.signals, key=lambda s: (not s.firing, -abs(s.score), s.fingerprint)):
        segment = f" [{s.segment}]" if s.segment else ""
        tag = "-" if s.firing else "  (context, below its rule)"
        lines.append(
            f"  {tag} {s.metric} in {s.region}{segment}, {kind_word(s.kind)}: observed "
            f"{_with_unit(s.observed, s.unit)} vs expected {_with_unit(s.expected, s.unit)} "
            f"({s.change_pct:+.1f}%), score {s.score:+.1f}; {_with_unit(s.volume, s.volume_unit)} at stake"
        )
    causes = incident.root_causes[:5]
    if causes:
        lines.append("  causes (share of the deviation; above 100% when other segments moved the other way):")
    for rc in causes:
        split = ""
        if rc.mix is not None or rc.rate is not None:
            split = f" (mix {rc.mix or 0.0:.0%}, rate {rc.rate or 0.0:.0%})"
        lines.append(f"    {rc.segment}: {rc.share:.0%}{split}")
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
