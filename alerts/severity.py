"""Severity from the score and the volume at stake: ``severity_of(score, volume, policy) -> Severity``.

A loud score on a handful of events is not an emergency, and a mild shift over a huge volume can be: so a
rule needs both ``|score| >= min_score`` and ``volume >= min_volume``. Rules are tried from the most severe
down; the first that holds wins; nothing matching means ``info``.

A **level shift** is judged on the size of the shift, not on the per-bucket score (which fades as the
model follows the new level: a lasting +40 % shift can score +1.8): ``signal_severity`` uses
``policy.level_shift`` rules on ``|change_pct|`` (relative effect against the pre-shift level since the
shift began) with the same volume floors.

``incident_severity(signals, policy)`` is the largest member severity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.model import AlertDataError, AlertSignal, Severity

__all__ = [
    "DEFAULT_SEVERITY_POLICY",
    "SeverityPolicy",
    "SeverityRule",
    "ShiftRule",
    "incident_severity",
    "severity_of",
    "shift_severity",
    "signal_severity",
]


@dataclass(frozen=True)
class SeverityRule:
    """``severity`` applies when ``|score| >= min_score`` and ``volume >= min_volume``."""

    severity: Severity
    min_score: float
    min_volume: float = 0.0

    def __post_init__(self) -> None:
        if not (self.min_score >= 0 and self.min_volume >= 0):
            raise AlertDataError(
                f"severity rule for {self.severity}: min_score ({self.min_score}) and min_volume "
                f"({self.min_volume}) must be >= 0"
            )


@dataclass(frozen=True)
class ShiftRule:
    """``severity`` applies to a level shift when ``|change_pct| >= min_change_pct`` and enough volume."""

    severity: Severity
    min_change_pct: float
    min_volume: float = 0.0

    def __post_init__(self) -> None:
        if not (self.min_change_pct >= 0 and self.min_volume >= 0):
            raise AlertDataError(
                f"level-shift severity rule for {self.severity}: min_change_pct ({self.min_change_pct}) and "
                f"min_volume ({self.min_volume}) must be >= 0"
            )


#: Level shifts: a lasting change of a tenth is a warning, of a half critical (given enough volume). The
#: CUSUM has already established that the shift is real, so only its size and its volume decide; a tenth
#: more violations or reports that does not go away is worth a person's look.
DEFAULT_SHIFT_RULES: tuple[ShiftRule, ...] = (
    ShiftRule(Severity.CRITICAL, min_change_pct=50.0, min_volume=1_000.0),
    ShiftRule(Severity.WARNING, min_change_pct=10.0, min_volume=100.0),
)


@dataclass(frozen=True)
class SeverityPolicy:
    """Ordered rules (tried as given; list the most severe first); ``level_shift`` for level shifts."""

    rules: tuple[SeverityRule, ...]
    level_shift: tuple[ShiftRule, ...] = DEFAULT_SHIFT_RULES


DEFAULT_SEVERITY_POLICY = SeverityPolicy(
    rules=(
        SeverityRule(Severity.CRITICAL, min_score=8.0, min_volume=1_000.0),
        SeverityRule(Severity.CRITICAL, min_score=5.0, min_volume=20_000.0),
        SeverityRule(Severity.WARNING, min_score=4.0, min_volume=100.0),
        SeverityRule(Severity.WARNING, min_score=3.0, min_volume=5_000.0),
    )
)


def severity_of(score: float, volume: float, policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY) -> Severity:
    """Severity of one signal; a NaN score or volume never escalates (it yields ``info``)."""
    if math.isnan(score) or math.isnan(volume):
        return Severity.INFO
    for rule in policy.rules:
        if abs(score) >= rule.min_score and volume >= rule.min_volume:
            return rule.severity
    return Severity.INFO


def shift_severity(
    change_pct: float, volume: float, policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY
) -> Severity:
    """Severity of a level shift from its relative size; NaN never escalates."""
    if math.isnan(change_pct) or math.isnan(volume):
        return Severity.INFO
    for rule in policy.level_shift:
        if abs(change_pct) >= rule.min_change_pct and volume >= rule.min_volume:
            return rule.severity
    return Severity.INFO


def signal_severity(signal: AlertSignal, policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY) -> Severity:
    """One member's severity: by size for level shifts, by score and volume otherwise (the louder wins)."""
    by_score = severity_of(signal.score, signal.volume, policy)
    if signal.kind != "level_shift":
        return by_score
    return max(by_score, shift_severity(signal.change_pct, signal.volume, policy), key=lambda s: s.rank)


def incident_severity(
    signals: Iterable[AlertSignal], policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY
) -> Severity:
    """The most severe member; ``info`` for no members."""
    return max(
        (signal_severity(s, policy) for s in signals),
        key=lambda sev: sev.rank,
        default=Severity.INFO,
    )
