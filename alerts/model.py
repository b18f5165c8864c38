"""Plain data shared by every alerting stage: signals, incidents, notifications, silences.

Nothing here imports :mod:`detectors` or :mod:`monitor`; the pipeline converts its anomalies into
:class:`AlertSignal` values of plain ``str`` / ``float`` / ``datetime`` fields.

Identity versus annotations (Alertmanager's split): an :class:`AlertSignal` is identified by its *labels*
(``metric``, ``region``, ``kind`` and an optional ``segment``); every number (observed, expected, change,
score, volume...) is an *annotation* and never part of identity, so the same anomaly seen again with new
numbers updates the same incident member instead of creating a new one.

Every value object round-trips through ``to_dict()`` / ``from_dict()`` (strict-JSON-safe: datetimes as
ISO-8601 strings, NaN / infinities as the strings ``"nan"`` / ``"inf"`` / ``"-inf"``) so a store can persist
it as one JSON column next to a few indexed key columns.

All timestamps are UTC-aware :class:`datetime.datetime` values (``pandas.Timestamp`` is accepted, being a
subclass); naive ones are rejected with :class:`AlertDataError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Self

__all__ = [
    "ANOMALY_KINDS",
    "EXPERIMENT_KINDS",
    "KIND_WORDS",
    "STATE_WORDS",
    "AlertDataError",
    "AlertSignal",
    "ChartData",
    "DeliveryStatus",
    "FalsePositive",
    "Incident",
    "IncidentState",
    "LifecycleEvent",
    "LifecycleKind",
    "Matcher",
    "Notification",
    "NotifiedSnapshot",
    "NotifyReason",
    "OutboxEntry",
    "RootCause",
    "Severity",
    "Silence",
    "SlackThread",
    "bucket_word",
    "ensure_utc",
    "kind_word",
    "matches_all",
]

AnomalyKindName = Literal["spike", "dip", "level_shift"]
#: Kinds of experiment signals: a guardrail breach and a sample ratio mismatch. Their incidents group only
#: by region (the ``experiment/<name>/<arm>`` label), never with regional anomalies of the same metric.
EXPERIMENT_KINDS: tuple[str, ...] = ("guardrail", "srm")
ANOMALY_KINDS: tuple[str, ...] = ("spike", "dip", "level_shift", *EXPERIMENT_KINDS)


class AlertDataError(ValueError):
    """A value handed to :mod:`alerts` breaks a data rule (naive timestamp, unknown kind, bad lengths...)."""


def ensure_utc(value: datetime, *, what: str) -> datetime:
    """Return ``value`` if it is timezone-aware with a zero UTC offset, else raise :class:`AlertDataError`."""
    if not isinstance(value, datetime):
        raise AlertDataError(f"{what} must be a datetime, got {type(value).__name__}")
    offset = value.utcoffset()
    if offset is None:
        raise AlertDataError(f"{what}={value!r} is naive; pass a UTC-aware datetime (tzinfo=timezone.utc)")
    if offset != timedelta(0):
        raise AlertDataError(
            f"{what}={value.isoformat()} is not UTC; convert it with .astimezone(timezone.utc)"
        )
    return value


def _num(value: float) -> float | str:
    """JSON-safe float: non-finite values become ``"nan"`` / ``"inf"`` / ``"-inf"`` (``float()`` reads them
    back), since strict JSON (and PostgreSQL's json type) has no NaN or Infinity."""
    return value if math.isfinite(value) else str(value)


def _opt(value: float | None) -> float | str | None:
    return None if value is None else _num(value)


def _opt_in(value: float | str | None) -> float | None:
    return None if value is None else float(value)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


#: The one vocabulary of anomaly kinds, used by Slack, the console and the CLI.
KIND_WORDS: dict[str, str] = {"spike": "spike", "dip": "dip", "level_shift": "level shift"}


def kind_word(kind: str) -> str:
    """How people read an anomaly kind (``level_shift`` -> ``level shift``)."""
    return KIND_WORDS.get(kind, kind.replace("_", " "))


def bucket_word(bucket: timedelta | None) -> str:
    """A bucket size as people write it (``1h``, ``15m``, ``1d``); "" when unknown."""
    if bucket is None:
        return ""
    seconds = int(bucket.total_seconds())
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Severity(StrEnum):
    """How loud an incident is; ordered by :attr:`rank`."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


class IncidentState(StrEnum):
    """Lifecycle state of an :class:`Incident`; every state but ``resolved`` is *active*."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"

    @property
    def word(self) -> str:
        """How people read the state (see :data:`STATE_WORDS`)."""
        return STATE_WORDS[self.value]


#: The one vocabulary of incident states, used by Slack, the console and the CLI.
STATE_WORDS: dict[str, str] = {
    "open": "open",
    "acknowledged": "acknowledged",
    "snoozed": "snoozed",
    "resolved": "resolved",
}


class NotifyReason(StrEnum):
    """Why a notification was (or was not) sent; every message states it."""

    FIRST = "first"
    GREW = "grew"
    NEW_METRIC_JOINED = "new_metric_joined"
    SPREAD = "spread"
    NEW_ROOT_CAUSE = "new_root_cause"
    RESOLVED = "resolved"
    REPEAT_ELAPSED = "repeat_elapsed"
    NOTHING_NEW = "nothing_new"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    ACTION = "action"
    CATCH_UP_SUMMARY = "catch_up_summary"
    CATCHING_UP = "catching_up"

    @property
    def notify(self) -> bool:
        """True for reasons that send a message."""
        return self not in (
            NotifyReason.NOTHING_NEW,
            NotifyReason.ACKNOWLEDGED,
            NotifyReason.SNOOZED,
            NotifyReason.CATCHING_UP,
        )

    @property
    def describe(self) -> str:
        """Short human sentence used in messages."""
        return {
            "first": "new incident",
            "grew": "incident grew",
            "new_metric_joined": "another metric joined",
            "spread": "spread to another region",
            "new_root_cause": "new root cause",
            "resolved": "resolved",
            "repeat_elapsed": "still firing (reminder)",
            "nothing_new": "nothing new",
            "acknowledged": "acknowledged; repeats suppressed",
            "snoozed": "snoozed",
            "action": "updated from Slack",
            "catch_up_summary": "happened while livewatch was catching up",
            "catching_up": "catching up; the final state is sent at the live edge",
        }[self.value]


class LifecycleKind(StrEnum):
    """Kinds of :class:`LifecycleEvent` recorded by :class:`alerts.ports.IncidentRepository`."""

    OPENED = "opened"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    NOTIFIED = "notified"
    SUPPRESSED = "suppressed"
    FALSE_POSITIVE = "false_positive"


class DeliveryStatus(StrEnum):
    """State of one outbox entry."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Matcher:
    """``label == value`` (or ``re.fullmatch(value, label)`` when ``regex``); ``negate`` flips it."""

    name: str
    value: str
    regex: bool = False
    negate: bool = False

    def __post_init__(self) -> None:
        if self.regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise AlertDataError(
                    f"matcher {self.name}=~{self.value!r} is not a valid regex: {exc}"
                ) from exc

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.regex else actual == self.value
        return hit != self.negate

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "regex": self.regex, "negate": self.negate}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        regex, negate = bool(data.get("regex", False)), bool(data.get("negate", False))
        return cls(data["name"], data["value"], regex, negate)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class RootCause:
    """One segment behind an anomaly, as plain data.

    Attributes:
        segment: Human text such as ``"category=gambling, language=pt"``.
        share: Fraction (0..1) of the metric's deviation this segment explains.
        mix: For ratio metrics, the fraction of the metric's deviation due to the segment's traffic share
            changing (``mix + rate == share``).
        rate: For ratio metrics, the fraction due to the segment's own rate changing.
    """

    segment: str
    share: float
    mix: float | None = None
    rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "share": _num(self.share),
            "mix": _opt(self.mix),
            "rate": _opt(self.rate),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(data["segment"], float(data["share"]), _opt_in(data.get("mix")), _opt_in(data.get("rate")))


@dataclass(frozen=True)
class ChartData:
    """Series for the incident chart; all tuples have the same length."""

    timestamps: tuple[datetime, ...]
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    anomalous: tuple[bool, ...]

    def __post_init__(self) -> None:
        n = len(self.timestamps)
        for name in ("observed", "expected", "lower", "upper", "anomalous"):
            if len(getattr(self, name)) != n:
                raise AlertDataError(
                    f"ChartData.{name} has {len(getattr(self, name))} values but timestamps has {n}; "
                    "pass equally long series"
                )
        for i, ts in enumerate(self.timestamps):
            ensure_utc(ts, what=f"ChartData.timestamps[{i}]")

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamps": [t.isoformat() for t in self.timestamps],
            "observed": [_num(x) for x in self.observed],
            "expected": [_num(x) for x in self.expected],
            "lower": [_num(x) for x in self.lower],
            "upper": [_num(x) for x in self.upper],
            "anomalous": list(self.anomalous),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            tuple(datetime.fromisoformat(t) for t in data["timestamps"]),
            tuple(float(x) for x in data["observed"]),
            tuple(float(x) for x in data["expected"]),
            tuple(float(x) for x in data["lower"]),
            tuple(float(x) for x in data["upper"]),
            tuple(bool(x) for x in data["anomalous"]),
        )


@dataclass(frozen=True)
class AlertSignal:
    """What the pipeline hands to :mod:`alerts` for one anomaly.

    Identity (labels): ``metric``, ``region``, ``kind`` and optional ``segment`` (set only for per-segment
    signals, e.g. ``"category=gambling"``). Everything else is an annotation.

    Attributes:
        observed: Observed value over the anomalous window.
        expected: Forecast value over the same window.
        change_pct: Relative change in percent, ``100 * (observed - expected) / expected``.
        score: Signed calibrated score (sigmas).
        volume: Units at stake (e.g. reports or sessions in the window), used for severity.
        start: First anomalous bucket (UTC-aware).
        end: Last anomalous bucket (UTC-aware, inclusive).
        root_causes: Top segments, most important first.
        chart: Optional chart series.
        investigate: Exact ``livewatch investigate METRIC --region R --at T`` command.
        unit: Unit of ``observed`` / ``expected`` (e.g. ``"per 1k views"``, ``"reports"``); "" when unitless.
        volume_unit: Unit of ``volume`` (the count of a count metric, the denominator of a ratio, e.g.
            ``"views"``). Volumes of different units are never added.
        bucket: Bucket size (``start`` / ``end`` are bucket *starts*); None when unknown.
        threshold: ``|score|`` the member's rule needs to fire; None when the producer did not say (then
            the member counts as firing).
    """

    metric: str
    region: str
    kind: str
    observed: float
    expected: float
    change_pct: float
    score: float
    volume: float
    start: datetime
    end: datetime
    segment: str | None = None
    root_causes: tuple[RootCause, ...] = ()
    chart: ChartData | None = None
    investigate: str = ""
    unit: str = ""
    volume_unit: str = ""
    bucket: timedelta | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if not self.metric or not self.region:
            raise AlertDataError(
                f"AlertSignal needs a metric and a region, got {self.metric!r}/{self.region!r}"
            )
        if self.kind not in ANOMALY_KINDS:
            raise AlertDataError(
                f"AlertSignal {self.metric}/{self.region}: kind {self.kind!r} is not one of {ANOMALY_KINDS}"
            )
        ensure_utc(self.start, what=f"AlertSignal({self.metric}/{self.region}).start")
        ensure_utc(self.end, what=f"AlertSignal({self.metric}/{self.region}).end")
        if self.end < self.start:
            raise AlertDataError(f"AlertSignal {self.metric}/{self.region}: end {self.end} is before start")

    @property
    def labels(self) -> dict[str, str]:
        """Identity labels (no numbers)."""
        labels = {"metric": self.metric, "region": self.region, "kind": self.kind}
        if self.segment is not None:
            labels["segment"] = self.segment
        return labels

    @property
    def fingerprint(self) -> str:
        """Stable identity string built from the labels only."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    @property
    def firing(self) -> bool:
        """The member's last score crossed its rule (``|score| >= threshold``); True without a threshold."""
        return self.threshold is None or (math.isfinite(self.score) and abs(self.score) >= self.threshold)

    @property
    def is_ratio(self) -> bool:
        """True when root causes carry a mix/rate split (ratio metrics)."""
        return any(rc.mix is not None or rc.rate is not None for rc in self.root_causes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "region": self.region,
            "kind": self.kind,
            "segment": self.segment,
            "observed": _num(self.observed),
            "expected": _num(self.expected),
            "change_pct": _num(self.change_pct),
            "score": _num(self.score),
            "volume": _num(self.volume),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "root_causes": [rc.to_dict() for rc in self.root_causes],
            "chart": None if self.chart is None else self.chart.to_dict(),
            "investigate": self.investigate,
            "unit": self.unit,
            "volume_unit": self.volume_unit,
            "bucket_seconds": None if self.bucket is None else int(self.bucket.total_seconds()),
            "threshold": _opt(self.threshold),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        bucket = data.get("bucket_seconds")
        return cls(
            metric=data["metric"],
            region=data["region"],
            kind=data["kind"],
            segment=data.get("segment"),
            observed=float(data["observed"]),
            expected=float(data["expected"]),
            change_pct=float(data["change_pct"]),
            score=float(data["score"]),
            volume=float(data["volume"]),
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            root_causes=tuple(RootCause.from_dict(rc) for rc in data.get("root_causes", [])),
            chart=None if data.get("chart") is None else ChartData.from_dict(data["chart"]),
            investigate=data.get("investigate", ""),
            unit=data.get("unit", ""),
            volume_unit=data.get("volume_unit", ""),
            bucket=None if bucket is None else timedelta(seconds=int(bucket)),
            threshold=_opt_in(data.get("threshold")),
        )


@dataclass(frozen=True)
class NotifiedSnapshot:
    """What the last notification of an incident showed; ``alerts.dedup.should_notify`` diffs against it."""

    receiver: str
    at: datetime
    reason: NotifyReason
    severity: Severity
    metrics: frozenset[str]
    regions: frozenset[str]
    root_causes: frozenset[str]
    magnitude: float
    resolved: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "at": self.at.isoformat(),
            "reason": self.reason.value,
            "severity": self.severity.value,
            "metrics": sorted(self.metrics),
            "regions": sorted(self.regions),
            "root_causes": sorted(self.root_causes),
            "magnitude": _num(self.magnitude),
            "resolved": self.resolved,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            receiver=data["receiver"],
            at=datetime.fromisoformat(data["at"]),
            reason=NotifyReason(data["reason"]),
            severity=Severity(data["severity"]),
            metrics=frozenset(data["metrics"]),
            regions=frozenset(data["regions"]),
            root_causes=frozenset(data["root_causes"]),
            magnitude=float(data["magnitude"]),
            resolved=bool(data.get("resolved", False)),
        )


