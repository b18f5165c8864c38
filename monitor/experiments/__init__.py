"""Experiment guardrails in the product: config models, assignment and outcome sources, evaluation, signals.

* :mod:`monitor.experiments.config`: the ``experiments:`` section of ``config.yaml`` (strict models).
* :mod:`monitor.experiments.source`: assignment and per-unit outcome frames over SQLAlchemy.
* :mod:`monitor.experiments.evaluate`: per-experiment guardrail timelines, SRM, and the alert signals the
  tick hands to :func:`alerts.engine.process` (kinds ``guardrail`` and ``srm``).

Only :mod:`monitor.experiments.config` is imported here (``monitor.config`` imports it).
"""

from monitor.experiments.config import ExperimentConfig, GuardrailConfig, check_references

__all__ = ["ExperimentConfig", "GuardrailConfig", "check_references"]
