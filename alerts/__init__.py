"""livewatch alerts: incidents, routing, muting, dedup, rendering and delivery (Slack, console)."""

from alerts.engine import (
    AlertRepos,
    Decision,
    EngineConfig,
    ProcessResult,
    acknowledge_incident,
    deliver_pending,
    process,
    resolve_incident,
    snooze_incident,
)
from alerts.incidents import GroupingConfig
from alerts.model import (
    AlertSignal,
    ChartData,
    Incident,
    IncidentState,
    LifecycleEvent,
    Matcher,
    Notification,
    NotifyReason,
    RootCause,
    Severity,
    Silence,
    SlackThread,
)
from alerts.muting import MaintenanceWindow
from alerts.ports import IncidentRepository, Outbox, SilenceRepository
from alerts.routing import Route, validate_tree
from alerts.severity import SeverityPolicy, SeverityRule

__all__ = [
    "AlertRepos",
    "AlertSignal",
    "ChartData",
    "Decision",
    "EngineConfig",
    "GroupingConfig",
    "Incident",
    "IncidentRepository",
    "IncidentState",
    "LifecycleEvent",
    "MaintenanceWindow",
    "Matcher",
    "Notification",
    "NotifyReason",
    "Outbox",
    "ProcessResult",
    "RootCause",
    "Route",
    "Severity",
    "SeverityPolicy",
    "SeverityRule",
    "Silence",
    "SilenceRepository",
    "SlackThread",
    "acknowledge_incident",
    "deliver_pending",
    "process",
    "resolve_incident",
    "snooze_incident",
    "validate_tree",
]
