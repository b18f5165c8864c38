"""Compiled stacks score as the stack they come from; batch post-rules decide as the per-series ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors.postrules import PostRules, evaluate, evaluate_batch
from detectors.stack import DetectorStack, score_compiled
from detectors.synthetic import make_series


@pytest.mark.parametrize("kind", ["value", "ratio", "rate", "count"])
def test_compiled_scores_match_detector_stack_score(kind: str) -> None:
    # Each kind exercises another volume rule; a stack without Prophet takes the robust member as is.
    start = pd.Timestamp("2026-01-05", tz="UTC")
    history = make_series(9 * 24, seed=1, start=start, volume=500.0)
    window = make_series(11 * 24, seed=2, start=start, volume=500.0).iloc[-48:]
    window.iloc[5, 0] = np.nan  # a missing bucket scores NaN
    stack = DetectorStack(kind=kind, interval_width=0.99).fit(history, series_id=kind)  # type: ignore[arg-type]
    expected = stack.score(window)
    for compiled in (stack.compile(), DetectorStack.compile_state(json.loads(stack.to_json()))):
        got = score_compiled(
            [compiled],
            pd.DatetimeIndex(window.index),
            window["value"].to_numpy()[None, :],
            window["volume"].to_numpy()[None, :],
        )
        for column in ("observed", "expected", "lower", "upper", "score"):
            np.testing.assert_allclose(getattr(got, column)[0], expected[column], rtol=1e-12, err_msg=kind)
        assert compiled.trained == (history.index[0], history.index[-1])  # the span the holiday rule uses


@pytest.mark.parametrize(
    "rules",
    [
        PostRules(threshold=2.0),  # threshold only, both directions
        PostRules(threshold=2.0, direction="up", min_abs_effect=0.5),  # direction and absolute floor
        PostRules(threshold=1.5, k=2, n=3, min_volume=10.0, min_rel_effect=0.01),  # k-of-n runs per series
    ],
)
def test_evaluate_batch_equals_evaluate_per_series(rules: PostRules) -> None:
    rng = np.random.default_rng(0)
    index = pd.date_range("2026-01-05", periods=24, freq="h", tz="UTC")
    observed = rng.normal(10, 3, (5, 24))
    observed[1, 4] = np.nan
    expected = np.full((5, 24), 10.0)
    score = (observed - expected) / 1.5
    volume = rng.uniform(0, 20, (5, 24))
    flag, reason = evaluate_batch(observed, expected, score, volume, rules, index)
    for row in range(5):
        frame = pd.DataFrame(
            {
                "observed": observed[row],
                "expected": expected[row],
                "score": score[row],
                "volume": volume[row],
            },
            index=index,
        )
        one = evaluate(frame, rules)
        assert flag[row].tolist() == one["flag"].tolist()
        assert reason[row].tolist() == one["reason"].tolist()
    assert flag.any()  # the cases do flag something
