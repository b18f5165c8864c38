"""Prophet detector: fit once with Prophet, score often in numpy.

``fit`` runs Prophet (MAP, no sampling) on the history with seasonalities chosen by the granularity
(sub-daily: daily + weekly; daily: weekly, plus yearly with two years of history) and the country's
holidays (``add_country_holidays``, computed offline by the ``holidays`` package). Naive UTC timestamps are
used only at Prophet's boundary.

``score`` never calls :meth:`prophet.Prophet.predict`. The fitted parameters are extracted once into a
:class:`ProphetParams` and the expectation is evaluated in numpy with Prophet's own formulas
(``prophet/forecaster.py``):

* trend: ``piecewise_linear(t, deltas, k, m, changepoints_t) * y_scale + floor`` with
  ``t = (ds - start) / t_scale``;
* seasonalities: ``fourier_series`` features ``sin/cos(2 pi (i + 1) t_days / period)`` with ``t_days`` the
  days since the Unix epoch, times the fitted ``beta``;
* holidays: a 0/1 column per training holiday name (by UTC calendar date) times its ``beta``. A holiday
  whose training rows cover less than half a day (typically the last training day, with a few hours of it)
  is dropped: Prophet would stretch an effect estimated from those hours' noise over the whole holiday;
* ``yhat = trend * (1 + multiplicative_terms) + additive_terms``, additive terms scaled by ``y_scale``.

:func:`prophet_expected_batch` evaluates many stored fits at the same timestamps at once (trend,
Fourier features and holiday indicators are shared; the per-series work is one matrix product), for the
"10,000 series per tick" case.

The band comes from the in-sample residuals rather than Prophet's posterior sampling, so scoring is
deterministic and fast: ``sigma = 1.4826 * MAD(residuals)`` (per hour of day for sub-daily data when
``sigma_by_hour``, never below half the global sigma); ``interval_width`` maps to the band's
``z = Phi^-1((1 + interval_width) / 2)``, which is also the default ``detect`` threshold.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import holidays as holidays_lib
import numpy as np
import pandas as pd

from detectors.base import SCORE_COLUMNS, SIGMA_COLUMN, Detector, interval_z, register
from detectors.errors import DetectorError, InsufficientDataError, InvalidSeriesError
from detectors.validation import infer_step

if TYPE_CHECKING:
    from prophet import Prophet

__all__ = [
    "ProphetDetector",
    "ProphetParams",
    "Seasonality",
    "holiday_names_by_date",
    "learned_holidays_only",
    "params_from_prophet",
    "prophet_expected_batch",
    "quiet_prophet_logs",
]

_MAD_TO_SIGMA = 1.4826
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_BATCH_CHUNK = 2048


def quiet_prophet_logs() -> None:
    """Silence the chatty third-party loggers (cmdstanpy progress, prophet info and plotly warnings).

    The one place livewatch turns them down; called before every Prophet import or fit.
    """
    stan = logging.getLogger("cmdstanpy")
    if not any(isinstance(handler, logging.NullHandler) for handler in stan.handlers):
        # cmdstanpy installs its own INFO stream handler unless the logger already has one.
        stan.addHandler(logging.NullHandler())
    stan.setLevel(logging.WARNING)
    logging.getLogger("prophet").setLevel(logging.WARNING)
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "Importing plotly failed"


@contextlib.contextmanager
def _quiet_prophet_warnings() -> Iterator[None]:
    """Hide pandas deprecation warnings raised inside prophet's own code (not actionable here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(inplace|convert_dates).*", module=r"prophet\..*")
        yield


def _prophet_class() -> type[Prophet]:
    """Import Prophet lazily (it is slow to import) with its loggers quieted before and after."""
    quiet_prophet_logs()
    from prophet import Prophet

    quiet_prophet_logs()  # prophet.forecaster resets its logger level at import
    return Prophet


@dataclass(frozen=True)
class Seasonality:
    """One fitted Fourier seasonality: ``period`` in days, ``order`` harmonics, ``beta`` (2 * order,)."""

    name: str
    period: float
    order: int
    mode: Literal["additive", "multiplicative"]
    beta: np.ndarray


