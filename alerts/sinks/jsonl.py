"""JSON-lines sink: one line per notification, with the exact Slack payload that would be sent.

``JsonlSink(path)``; ``send(notification) -> DeliveryResult`` (``channel="jsonl:<path>"``, ``ts=None``).
Each line is ``{"notification": Notification.to_dict(), "message": {"text", "blocks"}, "reply": str}``,
so the offline demo output can be inspected, diffed or replayed.
"""

from __future__ import annotations

import json
from pathlib import Path

from alerts.model import Notification
from alerts.render import render_message, render_reply
from alerts.sinks.base import DeliveryResult

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends one JSON object per notification to ``path`` (created with its parent directories)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, notification: Notification) -> DeliveryResult:
        record = {
            "notification": notification.to_dict(),
            "message": render_message(notification).to_dict(),
            "reply": render_reply(notification),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        except OSError as exc:
            return DeliveryResult.failure(f"cannot append to {self.path}: {exc}", retryable=True)
        return DeliveryResult.success(f"jsonl:{self.path}", None)
