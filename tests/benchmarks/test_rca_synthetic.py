"""Tests of the seeded root-cause benchmark generator: reproducible, labelled, following the ripple effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.rca_synthetic import make_case, make_rs_case

SMALL = (6, 8, 5, 10)  # 2,400 leaves: fast, still four dimensions of realistic shape


def _inside(leaves: pd.DataFrame, element: dict[str, str]) -> np.ndarray:
    mask = np.ones(len(leaves), dtype=bool)
    for dim, value in element.items():
        mask &= (leaves[dim] == value).to_numpy()
    return mask


def test_same_seed_same_case_and_other_seed_differs() -> None:
    # Reproducible from the seed alone; a different seed gives different data.
    first = make_case(3, layer=2, n_causes=2, cardinalities=SMALL)
    again = make_case(3, layer=2, n_causes=2, cardinalities=SMALL)
    other = make_case(4, layer=2, n_causes=2, cardinalities=SMALL)
    pd.testing.assert_frame_equal(first.leaves, again.leaves)
    assert first.label == again.label
    assert not first.leaves["expected"].equals(other.leaves["expected"])


CUBE_CASES = [
    # Additive: dimension columns a..d, then actual and expected, one row per leaf of the full cube.
    ("additive", ["a", "b", "c", "d", "actual", "expected"]),
    # Ratio: numerator and denominator, observed and expected.
    ("ratio", ["a", "b", "c", "d", "actual_num", "expected_num", "actual_den", "expected_den"]),
]


@pytest.mark.parametrize(("kind", "columns"), CUBE_CASES)
def test_cube_shape_columns_and_heavy_tail(kind: str, columns: list[str]) -> None:
    case = make_case(5, layer=1, n_causes=1, kind=kind, cardinalities=SMALL)  # type: ignore[arg-type]
    leaves = case.leaves
    assert list(leaves.columns) == columns
    assert len(leaves) == int(np.prod(SMALL)) and not leaves.duplicated(list(case.dimensions)).any()
    volume = leaves["expected" if kind == "additive" else "expected_den"].to_numpy()
    assert (volume == 0).mean() == pytest.approx(0.3, abs=0.05)  # many empty leaves
    positive = volume[volume > 0]
    assert np.quantile(positive, 0.99) > 20 * np.median(positive)  # heavy tail
    assert (leaves[columns[len(case.dimensions) :]] >= 0).all().all()


LABEL_CASES = [
    # (layer, number of causes): every cell of the benchmark grid yields that many elements of that layer.
    (1, 1),
    (1, 3),
    (2, 2),
    (3, 1),
    (3, 3),
]


@pytest.mark.parametrize(("layer", "n_causes"), LABEL_CASES)
def test_labels_match_layer_and_count_and_are_not_nested(layer: int, n_causes: int) -> None:
    case = make_case(10 + layer, layer=layer, n_causes=n_causes, cardinalities=SMALL)
    assert len(case.causes) == n_causes
    assert all(len(c) == layer for c in case.causes)
    assert len(case.label.split(";")) == n_causes
    for i, a in enumerate(case.causes):
        for b in case.causes[i + 1 :]:
            assert a != b and not (a.items() <= b.items() or b.items() <= a.items())


def test_ripple_effect_without_noise() -> None:
    # With no noise, every leaf of a cause moves by one common factor and every other leaf is exact.
    case = make_case(7, layer=2, n_causes=1, cardinalities=SMALL, noise=0.0, stray_fraction=0.0)
    leaves = case.leaves
    inside = _inside(leaves, dict(case.causes[0]))
    live = leaves["expected"].to_numpy() > 0
    ratios = (leaves["actual"] / leaves["expected"]).to_numpy()[inside & live]
    assert np.allclose(ratios, ratios[0]) and abs(ratios[0] - 1.0) >= 0.1 - 1e-12
    assert np.allclose(leaves["actual"].to_numpy()[~inside], leaves["expected"].to_numpy()[~inside])


def test_ratio_traffic_cause_keeps_rates_flat() -> None:
    # A "traffic" cause scales numerator and denominator alike: the rate of its leaves does not move.
    for seed in range(40):
        case = make_case(
            seed, layer=1, n_causes=1, kind="ratio", cardinalities=SMALL, noise=0.0, stray_fraction=0.0
        )
        if case.effects == ("traffic",):
            break
    else:
        pytest.fail("no traffic cause in 40 seeds")
    leaves = case.leaves[_inside(case.leaves, dict(case.causes[0])) & (case.leaves["expected_den"] > 0)]
    rate_actual = leaves["actual_num"] / leaves["actual_den"]
    assert np.allclose(rate_actual, leaves["expected_num"] / leaves["expected_den"])
    assert not np.allclose(leaves["actual_den"], leaves["expected_den"])


def test_count_noise_gives_integers() -> None:
    # Count noise observes integer event counts.
    case = make_case(8, layer=1, n_causes=1, cardinalities=SMALL, count_noise=True)
    actual = case.leaves["actual"].to_numpy()
    assert np.array_equal(actual, np.round(actual))


BAD_PARAMETERS = [
    # Layer deeper than the number of dimensions.
    {"layer": 5, "n_causes": 1},
    # No cause.
    {"layer": 1, "n_causes": 0},
    # Unknown kind.
    {"layer": 1, "n_causes": 1, "kind": "median"},
    # Support rule no element can meet.
    {"layer": 1, "n_causes": 1, "min_share": 0.95},
]


@pytest.mark.parametrize("kwargs", BAD_PARAMETERS)
def test_bad_parameters_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_case(1, cardinalities=SMALL, **kwargs)  # type: ignore[arg-type]


def test_rs_case_is_a_seeded_ratio_cube_with_four_minute_mean_forecasts() -> None:
    # RS-like: reproducible, ratio columns, counts observed, forecasts the mean of 4 integer minutes.
    case = make_rs_case(3, n_causes=2)
    again = make_rs_case(3, n_causes=2)
    pd.testing.assert_frame_equal(case.leaves, again.leaves)
    leaves = case.leaves
    assert list(leaves.columns[len(case.dimensions) :]) == [
        "actual_num",
        "expected_num",
        "actual_den",
        "expected_den",
    ]
    assert 3 <= len(case.dimensions) <= 5 and case.kind == "ratio" and len(case.causes) == 2
    for column in ("actual_num", "actual_den"):
        assert np.array_equal(leaves[column], np.round(leaves[column]))
    for column in ("expected_num", "expected_den"):
        assert np.array_equal(leaves[column] * 4, np.round(leaves[column] * 4))
    assert (leaves["actual_num"] <= leaves["actual_den"]).all()


def test_rs_case_cause_raises_the_rate_and_noise_only_has_no_label() -> None:
    # A cause multiplies its leaves' failure rate (at least 1.5x); n_causes=0 gives an empty label.
    case = make_rs_case(4, n_causes=1, layer=1)
    inside = _inside(case.leaves, dict(case.causes[0]))
    part = case.leaves[inside]
    rate_actual = part["actual_num"].sum() / part["actual_den"].sum()
    rate_expected = part["expected_num"].sum() / part["expected_den"].sum()
    assert rate_actual > 1.3 * rate_expected
    assert make_rs_case(5, n_causes=0).label == ""
