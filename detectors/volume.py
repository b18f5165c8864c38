"""Volume-aware scoring: the sampling noise of a rate comes from its denominator.

A violation rate of 1/40 rising to 3/40 is noise; 1,000/40,000 rising to 3,000/40,000 is an incident. The
model's residual sigma alone cannot tell them apart, so the sampling sigma of each point is computed from
its expected value and its ``volume`` and combined with the model sigma in quadrature::

    sigma_total = sqrt(sigma_model**2 + sigma_sampling**2)

Sampling sigma by metric kind (:data:`MetricKind`):

* ``"ratio"``: a proportion in [0, 1] over ``volume`` trials (binomial): ``sqrt(p (1 - p) / n)`` with
  ``p`` clipped to ``[0.5 / n, 1 - 0.5 / n]`` so a zero expected rate still has a finite sigma;
* ``"rate"``: events per ``per`` units of ``volume`` (e.g. reports per 1k viewers, Poisson):
  ``sqrt(max(r, per / n) * per / n)``;
* ``"count"``: a Poisson count: the total sigma is at least ``sqrt(max(expected, 1))``
  (``sigma_total = max(sigma_model, sqrt(expected) * inflation)``; the model residuals already hold the
  Poisson noise). A member that predicts from the median of ``m`` past values (the robust baseline) carries
  that median's Poisson noise as well: ``inflation = sqrt(1 + pi / (2 m))`` (1 for Prophet);
* ``"value"``: a gauge (latency, ...): no sampling term.

A NaN or zero volume for ``ratio`` / ``rate`` gives a NaN sampling sigma, which is treated as "unknown"
(model sigma only). The functions are pure and vectorised over numpy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "METRIC_KINDS",
    "MetricKind",
    "combine_sigma",
    "rescore",
    "sampling_sigma",
]

MetricKind = Literal["value", "ratio", "rate", "count"]
METRIC_KINDS: tuple[str, ...] = ("value", "ratio", "rate", "count")


def sampling_sigma(
    expected: np.ndarray, volume: np.ndarray, kind: MetricKind, *, per: float = 1000.0
) -> np.ndarray:
    """One-sigma sampling noise of each point (NaN where unknown); see the module docstring."""
    expected = np.asarray(expected, dtype=float)
    volume = np.asarray(volume, dtype=float)
    if kind == "value":
        return np.zeros_like(expected)
    if kind == "count":
        return np.sqrt(np.maximum(expected, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.where(volume > 0, volume, np.nan)
        if kind == "ratio":
            p = np.clip(expected, 0.5 / n, 1.0 - 0.5 / n)
            return np.sqrt(p * (1.0 - p) / n)
        if kind == "rate":
            return np.sqrt(np.maximum(expected, per / n) * per / n)
    raise ValueError(f"metric kind must be one of {METRIC_KINDS}, got {kind!r}")


def combine_sigma(
    sigma_model: np.ndarray,
    sigma_sampling: np.ndarray,
    kind: MetricKind,
    *,
    inflation: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Total sigma: quadrature for ``ratio`` / ``rate``, Poisson floor for ``count``, model for ``value``.

    A NaN sampling sigma (unknown volume) leaves the model sigma unchanged. ``inflation`` scales the
    Poisson floor of a ``count`` for the noise of the expected value itself (see the module docstring).
    """
    sigma_model = np.asarray(sigma_model, dtype=float)
    sampling = np.nan_to_num(np.asarray(sigma_sampling, dtype=float), nan=0.0)
    if kind == "count":
        return np.maximum(sigma_model, sampling * np.asarray(inflation, dtype=float))
    return np.sqrt(sigma_model**2 + sampling**2)


def rescore(
    scored: pd.DataFrame,
    *,
    kind: MetricKind,
    z: float,
    per: float = 1000.0,
    inflation: np.ndarray | float = 1.0,
) -> pd.DataFrame:
    """Recompute ``sigma``, ``lower``, ``upper`` and ``score`` of a frame with the volume-aware sigma.

    Args:
        scored: ``_score`` output with ``observed``, ``expected``, ``sigma`` and ``volume`` columns.
        kind: Metric kind (see :data:`MetricKind`).
        z: Half-width of the band in sigmas.
        per: Unit of ``rate`` metrics (events per ``per`` of volume).
        inflation: Per point, how much the expected value's own noise widens a count's Poisson floor.
    """
    out = scored.copy()
    expected = out["expected"].to_numpy(dtype=float)
    sigma = combine_sigma(
        out["sigma"].to_numpy(dtype=float),
        sampling_sigma(expected, out["volume"].to_numpy(dtype=float), kind, per=per),
        kind,
        inflation=inflation,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["score"] = (out["observed"].to_numpy(dtype=float) - expected) / sigma
    out["sigma"] = sigma
    out["lower"] = expected - z * sigma
    out["upper"] = expected + z * sigma
    return out
