"""Table-driven tests of the NAB scorer on tiny corpora with known answers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "nab_scoring.py"
_SPEC = importlib.util.spec_from_file_location("nab_scoring_under_test", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
ns = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = ns
_SPEC.loader.exec_module(ns)

STANDARD = ns.CostProfile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FN = ns.CostProfile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)

N = 200  # probation = 30 rows
WINDOW = (100, 119)  # width 20


def _stamps(n: int = N) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="5min")


def _score(fire_at: list[int], profile=STANDARD, windows=(WINDOW,), n: int = N) -> float:
    """Raw file score of a detector firing (score 1) exactly at ``fire_at``, threshold 0.5."""
    scores = np.zeros(n)
    scores[fire_at] = 1.0
    sweep = ns.sweep_file(n, list(windows), profile)
    total, _, _ = ns.file_score(scores, sweep, 0.5, profile.fn_weight)
    return total


def test_scaled_sigmoid_reference_values() -> None:
    # sigma(-1) is NAB's maxTP, sigma(0) = 0, and anything beyond y = 3 is a flat -1.
    assert ns.scaled_sigmoid(-1.0) == pytest.approx(0.98661429815)
    assert ns.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert ns.scaled_sigmoid(3.5) == -1.0


@pytest.mark.parametrize(
    ("n_rows", "expected"),
    [
        (4032, 604),  # 15% rounded down
        (22695, 750),  # capped at 0.15 * 5000
        (10, 1),
    ],
)
def test_probationary_length(n_rows: int, expected: int) -> None:
    assert ns.probationary_length(n_rows) == expected


@pytest.mark.parametrize(
    ("fire_at", "expected", "why"),
    [
        ([100], 1.0, "first row of the window earns the full A_TP"),
        ([], -1.0, "a missed window costs -A_FN"),
        ([50], -1.0 - 0.11, "an FP before any window costs -A_FP, plus the missed window"),
        ([100, 110, 119], 1.0, "only the earliest detection in a window counts"),
        ([10, 100], 1.0, "detections in the probationary period are ignored"),
    ],
)
def test_file_score_table(fire_at: list[int], expected: float, why: str) -> None:
    assert _score(fire_at) == pytest.approx(expected), why


def test_earlier_detection_in_window_scores_more() -> None:
    # Reward decreases monotonically from the window start to (almost) zero at its end.
    start, middle, end = _score([100]), _score([110]), _score([119])
    assert start > middle > end > 0.0
    assert end < 0.15  # y = -1/20 -> 0.126


def test_fp_after_window_grows_with_distance() -> None:
    # Right after a window an FP is nearly free; far away (y > 3) it costs the full -A_FP.
    near = _score([100, 120]) - 1.0
    far = _score([100, 199]) - 1.0
    assert -0.11 < near < 0.0
    assert far < near
    long = _score([100, 190], windows=((100, 109),)) - 1.0  # y = 81 / 9 > 3
    assert long == pytest.approx(-0.11)


def test_perfect_and_null_normalise_to_100_and_0() -> None:
    stamps = _stamps()
    windows = {
        "a.csv": [(stamps[100], stamps[119])],
        "b.csv": [(stamps[40], stamps[59]), (stamps[150], stamps[169])],
    }
    perfect = {name: np.zeros(N) for name in windows}
    perfect["a.csv"][100] = 1.0
    perfect["b.csv"][[40, 150]] = 1.0
    null = {name: np.full(N, 0.5) for name in windows}  # constant output: the best threshold never fires
    profiles = {"standard": STANDARD, "reward_low_FN_rate": LOW_FN}
    for outputs, expected in ((perfect, 100.0), (null, 0.0)):
        result = ns.score_corpus({k: (stamps, v) for k, v in outputs.items()}, windows, profiles)
        for profile in profiles:
            assert result.profiles[profile].normalised == pytest.approx(expected)


def test_threshold_is_shared_across_files_and_skips_pure_fp_levels() -> None:
    # File a: a weak true detection (0.6) at the window start; file b (no window) has FPs at 0.4 and 0.7.
    # Thresholds: 0.7 -> FP only (-0.11 - 1); 0.6 -> TP + FP (1 - 0.11); 0.4 -> adds an FP (1 - 0.22).
    a, b = np.zeros(N), np.zeros(N)
    a[100] = 0.6
    b[[60, 70]] = [0.7, 0.4]
    sweeps = [ns.sweep_file(N, [WINDOW], STANDARD), ns.sweep_file(N, [], STANDARD)]
    threshold, total = ns.optimise_threshold([a, b], sweeps, STANDARD.fn_weight)
    assert threshold == pytest.approx(0.6)
    assert total == pytest.approx(1.0 - 0.11)


def test_ties_are_detected_together() -> None:
    # Two rows with equal score cannot be separated by a threshold: the FP comes with the TP.
    a = np.zeros(N)
    a[[50, 100]] = 0.8
    sweep = ns.sweep_file(N, [WINDOW], STANDARD)
    _, total = ns.optimise_threshold([a], [sweep], STANDARD.fn_weight)
    assert total == pytest.approx(1.0 - 0.11)


def test_window_not_on_file_timestamps_is_rejected() -> None:
    stamps = _stamps()
    with pytest.raises(ns.NabScoringError, match=r"b\.csv"):
        ns.window_indices(stamps, [(pd.Timestamp("1999-01-01"), stamps[5])], name="b.csv")


def test_scores_outside_unit_interval_are_rejected() -> None:
    stamps = _stamps()
    with pytest.raises(ns.NabScoringError, match="within"):
        ns.score_corpus({"a.csv": (stamps, np.full(N, 1.5))}, {}, {"standard": STANDARD})


def test_scores_are_read_at_the_precision_of_nab_result_files() -> None:
    # NAB scores 12-significant-digit result files: 1 - 2e-13 and 1.0 are one threshold level there, so a
    # detection at 1 - 2e-13 cannot be kept while an FP at 1.0 is dropped.
    stamps = _stamps()
    scores = np.zeros(N)
    scores[100] = 1.0 - 2e-13  # the TP
    scores[50] = 1.0  # an FP before the window
    windows = {"a.csv": [(stamps[100], stamps[119])]}
    profiles = {"standard": STANDARD}
    exact = ns.score_corpus({"a.csv": (stamps, scores)}, windows, profiles, digits=None)
    written = ns.score_corpus({"a.csv": (stamps, scores)}, windows, profiles)
    assert exact.profiles["standard"].raw == pytest.approx(1.0 - 0.11)  # threshold 1 - 2e-13: TP and the FP
    assert written.profiles["standard"].threshold == 1.0
    assert ns.as_written(np.array([0.9999999999997738]))[0] == 1.0
