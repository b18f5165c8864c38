"""Table-driven tests of the root-cause slicer on tiny literal cubes, plus seeded synthetic recovery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import FrozenInstanceError
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.errors import DetectorError
from detectors.rca_synthetic import make_case
from detectors.slicer import (
    InvalidLeavesError,
    RootCause,
    expected_from_baseline,
    format_elements,
    localize,
    parse_elements,
)

DIMS = ["category", "language"]
CATEGORIES = ["hate", "spam", "bullying"]
LANGUAGES = ["en", "pt", "es"]
# Expected leaf volumes of a 3 x 3 cube (category x language), all comparable in size.
BASE = {
    ("hate", "en"): 100.0,
    ("hate", "pt"): 80.0,
    ("hate", "es"): 60.0,
    ("spam", "en"): 120.0,
    ("spam", "pt"): 90.0,
    ("spam", "es"): 70.0,
    ("bullying", "en"): 110.0,
    ("bullying", "pt"): 85.0,
    ("bullying", "es"): 65.0,
}


def cube(
    factors: Mapping[tuple[str, str], float] | None = None,
    base: Mapping[tuple[str, str], float] = BASE,
) -> pd.DataFrame:
    """Additive leaves: expected = base, actual = base * factor (1 where no factor is given)."""
    factors = factors or {}
    rows = [
        {"category": c, "language": lang, "expected": v, "actual": v * factors.get((c, lang), 1.0)}
        for (c, lang), v in base.items()
    ]
    return pd.DataFrame(rows)


def ratio_cube(
    num_factors: Mapping[str, float], den_factors: Mapping[str, float], rates: Mapping[str, float]
) -> pd.DataFrame:
    """Ratio leaves: den = BASE traffic, num = den * rate of the category; factors apply per category."""
    rows = []
    for (c, lang), traffic in BASE.items():
        num = traffic * rates[c]
        rows.append(
            {
                "category": c,
                "language": lang,
                "expected_num": num,
                "actual_num": num * num_factors.get(c, 1.0) * den_factors.get(c, 1.0),
                "expected_den": traffic,
                "actual_den": traffic * den_factors.get(c, 1.0),
            }
        )
    return pd.DataFrame(rows)


def elements(causes: Sequence[RootCause]) -> list[dict[str, str]]:
    return [dict(c.element) for c in causes]


ALL_CATEGORY = {("hate", lang): 1.5 for lang in LANGUAGES}

LOCALIZE_CASES: list[tuple[str, pd.DataFrame, dict[str, Any], list[dict[str, str]]]] = [
    # A single leaf doubled: the leaf itself is named (its parents mix in normal leaves).
    ("single leaf", cube({("hate", "pt"): 2.0}), {}, [{"category": "hate", "language": "pt"}]),
    # The whole parent moved: name the parent once, not its three children.
    ("whole parent", cube(ALL_CATEGORY), {}, [{"category": "hate"}]),
    # Two simultaneous causes in opposite directions and different layers: both found, larger first.
    (
        "two causes",
        cube({**ALL_CATEGORY, ("spam", "es"): 0.2}),
        {},
        [{"category": "hate"}, {"category": "spam", "language": "es"}],
    ),
    # A leaf of 0.02 % of the volume moved fivefold: pruned by the default minimum support (0.05 %)...
    ("tiny pruned", cube({("hate", "pt"): 5.0}, base={**BASE, ("hate", "pt"): 0.05}), {}, []),
    # ... and found when the support rule is switched off, so the rule (not the scoring) pruned it.
    (
        "tiny kept",
        cube({("hate", "pt"): 5.0}, base={**BASE, ("hate", "pt"): 0.05}),
        {"min_support": 0.0},
        [{"category": "hate", "language": "pt"}],
    ),
    # Nothing moved: nothing to report.
    ("no deviation", cube(), {}, []),
    # top_k caps the number of answers (the larger cause is kept).
    ("top_k", cube({**ALL_CATEGORY, ("spam", "es"): 0.2}), {"top_k": 1}, [{"category": "hate"}]),
]


@pytest.mark.parametrize(
    ("name", "leaves", "kwargs", "expected"), LOCALIZE_CASES, ids=[c[0] for c in LOCALIZE_CASES]
)
def test_localize_table(
    name: str, leaves: pd.DataFrame, kwargs: dict[str, Any], expected: list[dict[str, str]]
) -> None:
    assert elements(localize(leaves, DIMS, **kwargs)) == expected


def test_scores_of_a_single_additive_cause() -> None:
    # The only cause carries the whole deviation, its sums are reported, and its share moved (surprise > 0).
    (cause,) = localize(cube(ALL_CATEGORY), DIMS)
    assert cause.rank == 1
    assert cause.actual == pytest.approx(360.0)
    assert cause.expected == pytest.approx(240.0)
    assert cause.deviation_share == pytest.approx(1.0)
    assert cause.surprise > 0
    assert cause.mix_share is None and cause.rate_share is None
    assert cause.label() == "category=hate" and cause.layer == 1


def test_shares_of_two_causes_add_up_and_rank() -> None:
    # Disjoint causes: shares add to 1 (hate +120, spam&es -56: net +64) and ranks follow |share|.
    causes = localize(cube({**ALL_CATEGORY, ("spam", "es"): 0.2}), DIMS)
    assert [c.rank for c in causes] == [1, 2]
    assert causes[0].deviation_share == pytest.approx(120.0 / 64.0)
    assert causes[1].deviation_share == pytest.approx(-56.0 / 64.0)
    assert sum(c.deviation_share for c in causes) == pytest.approx(1.0)


RATES = {"hate": 0.2, "spam": 0.05, "bullying": 0.05}

RATIO_CASES: list[tuple[str, pd.DataFrame, float, float]] = [
    # The hate rate doubled with flat traffic: all of the region's change is hate's rate, no mix.
    ("rate rose", ratio_cube({"hate": 2.0}, {}, RATES), 1.0, 0.0),
    # Traffic tripled towards hate (always high rate), every rate flat: the region's rate rose with no
    # segment getting worse -> hate is a pure mix effect. Its share is 9/13 of the change: the rest is the
    # mix term of the low-rate segments whose traffic share fell (shift-share sums to 1 over a partition).
    ("traffic shift", ratio_cube({}, {"hate": 3.0}, RATES), 0.0, 9.0 / 13.0),
]


@pytest.mark.parametrize(
    ("name", "leaves", "rate_share", "mix_share"), RATIO_CASES, ids=[c[0] for c in RATIO_CASES]
)
def test_ratio_mix_versus_rate(name: str, leaves: pd.DataFrame, rate_share: float, mix_share: float) -> None:
    (cause,) = localize(leaves, DIMS)
    assert dict(cause.element) == {"category": "hate"}
    assert cause.rate_share == pytest.approx(rate_share, abs=1e-9)
    assert cause.mix_share == pytest.approx(mix_share, abs=1e-9)
    assert cause.deviation_share == pytest.approx(rate_share + mix_share)


def test_ratio_rates_are_reported() -> None:
    # Ratio mode reports the segment's rate (sum num / sum den), observed and expected.
    (cause,) = localize(ratio_cube({"hate": 2.0}, {}, RATES), DIMS)
    assert cause.actual == pytest.approx(0.4)
    assert cause.expected == pytest.approx(0.2)


def test_ratio_mode_can_be_forced_off() -> None:
    # With ratio=False the ratio columns are ignored and the additive columns are required.
    leaves = ratio_cube({"hate": 2.0}, {}, RATES).rename(
        columns={"actual_den": "actual", "expected_den": "expected"}
    )
    assert localize(leaves, DIMS, ratio=False) == []


def _with(frame: pd.DataFrame, column: str, row: int, value: Any) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(object) if isinstance(value, str) else out[column]
    out.loc[row, column] = value
    return out


BAD_INPUTS: list[tuple[str, Any, Any, dict[str, Any], str]] = [
    # Missing value column: named, with the keyword to fix it.
    ("missing column", cube().drop(columns="expected"), DIMS, {}, r"no column 'expected'.*keyword"),
    # Renamed value columns are found through the keywords, a wrong name is named.
    ("wrong keyword", cube(), DIMS, {"actual": "observed"}, r"no column 'observed'"),
    # Negative forecast: named, with the clip fix.
    ("negative", _with(cube(), "expected", 0, -5.0), DIMS, {}, r"'expected'.*negative.*clip"),
    # NaN value: named, with the fill fix.
    ("nan value", _with(cube(), "actual", 3, np.nan), DIMS, {}, r"'actual'.*NaN.*fillna\(0\)"),
    # Missing dimension value: named, with the fill fix.
    ("nan dimension", _with(cube(), "language", 2, None), DIMS, {}, r"'language'.*missing.*fillna"),
    # Unknown dimension column.
    ("unknown dimension", cube(), ["category", "device"], {}, r"no dimension column 'device'"),
    # A string instead of a list of dimensions.
    ("dimensions string", cube(), "category", {}, r"list of column names"),
    # Text in a value column.
    ("non numeric", cube().assign(actual="x"), DIMS, {}, r"'actual'.*to_numeric"),
    # Half a ratio metric.
    (
        "partial ratio",
        cube().drop(columns="actual").assign(actual_num=1.0),
        DIMS,
        {},
        r"ratio metric but lack.*expected_num",
    ),
    # Not a frame at all.
    ("not a frame", [1, 2], DIMS, {}, r"DataFrame"),
    # Bad parameter.
    ("bad top_k", cube(), DIMS, {"top_k": 0}, r"top_k>=1"),
]


@pytest.mark.parametrize(
    ("name", "leaves", "dims", "kwargs", "match"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_raises_named_value_error(
    name: str, leaves: Any, dims: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidLeavesError, match=match) as info:
        localize(leaves, dims, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DetectorError)


def test_empty_and_all_zero_leaves_have_no_cause() -> None:
    # No rows, or only leaves with nothing observed nor expected: nothing to explain.
    assert localize(cube().iloc[0:0], DIMS) == []
    assert localize(cube().assign(actual=0.0, expected=0.0), DIMS) == []


def test_root_cause_is_frozen_and_formats() -> None:
    cause = RootCause(
        element=MappingProxyType({"a": "a1", "b": "b2"}),
        rank=1,
        actual=2.0,
        expected=1.0,
        deviation_share=1.0,
        surprise=0.1,
    )
    with pytest.raises(FrozenInstanceError):
        cause.rank = 2  # type: ignore[misc]
    assert str(cause) == "a=a1&b=b2"
    assert format_elements([cause, {"c": "c3"}]) == "a=a1&b=b2;c=c3"


PARSE_CASES = [
    # Benchmark label with two elements.
    ("a=a1&b=b2;c=c3", [{"a": "a1", "b": "b2"}, {"c": "c3"}]),
    # Empty label: no element; stray separators and spaces are ignored.
    ("", []),
    (" a=a1 ; ", [{"a": "a1"}]),
]


@pytest.mark.parametrize(("label", "expected"), PARSE_CASES)
def test_parse_elements(label: str, expected: list[dict[str, str]]) -> None:
    assert parse_elements(label) == expected
    assert parse_elements(format_elements(expected)) == expected


def test_parse_elements_rejects_bad_condition() -> None:
    with pytest.raises(ValueError, match="dimension=value"):
        parse_elements("a=a1&b")


def test_expected_from_baseline_scales_shares_to_the_forecast() -> None:
    # Baseline shares 1/8, 3/8 and 1/8 for four steady categories (summed over two timestamps) times a
    # forecast total of 400; a leaf new in the current window gets 0 expected, one absent from it 0 observed.
    steady = ["s1", "s2", "s3", "s4"]
    baseline = pd.DataFrame(
        {
            "category": ["hate", "spam", *steady] * 2 + ["gone"],
            "actual": [10.0, 30.0, 10.0, 10.0, 10.0, 10.0] * 2 + [0.0],
        }
    )
    current = pd.DataFrame(
        {"category": ["hate", "spam", *steady, "new"], "actual": [90.0, 50.0, 50.0, 51.0, 49.0, 50.0, 1.0]}
    )
    out = expected_from_baseline(current, baseline, ["category"], expected_totals={"actual": 400.0})
    got = out.set_index("category")
    assert got.loc["hate", "expected"] == pytest.approx(50.0)
    assert got.loc["spam", "expected"] == pytest.approx(150.0)
    assert got.loc["new", "expected"] == 0.0 and got.loc["gone", "actual"] == 0.0
    assert out["expected"].sum() == pytest.approx(400.0)
    # The result feeds localize directly: spam fell and hate rose against the forecast, the rest is steady.
    assert [c.label() for c in localize(out, ["category"])] == ["category=spam", "category=hate"]


def test_expected_from_baseline_ratio_columns_and_errors() -> None:
    # Ratio metrics: one total per observed column, expected columns named after them.
    frame = pd.DataFrame({"category": ["a", "b"], "actual_num": [1.0, 3.0], "actual_den": [10.0, 30.0]})
    out = expected_from_baseline(
        frame, frame, ["category"], expected_totals={"actual_num": 8.0, "actual_den": 80.0}
    )
    assert list(out["expected_num"]) == pytest.approx([2.0, 6.0])
    assert list(out["expected_den"]) == pytest.approx([20.0, 60.0])
    # A baseline summing to zero has no shares: named error with the fix.
    with pytest.raises(InvalidLeavesError, match=r"'actual_num' sums to 0.*longer"):
        expected_from_baseline(
            frame, frame.assign(actual_num=0.0), ["category"], expected_totals={"actual_num": 8.0}
        )
    # A negative forecast total is refused.
    with pytest.raises(InvalidLeavesError, match="forecast >= 0"):
        expected_from_baseline(frame, frame, ["category"], expected_totals={"actual_num": -1.0})


SYNTHETIC_CASES = [
    # Seeded cases with ground truth on a 6x8x5x10 cube (2,400 leaves): one, two and three causes at
    # layers 1-3, additive and ratio, 5 % leaf noise. The exact label must be recovered.
    (11, 1, 1, "additive"),
    (12, 2, 2, "additive"),
    (13, 3, 3, "additive"),
    (14, 2, 1, "ratio"),
    (15, 1, 3, "ratio"),
]


@pytest.mark.parametrize(("seed", "layer", "n_causes", "kind"), SYNTHETIC_CASES)
def test_recovers_seeded_synthetic_causes(seed: int, layer: int, n_causes: int, kind: str) -> None:
    case = make_case(
        seed,
        layer=layer,
        n_causes=n_causes,
        kind=kind,  # type: ignore[arg-type]
        cardinalities=(6, 8, 5, 10),
        noise=0.05,
        min_magnitude=0.3,
        min_share=0.01,
    )
    found = localize(case.leaves, list(case.dimensions))
    assert {frozenset(c.element.items()) for c in found} == {frozenset(c.items()) for c in case.causes}


def test_quiet_on_noise_only_data() -> None:
    # 5 % noise and stray counts but no injected cause: no segment is reported.
    case = make_case(
        21,
        layer=1,
        n_causes=1,
        cardinalities=(6, 8, 5, 10),
        noise=0.05,
        min_magnitude=1e-9,
        max_magnitude=1e-9,
    )
    assert localize(case.leaves, list(case.dimensions)) == []


SUCCINCT_CASES = [
    # Noisy (20 %) whole parent a6&b6: one child (e4) explains more than the parent by chance and comes out
    # first; the rest of the parent moved alike, so the parent is named, not its children.
    (62201, {"noise": 0.2}),
    # Two of five siblings (a8&c7&e1, a8&c7&e5) moved under count noise: the parent a8&c7 must not be named.
    (63301, {"noise": 0.05, "count_noise": True}),
]


@pytest.mark.parametrize(("seed", "kwargs"), SUCCINCT_CASES)
def test_parent_named_only_when_it_moved_as_a_whole(seed: int, kwargs: dict[str, Any]) -> None:
    layer, n_causes = seed // 1000 % 10, seed // 100 % 10
    case = make_case(seed, layer=layer, n_causes=n_causes, cardinalities=(10, 12, 8, 20, 5), **kwargs)
    found = localize(case.leaves, list(case.dimensions))
    assert {frozenset(c.element.items()) for c in found} == {frozenset(c.items()) for c in case.causes}