@dataclass(frozen=True)
class ProphetParams:
    """Everything needed to evaluate a fitted Prophet model's ``yhat`` in numpy.

    Attributes:
        start: ``model.start`` as Unix seconds (UTC).
        t_scale: ``model.t_scale`` in seconds.
        y_scale: ``model.y_scale``.
        floor: ``0`` for ``absmax`` scaling, ``y_min`` for ``minmax``.
        growth: ``"linear"`` or ``"flat"``.
        k: Initial slope.
        m: Initial offset.
        deltas: Slope changes at the changepoints.
        changepoints_t: Changepoints in scaled time.
        seasonalities: Fitted Fourier seasonalities, in Prophet's column order.
        country: Country of the built-in holidays, or ``None``.
        holiday_mode: ``"additive"`` or ``"multiplicative"``.
        holiday_betas: Coefficient of each training holiday name.
    """

    start: float
    t_scale: float
    y_scale: float
    floor: float
    growth: str
    k: float
    m: float
    deltas: np.ndarray
    changepoints_t: np.ndarray
    seasonalities: tuple[Seasonality, ...]
    country: str | None
    holiday_mode: Literal["additive", "multiplicative"]
    holiday_betas: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (livewatch's own layout, versioned with :class:`ProphetDetector`)."""
        return {
            "start": self.start,
            "t_scale": self.t_scale,
            "y_scale": self.y_scale,
            "floor": self.floor,
            "growth": self.growth,
            "k": self.k,
            "m": self.m,
            "deltas": [float(v) for v in self.deltas],
            "changepoints_t": [float(v) for v in self.changepoints_t],
            "seasonalities": [
                {
                    "name": s.name,
                    "period": s.period,
                    "order": s.order,
                    "mode": s.mode,
                    "beta": [float(v) for v in s.beta],
                }
                for s in self.seasonalities
            ],
            "country": self.country,
            "holiday_mode": self.holiday_mode,
            "holiday_betas": dict(self.holiday_betas),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProphetParams:
        """The inverse of :meth:`to_dict`."""
        return cls(
            start=float(data["start"]),
            t_scale=float(data["t_scale"]),
            y_scale=float(data["y_scale"]),
            floor=float(data["floor"]),
            growth=str(data["growth"]),
            k=float(data["k"]),
            m=float(data["m"]),
            deltas=np.asarray(data["deltas"], dtype=float),
            changepoints_t=np.asarray(data["changepoints_t"], dtype=float),
            seasonalities=tuple(
                Seasonality(
                    name=s["name"],
                    period=float(s["period"]),
                    order=int(s["order"]),
                    mode=s["mode"],
                    beta=np.asarray(s["beta"], dtype=float),
                )
                for s in data["seasonalities"]
            ),
            country=data["country"],
            holiday_mode=data["holiday_mode"],
            holiday_betas={str(k): float(v) for k, v in data["holiday_betas"].items()},
        )


def params_from_prophet(model: Prophet) -> ProphetParams:
    """Extract :class:`ProphetParams` from a fitted (or deserialised) Prophet model.

    Raises:
        DetectorError: the model uses features this evaluator does not reproduce (logistic growth, extra
            regressors, conditional seasonalities, custom holiday windows).
    """
    if model.growth not in ("linear", "flat"):
        raise DetectorError(f"Prophet growth {model.growth!r} is not supported by the numpy evaluator")
    if model.extra_regressors:
        raise DetectorError("Prophet extra regressors are not supported by the numpy evaluator")
    if model.holidays is not None:
        raise DetectorError("custom Prophet holidays are not supported; use country holidays")
    beta = np.nanmean(np.asarray(model.params["beta"], dtype=float), axis=0)
    seasonalities: list[Seasonality] = []
    column = 0
    for name, props in model.seasonalities.items():
        if props["condition_name"] is not None:
            raise DetectorError(f"conditional seasonality {name!r} is not supported by the numpy evaluator")
        width = 2 * int(props["fourier_order"])
        seasonalities.append(
            Seasonality(
                name=name,
                period=float(props["period"]),
                order=int(props["fourier_order"]),
                mode=props["mode"],
                beta=beta[column : column + width].copy(),
            )
        )
        column += width
    holiday_betas: dict[str, float] = {}
    if model.train_holiday_names is not None and len(model.train_holiday_names) > 0:
        keys = sorted(f"{name}_delim_+0" for name in model.train_holiday_names.unique())
        for key in keys:
            holiday_betas[key.split("_delim_")[0]] = float(beta[column])
            column += 1
    if column == 0:
        column = 1  # Prophet's placeholder 'zeros' column
    if column != beta.shape[0]:
        raise DetectorError(
            f"Prophet model has {beta.shape[0]} feature coefficients but the evaluator laid out {column}"
        )
    return ProphetParams(
        start=float(cast(pd.Timestamp, model.start).tz_localize("UTC").timestamp()),
        t_scale=float(cast(pd.Timedelta, model.t_scale).total_seconds()),
        y_scale=float(cast(float, model.y_scale)),
        floor=float(cast(float, model.y_min)) if model.scaling == "minmax" else 0.0,
        growth=str(model.growth),
        k=float(np.nanmean(model.params["k"])),
        m=float(np.nanmean(model.params["m"])),
        deltas=np.nanmean(np.asarray(model.params["delta"], dtype=float), axis=0).reshape(-1),
        changepoints_t=np.asarray(model.changepoints_t, dtype=float).reshape(-1),
        seasonalities=tuple(seasonalities),
        country=model.country_holidays,
        holiday_mode=model.holidays_mode,
        holiday_betas=holiday_betas,
    )


def learned_holidays_only(
    params: ProphetParams, trained: pd.DatetimeIndex, step: pd.Timedelta
) -> ProphetParams:
    """``params`` without the holidays of which the training rows ``trained`` hold less than half a day."""
    if params.country is None or not params.holiday_betas:
        return params
    days = pd.DatetimeIndex(trained).tz_convert("UTC").tz_localize(None).normalize()
    rows = Counter(name for found in holiday_names_by_date(params.country, days) for name in found)
    half_day = max(1, int(pd.Timedelta(hours=12) / step))
    learned = {name: beta for name, beta in params.holiday_betas.items() if rows[name] >= half_day}
    return params if learned == params.holiday_betas else replace(params, holiday_betas=learned)


@functools.lru_cache(maxsize=256)
def _holidays_of_year(country: str, year: int) -> dict[pd.Timestamp, tuple[str, ...]]:
    """Holiday names per date, exactly as ``prophet.make_holidays.make_holidays_df`` lists them."""
    code = {"TU": "TR"}.get(country, country)
    if not hasattr(holidays_lib, code):
        raise InvalidSeriesError(f"country {country!r} has no holiday calendar in the 'holidays' package")
    calendar = getattr(holidays_lib, code)(expand=False, language="en_US", years=[year])
    return {pd.Timestamp(day): tuple(calendar.get_list(day)) for day in calendar}


def holiday_names_by_date(country: str, dates: pd.DatetimeIndex) -> list[tuple[str, ...]]:
    """Holiday names of each (naive, midnight) date for ``country``, offline via ``holidays``."""
    table: dict[pd.Timestamp, tuple[str, ...]] = {}
    for year in sorted(set(dates.year)):
        table.update(_holidays_of_year(country, int(year)))
    return [table.get(day, ()) for day in dates]


def _fourier(days: np.ndarray, period: float, order: int) -> np.ndarray:
    """Prophet's ``fourier_series``: columns sin, cos of harmonics 1..order; shape (T, 2 * order)."""
    harmonics = np.arange(1, order + 1, dtype=float) / period
    angles = 2 * np.pi * days[:, None] * harmonics[None, :]
    features = np.empty((days.shape[0], 2 * order))
    features[:, 0::2] = np.sin(angles)
    features[:, 1::2] = np.cos(angles)
    return features


def _trend(params: Sequence[ProphetParams], seconds: np.ndarray) -> np.ndarray:
    """Piecewise-linear (or flat) trend of each model at ``seconds``; shape (S, T), unscaled units."""
    count = max((len(p.changepoints_t) for p in params), default=0)
    starts = np.array([p.start for p in params])
    scales = np.array([p.t_scale for p in params])
    t = (seconds[None, :] - starts[:, None]) / scales[:, None]
    changepoints = np.full((len(params), count), np.inf)
    deltas = np.zeros((len(params), count))
    for row, p in enumerate(params):
        changepoints[row, : len(p.changepoints_t)] = p.changepoints_t
        deltas[row, : len(p.deltas)] = p.deltas
    offsets = np.where(np.isfinite(changepoints), -changepoints * deltas, 0.0)
    active = changepoints[:, None, :] <= t[:, :, None]  # (S, T, C)
    k_t = np.array([p.k for p in params])[:, None] + np.einsum("stc,sc->st", active, deltas)
    m_t = np.array([p.m for p in params])[:, None] + np.einsum("stc,sc->st", active, offsets)
    flat = np.array([p.growth == "flat" for p in params])
    trend = np.where(flat[:, None], np.array([p.m for p in params])[:, None], k_t * t + m_t)
    y_scale = np.array([p.y_scale for p in params])[:, None]
    return trend * y_scale + np.array([p.floor for p in params])[:, None]


def _components(
    params: Sequence[ProphetParams], timestamps: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Additive (scaled) and multiplicative seasonal + holiday terms; each of shape (S, T)."""
    days = np.asarray((timestamps - _EPOCH) / pd.Timedelta(days=1), dtype=float)
    blocks: dict[tuple[float, int], int] = {}
    for p in params:
        for s in p.seasonalities:
            blocks.setdefault((s.period, s.order), 0)
    columns: list[np.ndarray] = []
    offsets: dict[tuple[float, int], int] = {}
    width = 0
    for period, order in blocks:
        offsets[(period, order)] = width
        columns.append(_fourier(days, period, order))
        width += 2 * order
    holiday_columns: dict[tuple[str, str], int] = {}
    countries = sorted({p.country for p in params if p.country is not None and p.holiday_betas})
    dates = pd.DatetimeIndex(timestamps.tz_convert("UTC").tz_localize(None).normalize())
    for country in countries:
        names_per_date = holiday_names_by_date(country, dates)
        wanted = sorted({name for p in params if p.country == country for name in p.holiday_betas})
        indicator = np.zeros((len(dates), len(wanted)))
        position = {name: i for i, name in enumerate(wanted)}
        for row, names in enumerate(names_per_date):
            for name in names:
                if name in position:
                    indicator[row, position[name]] = 1.0
        for name in wanted:
            holiday_columns[(country, name)] = width + position[name]
        columns.append(indicator)
        width += len(wanted)
    features = np.concatenate(columns, axis=1) if columns else np.zeros((len(days), 0))
    beta_add = np.zeros((len(params), width))
    beta_mul = np.zeros((len(params), width))
    for row, p in enumerate(params):
        for s in p.seasonalities:
            first = offsets[(s.period, s.order)]
            target = beta_add if s.mode == "additive" else beta_mul
            target[row, first : first + 2 * s.order] = s.beta
        target = beta_add if p.holiday_mode == "additive" else beta_mul
        for name, value in p.holiday_betas.items():
            if p.country is not None:
                target[row, holiday_columns[(p.country, name)]] = value
    y_scale = np.array([p.y_scale for p in params])[:, None]
    return (beta_add @ features.T) * y_scale, beta_mul @ features.T


def prophet_expected_batch(params: Sequence[ProphetParams], timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Prophet's ``yhat`` of many fitted models at the same UTC timestamps, without ``predict``.

    Args:
        params: One :class:`ProphetParams` per series (see :func:`params_from_prophet`).
        timestamps: UTC-aware timestamps to evaluate.

    Returns:
        Array of shape ``(len(params), len(timestamps))``.
    """
    if timestamps.tz is None:
        raise InvalidSeriesError("prophet_expected_batch needs UTC-aware timestamps")
    seconds = np.asarray((timestamps - _EPOCH) / pd.Timedelta(seconds=1), dtype=float)
    out = np.empty((len(params), len(timestamps)))
    for first in range(0, len(params), _BATCH_CHUNK):
        chunk = params[first : first + _BATCH_CHUNK]
        trend = _trend(chunk, seconds)
        additive, multiplicative = _components(chunk, timestamps)
        out[first : first + len(chunk)] = trend * (1 + multiplicative) + additive
    return out


@register
class ProphetDetector(Detector):
    """Prophet trend + seasonality + holidays, scored in numpy with a residual-MAD band.

    Args:
        granularity: Bucket size (``"5m"``, ``"1h"``, ``"1d"``); inferred from the history when ``None``.
        country: ISO country code whose holidays are modelled (e.g. ``"BR"``), or ``None``.
        interval_width: Coverage of the band under normality; the sensitivity knob (its z is the default
            ``detect`` threshold).
        changepoint_prior_scale: Prophet's trend flexibility.
        seasonality_prior_scale: Prophet's seasonality flexibility.
        holidays_prior_scale: Prophet's holiday effect flexibility.
        seasonality_mode: ``"additive"`` or ``"multiplicative"``.
        sigma_by_hour: Residual sigma per hour of day for sub-daily data.
        yearly_min_days: Daily data with at least this many days of history also gets yearly seasonality.
    """

    name: ClassVar[str] = "prophet"
    min_history: ClassVar[int] = 14
    #: Version 2 adds livewatch's own ``params`` beside Prophet's JSON, so scoring never parses Prophet's.
    state_version: ClassVar[int] = 2

    params_: ProphetParams
    sigma_by_hour_: np.ndarray
    _model: Prophet | None
    _model_json: str

    def __init__(
        self,
        *,
        granularity: str | None = None,
        country: str | None = None,
        interval_width: float = 0.9999,
        changepoint_prior_scale: float = 0.05,
        seasonality_prior_scale: float = 10.0,
        holidays_prior_scale: float = 10.0,
        seasonality_mode: Literal["additive", "multiplicative"] = "additive",
        sigma_by_hour: bool = True,
        yearly_min_days: float = 730.0,
    ) -> None:
        self.granularity = granularity
        self.country = country
        self.interval_width = interval_width
        self.changepoint_prior_scale = changepoint_prior_scale
        self.seasonality_prior_scale = seasonality_prior_scale
        self.holidays_prior_scale = holidays_prior_scale
        self.seasonality_mode = seasonality_mode
        self.sigma_by_hour = sigma_by_hour
        self.yearly_min_days = yearly_min_days

    @property
    def z_(self) -> float:
        """Half-width of the band in sigmas, from ``interval_width``."""
        return interval_z(self.interval_width)

    def default_rules(self) -> Any:
        return super().default_rules().replace(threshold=self.z_)

    def _fit(self, frame: pd.DataFrame) -> None:
        data = frame.loc[frame["value"].notna()]
        index = pd.DatetimeIndex(data.index)
        step = infer_step(pd.DatetimeIndex(frame.index), self.granularity, series_id=self.series_id_)
        span = data.index[-1] - data.index[0]
        sub_daily = step < pd.Timedelta(days=1)
        needed = pd.Timedelta(days=2) if sub_daily else pd.Timedelta(days=14)
        if span < needed:
            raise InsufficientDataError(
                f"series {self.series_id_!r}: Prophet needs at least {needed.days} days of history at step "
                f"{step}, got {span}; use the robust baseline for short histories"
            )
        prophet_cls = _prophet_class()
        model = prophet_cls(
            growth="linear",
            daily_seasonality=sub_daily,
            weekly_seasonality=True,
            yearly_seasonality=(not sub_daily) and span >= pd.Timedelta(days=self.yearly_min_days),
            seasonality_mode=self.seasonality_mode,
            changepoint_prior_scale=self.changepoint_prior_scale,
            seasonality_prior_scale=self.seasonality_prior_scale,
            holidays_prior_scale=self.holidays_prior_scale,
            interval_width=self.interval_width,
            uncertainty_samples=0,
        )
        if self.country is not None:
            try:
                model.add_country_holidays(self.country)
            except AttributeError as exc:
                raise InvalidSeriesError(
                    f"series {self.series_id_!r}: country {self.country!r} has no holiday calendar; "
                    "use an ISO code such as 'BR' or country=None"
                ) from exc
        history = pd.DataFrame(
            {"ds": index.tz_convert("UTC").tz_localize(None), "y": data["value"].to_numpy(dtype=float)}
        )
        with _quiet_prophet_warnings():
            model.fit(history)
        self._model = model
        self._model_json = ""
        self.params_ = learned_holidays_only(params_from_prophet(model), index, step)
        residual = data["value"].to_numpy(dtype=float) - prophet_expected_batch([self.params_], index)[0]
        self.sigma_by_hour_ = self._residual_sigma(residual, index, sub_daily)

    def _residual_sigma(self, residual: np.ndarray, index: pd.DatetimeIndex, sub_daily: bool) -> np.ndarray:
        """Robust sigma per hour of day (24 values; all equal when not per hour)."""
        centred = residual - np.median(residual)
        overall = _MAD_TO_SIGMA * float(np.median(np.abs(centred)))
        overall = max(overall, 1e-9 * max(abs(self.params_.y_scale), 1.0))
        sigma = np.full(24, overall)
        if self.sigma_by_hour and sub_daily:
            hours = np.asarray(index.hour)
            for hour in range(24):
                chosen = centred[hours == hour]
                if len(chosen) >= 10:
                    sigma[hour] = max(_MAD_TO_SIGMA * float(np.median(np.abs(chosen))), 0.5 * overall)
        return sigma

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        expected = prophet_expected_batch([self.params_], pd.DatetimeIndex(frame.index))[0]
        sigma = self.sigma_by_hour_[np.asarray(pd.DatetimeIndex(frame.index).hour)]
        observed = frame["value"].to_numpy(dtype=float)
        z = self.z_
        scored = pd.DataFrame(
            {
                "observed": observed,
                "expected": expected,
                "lower": expected - z * sigma,
                "upper": expected + z * sigma,
                "score": (observed - expected) / sigma,
                SIGMA_COLUMN: sigma,
            },
            index=frame.index,
        )
        return scored.loc[:, [*SCORE_COLUMNS, SIGMA_COLUMN]]

    @property
    def model_(self) -> Prophet:
        """The fitted Prophet model; a loaded detector parses Prophet's JSON only on first access."""
        if self._model is None:
            self._model = _model_from_json(self._model_json)
        return self._model

    def _state_to_dict(self) -> dict[str, Any]:
        return {
            "prophet": self._model_json if self._model is None else _model_to_json(self._model),
            "params": self.params_.to_dict(),
            "sigma_by_hour": [float(s) for s in self.sigma_by_hour_],
        }

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self._model = None
        self._model_json = state["prophet"]
        self.params_ = ProphetParams.from_dict(state["params"])
        self.sigma_by_hour_ = np.asarray(state["sigma_by_hour"], dtype=float)

    @classmethod
    def _upgrade_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """Version 1 holds Prophet's JSON only: derive ``params`` through Prophet's own loader."""
        if payload.get("version") != 1:
            return payload
        state = dict(payload["state"])
        state["params"] = params_from_prophet(_model_from_json(state["prophet"])).to_dict()
        return {**payload, "version": 2, "state": state}


def _model_to_json(model: Prophet) -> str:
    _prophet_class()
    from prophet.serialize import model_to_json

    return str(model_to_json(model))


def _model_from_json(text: str) -> Prophet:
    _prophet_class()
    from prophet.serialize import model_from_json

    with _quiet_prophet_warnings():
        return model_from_json(text)