@dataclass(frozen=True)
class Incident:
    """One problem as people see it: one or more member signals grouped together.

    ``signals`` holds the latest signal per fingerprint (metric-level members only; per-segment noise is
    absorbed, see :mod:`alerts.incidents`). Derived views (metrics, regions, root causes, headline) are
    properties so they can never disagree with the members.

    Attributes:
        id: Stable id, ``"<metric>/<region>/<opened_at:%Y%m%dT%H%MZ>"`` of the first member.
        group_key: ``"<metric>/<region>"`` of the first member (what the incident was opened for).
        clean_buckets: Consecutive evaluations without any member signal (drives auto-resolution).
        notified: Snapshot of the last notification enqueued per receiver (one entry per receiver).
        false_positive: People marked it "not an incident" (from Slack); it counts as a false positive in
            statistics and its buckets are excluded from refits (see :class:`FalsePositive`).
        false_positive_by: Who marked it (Slack user id or name).
        false_positive_at: When it was marked.
    """

    id: str
    group_key: str
    state: IncidentState
    severity: Severity
    opened_at: datetime
    updated_at: datetime
    signals: tuple[AlertSignal, ...]
    last_signal_at: datetime
    clean_buckets: int = 0
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    snoozed_by: str | None = None
    snoozed_until: datetime | None = None
    notified: tuple[NotifiedSnapshot, ...] = ()
    absorbed: int = 0
    false_positive: bool = False
    false_positive_by: str | None = None
    false_positive_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state is not IncidentState.RESOLVED

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(sorted({s.metric for s in self.signals}))

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({s.region for s in self.signals}))

    @property
    def started_at(self) -> datetime:
        return min(s.start for s in self.signals)

    @property
    def headline(self) -> AlertSignal:
        """The member with the largest ``|score|`` (ties: larger volume, then fingerprint)."""
        return max(self.signals, key=lambda s: (abs(s.score), s.volume, s.fingerprint))

    @property
    def magnitude(self) -> float:
        """Largest ``|change_pct|`` among members."""
        return max(abs(s.change_pct) for s in self.signals)

    @property
    def firing(self) -> tuple[AlertSignal, ...]:
        """Members whose last score crossed their rule (the others are context)."""
        return tuple(s for s in self.signals if s.firing)

    @property
    def kind(self) -> str:
        """The incident's kind in words, stable across updates: the latest kind of the series it was opened
        for (a spike that turns out to be a level shift says so; it never becomes a vague "anomaly")."""
        opening = [s for s in self.signals if f"{s.metric}/{s.region}" == self.group_key] or list(
            self.signals
        )
        latest = max(opening, key=lambda s: (s.end, s.kind == "level_shift", s.fingerprint))
        return kind_word(latest.kind)

    @property
    def largest(self) -> AlertSignal:
        """The member with the largest volume at stake (ties: fingerprint): the incident's scale.

        Volumes of different members are in different units (reports, views...) and are never summed.
        """
        return max(self.signals, key=lambda s: (s.volume if math.isfinite(s.volume) else -1.0, s.fingerprint))

    @property
    def root_causes(self) -> tuple[RootCause, ...]:
        """One summary: segments across members, deduplicated by text (largest share kept), biggest first."""
        best: dict[str, RootCause] = {}
        for sig in self.signals:
            for rc in sig.root_causes:
                if rc.segment not in best or abs(rc.share) > abs(best[rc.segment].share):
                    best[rc.segment] = rc
        return tuple(sorted(best.values(), key=lambda rc: (-abs(rc.share), rc.segment)))

    def top_segments(self, k: int = 3) -> frozenset[str]:
        """Texts of the ``k`` largest root causes (what "new root cause" is judged on)."""
        return frozenset(rc.segment for rc in self.root_causes[:k])

    def notified_for(self, receiver: str) -> NotifiedSnapshot | None:
        """The last snapshot enqueued for ``receiver``, or ``None`` if it was never notified."""
        return next((n for n in self.notified if n.receiver == receiver), None)

    def with_notified(self, snapshot: NotifiedSnapshot) -> Incident:
        """A copy whose snapshot for ``snapshot.receiver`` is replaced."""
        others = tuple(n for n in self.notified if n.receiver != snapshot.receiver)
        return replace(self, notified=(*others, snapshot))

    def with_changes(self, **changes: Any) -> Incident:
        """A copy with ``changes`` applied (incidents are immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group_key": self.group_key,
            "state": self.state.value,
            "severity": self.severity.value,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "signals": [s.to_dict() for s in self.signals],
            "last_signal_at": self.last_signal_at.isoformat(),
            "clean_buckets": self.clean_buckets,
            "resolved_at": _iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "snoozed_by": self.snoozed_by,
            "snoozed_until": _iso(self.snoozed_until),
            "notified": [n.to_dict() for n in self.notified],
            "absorbed": self.absorbed,
            "false_positive": self.false_positive,
            "false_positive_by": self.false_positive_by,
            "false_positive_at": _iso(self.false_positive_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            id=data["id"],
            group_key=data["group_key"],
            state=IncidentState(data["state"]),
            severity=Severity(data["severity"]),
            opened_at=datetime.fromisoformat(data["opened_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            signals=tuple(AlertSignal.from_dict(s) for s in data["signals"]),
            last_signal_at=datetime.fromisoformat(data["last_signal_at"]),
            clean_buckets=int(data.get("clean_buckets", 0)),
            resolved_at=_dt(data.get("resolved_at")),
            resolved_by=data.get("resolved_by"),
            acknowledged_by=data.get("acknowledged_by"),
            acknowledged_at=_dt(data.get("acknowledged_at")),
            snoozed_by=data.get("snoozed_by"),
            snoozed_until=_dt(data.get("snoozed_until")),
            notified=tuple(NotifiedSnapshot.from_dict(n) for n in data.get("notified", [])),
            absorbed=int(data.get("absorbed", 0)),
            false_positive=bool(data.get("false_positive", False)),
            false_positive_by=data.get("false_positive_by"),
            false_positive_at=_dt(data.get("false_positive_at")),
        )


@dataclass(frozen=True)
class LifecycleEvent:
    """Audit record: what happened to an incident, when, by whom (``"livewatch"`` for automatic steps)."""

    incident_id: str
    kind: LifecycleKind
    at: datetime
    actor: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "kind": self.kind.value,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            data["incident_id"],
            LifecycleKind(data["kind"]),
            datetime.fromisoformat(data["at"]),
            data["actor"],
            data.get("detail", ""),
        )


@dataclass(frozen=True)
class SlackThread:
    """Where an incident's living message is: the idempotency key of all later notifications."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Notification:
    """One message to deliver, recorded in the outbox before it is sent.

    Attributes:
        id: Unique and deterministic: ``"<incident_id>#<receiver>#<created_at ISO>#<reason>"``.
        receiver: Name of the sink (routing receiver) that delivers it.
        channel: Slack channel (or other destination) chosen by routing.
        reason: Why it is sent.
        incident: Snapshot of the incident at enqueue time (rendered at send time).
        annotation: Extra context, e.g. an active maintenance window that only annotates.
        attempts: Send attempts started so far (set by the outbox, see ``Outbox.mark_sending``).
        thread: Where the incident's message already is, filled by delivery from ``Outbox.thread_for``.
        note: Text of the thread note for people's actions (``reason=action``) or the timeline of a
            catch-up summary (``reason=catch_up_summary``); None otherwise.
    """

    id: str
    incident_id: str
    receiver: str
    channel: str
    reason: NotifyReason
    created_at: datetime
    incident: Incident
    annotation: str | None = None
    attempts: int = 0
    thread: SlackThread | None = field(default=None, compare=False)
    note: str | None = None

    @property
    def is_resolution(self) -> bool:
        return self.reason is NotifyReason.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (without ``attempts`` and ``thread``, which the outbox owns)."""
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "receiver": self.receiver,
            "channel": self.channel,
            "reason": self.reason.value,
            "created_at": self.created_at.isoformat(),
            "incident": self.incident.to_dict(),
            "annotation": self.annotation,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, attempts: int = 0) -> Self:
        return cls(
            id=data["id"],
            incident_id=data["incident_id"],
            receiver=data["receiver"],
            channel=data["channel"],
            reason=NotifyReason(data["reason"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            incident=Incident.from_dict(data["incident"]),
            annotation=data.get("annotation"),
            attempts=attempts,
            note=data.get("note"),
        )


@dataclass(frozen=True)
class OutboxEntry:
    """A notification with its delivery state, as listed by ``Outbox.entries``."""

    notification: Notification
    status: DeliveryStatus
    attempts: int
    error: str | None = None
    retryable: bool | None = None
    channel: str | None = None
    ts: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class Silence:
    """A person's mute: signals whose labels match all ``matchers`` are not notified until ``expires_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.created_at, what=f"Silence({self.id}).created_at")
        ensure_utc(self.expires_at, what=f"Silence({self.id}).expires_at")
        if not self.matchers:
            raise AlertDataError(f"Silence {self.id} has no matchers; it would mute everything. Add one.")
        if not self.created_by:
            raise AlertDataError(f"Silence {self.id} needs created_by (who silenced it)")

    def active_at(self, now: datetime) -> bool:
        return self.created_at <= now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_dict() for m in self.matchers],
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            id=data["id"],
            matchers=tuple(Matcher.from_dict(m) for m in data["matchers"]),
            reason=data["reason"],
            created_by=data["created_by"],
            created_at=datetime.fromisoformat(data["created_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
        )


@dataclass(frozen=True)
class FalsePositive:
    """Buckets people marked "not an incident": the refit leaves out ``[start, end)`` of the metric/region.

    One record per incident member (metric, region), written when an incident is marked a false positive.

    Attributes:
        incident_id: The incident that was marked.
        metric: Metric name of the member.
        region: Region of the member.
        start: First anomalous bucket start (UTC-aware, inclusive).
        end: End of the last anomalous bucket seen (UTC-aware, exclusive); the incident's resolution time
            or last signal time when later.
        marked_by: Who marked it.
        marked_at: When.
    """

    incident_id: str
    metric: str
    region: str
    start: datetime
    end: datetime
    marked_by: str
    marked_at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.start, what=f"FalsePositive({self.incident_id}).start")
        ensure_utc(self.end, what=f"FalsePositive({self.incident_id}).end")
        ensure_utc(self.marked_at, what=f"FalsePositive({self.incident_id}).marked_at")

    @property
    def key(self) -> tuple[str, str, str]:
        """Upsert key: (incident_id, metric, region)."""
        return (self.incident_id, self.metric, self.region)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "metric": self.metric,
            "region": self.region,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "marked_by": self.marked_by,
            "marked_at": self.marked_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            incident_id=data["incident_id"],
            metric=data["metric"],
            region=data["region"],
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            marked_by=data["marked_by"],
            marked_at=datetime.fromisoformat(data["marked_at"]),
        )
