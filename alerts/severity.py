"""Severity from the score and the volume at stake: ``severity_of(score, volume, policy) -> Severity``.

A loud score on a handful of events is not an emergency, and a mild shift over a huge volume can be: so a
rule needs both ``|score| >= min_score`` and ``volume >= min_volume``. Rules are tried from the most severe
down; the first that holds wins; nothing matching means ``info``.

``incident_severity(signals, policy)`` is the largest member severity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.model import AlertDataError, AlertSignal, Severity

__all__ = ["DEFAULT_SEVERITY_POLICY", "SeverityPolicy", "SeverityRule", "incident_severity", "severity_of"]


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
class SeverityPolicy:
    """Ordered rules (tried as given; list the most severe first)."""

    rules: tuple[SeverityRule, ...]


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


def incident_severity(
    signals: Iterable[AlertSignal], policy: SeverityPolicy = DEFAULT_SEVERITY_POLICY
) -> Severity:
    """The most severe member; ``info`` for no members."""
    return max(
        (severity_of(s.score, s.volume, policy) for s in signals),
        key=lambda sev: sev.rank,
        default=Severity.INFO,
    )
