"""Run kinds: what the CUSUM alone found is a level shift; a loud run keeps the kind of its shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.pipeline.signals import run_kind

INDEX = pd.date_range("2026-03-02", periods=6, freq="1h", tz="UTC", name="ts")
NAT = pd.NaT


def run(observed: list[float], flagged_by: str) -> pd.DataFrame:
    """Six buckets against an expectation of 100; ``flagged_by`` per bucket: t(hreshold), c(usum), b(oth)."""
    shift_start = [INDEX[0] if f in "cb" else NAT for f in flagged_by]
    return pd.DataFrame(
        {
            "observed": observed,
            "expected": np.full(len(observed), 100.0),
            "flag": [True] * len(observed),
            "shift_start": pd.array(shift_start, dtype=pd.DatetimeTZDtype("us", "UTC")),
        },
        index=INDEX[: len(observed)],
    )


@pytest.mark.parametrize(
    ("observed", "flagged_by", "kind", "why"),
    [
        ([112, 111, 113, 112, 112, 111], "cccccc", "level_shift", "a drift only the CUSUM saw"),
        ([112, 111, 113], "ccc", "level_shift", "short, but found by the CUSUM alone"),
        ([190, 260, 140, 230, 150], "ttbbb", "spike", "a loud raid of uneven size the CUSUM also confirms"),
        ([40, 70, 30], "tbb", "dip", "a loud drop of uneven size"),
        ([150, 151, 149, 150, 150, 151], "ttbbbb", "level_shift", "loud, and of level-shift shape"),
        ([190, 260, 140], "ttt", "spike", "no CUSUM at all"),
    ],
)
def test_run_kind(observed: list[float], flagged_by: str, kind: str, why: str) -> None:
    found, start = run_kind(run([float(v) for v in observed], flagged_by))
    assert found == kind, why
    assert start == INDEX[0]  # the CUSUM's onset estimate (or the run's first bucket)
