"""Post-rules turning a score frame into anomalies (threshold, merge). Deepened by the detectors issue."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["scores_to_anomalies"]


def scores_to_anomalies(scores: pd.DataFrame, *, threshold: float, detector: str = "") -> list:
    """Points with ``|score| >= threshold`` merged into runs of one sign (spike above, dip below)."""
    from detectors.base import Anomaly

    flagged = scores["score"].abs().to_numpy() >= threshold
    signs = np.sign(scores["score"].to_numpy())
    anomalies: list[Anomaly] = []
    start = None
    for i in range(len(scores) + 1):
        run_continues = i < len(scores) and flagged[i] and (start is None or signs[i] == signs[start])
        if run_continues and start is not None:
            continue
        if start is not None:
            run = scores.iloc[start:i]
            peak = run["score"].abs().idxmax()
            anomalies.append(
                Anomaly(
                    start=run.index[0], end=run.index[-1], kind="spike" if signs[start] > 0 else "dip",
                    observed=float(run.at[peak, "observed"]), expected=float(run.at[peak, "expected"]),
                    score=float(run.at[peak, "score"]), detector=detector,
                )
            )
            start = None
        if i < len(scores) and flagged[i]:
            start = i
    return anomalies
