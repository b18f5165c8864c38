"""Human-readable sink writing to a text stream (the offline demo and local runs).

``ConsoleSink(stream=sys.stdout, width=None)``; ``send(notification) -> DeliveryResult``
(``channel="console"``, ``ts=None``). With ``width`` (the terminal's columns) long lines wrap at spaces,
continued under their own indent; the suggested ``investigate`` command is never split. Plain text:
nothing is Slack-escaped, since a terminal does not parse Slack markup; control characters in data are
replaced so a segment name cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import sys
import textwrap
from typing import TextIO

from alerts.model import IncidentState, Notification, bucket_word, kind_word
from alerts.sinks.base import DeliveryResult

__all__ = ["ConsoleSink", "format_notification"]


def _clean(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _with_unit(value: float, unit: str) -> str:
    # 4 significant digits, but never an exponent: 95,088 views, not 9.509e+04
    number = f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:,.4g}"
    return f"{number} {unit}" if unit else number


def format_notification(notification: Notification, *, width: int | None = None) -> str:
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
    lines = [_clean(line) for line in lines]
    if width is not None:
        lines = [wrapped for line in lines for wrapped in _wrap(line, width)]
    if head.investigate:  # a command to copy stays whole, on a line of its own when it does not fit
        command = _clean(head.investigate)
        line = f"  investigate: {command}"
        lines += [line] if width is None or len(line) <= width else ["  investigate:", command]
    return "\n".join(lines)


def _wrap(line: str, width: int) -> list[str]:
    indent = " " * (len(line) - len(line.lstrip(" ")))
    return textwrap.wrap(
        line,
        width=max(width, 40),
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
        break_long_words=False,
    ) or [line]


class ConsoleSink:
    """Writes :func:`format_notification` blocks to ``stream``."""

    def __init__(self, stream: TextIO | None = None, *, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.width = width

    def send(self, notification: Notification) -> DeliveryResult:
        try:
            self.stream.write(format_notification(notification, width=self.width) + "\n\n")
            self.stream.flush()
        except OSError as exc:
            return DeliveryResult.failure(f"console write failed: {exc}", retryable=True)
        return DeliveryResult.success("console", None)
