"""Delivery sinks: :mod:`.slack` (bot), :mod:`.webhook` (incoming webhook), :mod:`.console`, :mod:`.jsonl`.

Only the contract is imported here; import a sink's module to use it (keeps ``import alerts`` light).
"""

from alerts.sinks.base import AlertSink, DeliveryResult

__all__ = ["AlertSink", "DeliveryResult"]
