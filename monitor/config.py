"""Strict, typed configuration loaded from ``config.yaml``.

* Models are frozen and forbid unknown keys: a typo fails with its key path and the closest valid key
  (``metrics[1].denominatr: unknown key (did you mean 'denominator'?)``).
* ``${ENV_VAR}`` anywhere in a string value is replaced from the environment at load time; a missing
  variable fails with the key path. Substituted values are secrets: they never appear in errors or logs.
* Durations (``10m``, ``1h``, ``14d``) are parsed once into :class:`datetime.timedelta`; a value too large
  to represent is an error of its key, never an ``OverflowError``.
* Values are checked for meaning, not only type: durations are positive and bounded (each error says the
  bounds and why), numbers are finite, a granularity divides a day, the history covers two seasonal cycles,
  database URLs parse and their dialect and driver load, region codes have a holiday calendar, channels are
  not empty, and route / window matchers name values that can occur (metrics, regions, severities, kinds).
* All defaults live in :class:`MetricDefaults` (overridable under ``defaults:`` in the file). The file-level
  :class:`MetricConfig` may leave any of them unset; :attr:`Config.metrics` holds the resolved
  :class:`Metric` objects, where every field is set (no ``metric.granularity or ...`` fallbacks needed).
* An error is reported once, at the key the user wrote: a bad ``defaults.granularity`` is reported as
  ``defaults.granularity``, not again under every metric inheriting it.
* References are checked at load (routes, windows and slice dimensions name known metrics and columns);
  references to the database (tables, columns) are checked by :func:`monitor.source.check_metrics`,
  which ``livewatch check-config`` runs.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import types
import typing
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import holidays
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from alerts.model import ANOMALY_KINDS, Severity
from monitor.config_types import IDENTIFIER as _IDENTIFIER
from monitor.config_types import STRICT, Duration, SqlSource, parse_duration
from monitor.errors import ConfigError
from monitor.experiments.config import ExperimentConfig, check_references

__all__ = [
    "AlertsConfig",
    "Config",
    "DatabaseConfig",
    "DetectorName",
    "ExecutorConfig",
    "InteractivityConfig",
    "LoggingConfig",
    "Metric",
    "MetricConfig",
    "MetricDefaults",
    "NoiseFloors",
    "RouteConfig",
    "SchedulerConfig",
    "SlackConfig",
    "WindowConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
DAY = timedelta(days=1)
WEEK = timedelta(weeks=1)

DetectorName = Literal["stack", "streaming"]
"""Per-metric detector: ``stack`` (robust baseline + Prophet + change points) or ``streaming`` (online)."""

# Prophet's own country aliases (``prophet.make_holidays``); detectors.prophet maps them the same way.
COUNTRY_ALIASES = {"TU": "TR"}
# Driver module -> what to install, for the "driver not installed" error of a database URL.
_DRIVER_HINTS = {
    "psycopg": "pip install 'psycopg[binary]'",
    "psycopg2": "pip install psycopg2-binary (or use postgresql+psycopg://, the psycopg 3 driver)",
    "pymysql": "pip install pymysql",
    "MySQLdb": "pip install mysqlclient",
    "pyodbc": "pip install pyodbc",
    "oracledb": "pip install oracledb",
}


# -- durations -------------------------------------------------------------------------------------------
def format_duration(value: timedelta) -> str:
    """The shortest exact text of a duration in the config's syntax: ``90s``, ``10m``, ``1h``, ``14d``."""
    micros = value // timedelta(microseconds=1)
    for unit, size in (("d", DAY), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1))):
        step = size // timedelta(microseconds=1)
        if micros and micros % step == 0:
            return f"{micros // step}{unit}"
    return f"{value.total_seconds():g}s"


def _between(low: timedelta, high: timedelta, why: str) -> AfterValidator:
    """A duration within ``[low, high]``; the error states the bounds and the reason for them."""

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(
                f"{format_duration(value)} is out of range: must be between {format_duration(low)} and "
                f"{format_duration(high)} ({why})"
            )
        return value

    return AfterValidator(check)


def _divides_a_day(value: timedelta) -> timedelta:
    if DAY % value:
        raise ValueError(
            f"{format_duration(value)} does not divide a day: buckets are aligned to midnight UTC, so use "
            "e.g. 1m, 5m, 15m, 1h, 6h or 1d"
        )
    return value


Granularity = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(timedelta(minutes=1), DAY, "one bucket per minute at the finest, one per day at the coarsest"),
    AfterValidator(_divides_a_day),
]
CompletenessDelay = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(timedelta(0), WEEK, "0 scores a bucket when it ends; a week late is no longer live monitoring"),
]
History = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(
        timedelta(days=2),
        timedelta(days=1095),
        "two daily cycles at the least; over three years only slows every fit",
    ),
]
RepeatInterval = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(
        timedelta(minutes=1),
        timedelta(days=30),
        "shorter re-sends an open incident every tick; longer silences it for good",
    ),
]
RefitEvery = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(
        timedelta(minutes=1), timedelta(days=90), "0 refits on every tick; older models miss level changes"
    ),
]
MaxCatchup = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(
        timedelta(minutes=1),
        timedelta(days=365),
        "how far back a restart scores missed buckets; a year of backlog is a backtest, not a catch-up",
    ),
]
MisfireGrace = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(timedelta(seconds=1), DAY, "how late a tick may start; a day late it belongs to the next tick"),
]
SlackTimeout = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _between(
        timedelta(seconds=1), timedelta(minutes=5), "0 fails every call; past 5m a hung call stalls delivery"
    ),
]


# -- small string types ----------------------------------------------------------------------------------
def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain column name (letters, digits and underscores)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _env_name(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, underscores)")
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"listed twice: {dupes}")
    return values


Identifier = Annotated[str, AfterValidator(_identifier)]
NonEmpty = Annotated[str, AfterValidator(_not_blank)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Dimensions = Annotated[tuple[Identifier, ...], AfterValidator(_unique)]


def _host(value: str) -> str:
    """An IP address or a host name to bind to (no scheme, no port)."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    name = value.removesuffix(".")
    if name and len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split(".")):
        return value
    hint = " (the port is scheduler.metrics_port)" if ":" in value or "/" in value else ""
    raise ValueError(
        f"{value!r} is not an IP address or host name, e.g. 127.0.0.1 (local only), 0.0.0.0 (all) or ::{hint}"
    )


def _problem(loc: tuple[str | int, ...], message: str, value: Any = None) -> dict[str, Any]:
    """One pydantic line error at ``loc`` (relative to the model or field being validated)."""
    return {
        "type": PydanticCustomError("config", "{message}", {"message": message}),
        "loc": loc,
        "input": value,
    }


class _Strict(BaseModel):
    model_config = STRICT


def _fail(title: str, problems: list[dict[str, Any]]) -> None:
    if problems:
        raise ValidationError.from_exception_data(title, problems)  # type: ignore[arg-type]


class NoiseFloors(_Strict):
    """An anomaly alerts only if its volume and effect clear all three floors."""

    min_volume: float = Field(0.0, ge=0, description="minimum denominator (ratio) or expected count")
    min_abs_effect: float = Field(0.0, ge=0, description="minimum |observed - expected| in metric units")
    min_rel_effect: float = Field(0.0, ge=0, description="minimum |observed - expected| / expected")


# -- metrics ---------------------------------------------------------------------------------------------
class MetricDefaults(_Strict):
    """Every metric setting with a default; the one place where defaults live."""

    time_column: Identifier = "ts"
    granularity: Granularity = timedelta(hours=1)
    completeness_delay: CompletenessDelay = timedelta(minutes=10)
    history: History = timedelta(days=56)
    series_dimension: Identifier = "region"
    slice_dimensions: Dimensions = ()
    direction: Literal["up", "down", "both"] = "both"
    threshold: float = Field(4.0, gt=0, description="|score| in sigmas above which a point is anomalous")
    interval_width: float = Field(0.99, gt=0, lt=1, description="width of the forecast band")
    noise_floors: NoiseFloors = NoiseFloors()
    detector: DetectorName = Field(
        "stack", description="'stack' (robust + Prophet + change points, the default) or 'streaming'"
    )


INHERITED: tuple[str, ...] = tuple(MetricDefaults.model_fields)
"""The metric fields that fall back to :class:`MetricDefaults` when a metric leaves them unset."""


class MetricConfig(_Strict):
    """One monitored metric as written in the file. Fields left unset inherit from :class:`MetricDefaults`.

    Code outside this module works with the resolved :class:`Metric` (``Config.metrics``).
    """

    name: str
    description: str = ""
    source: SqlSource
    kind: Literal["count", "ratio"]
    value: str | None = Field(None, description="column summed, for kind=count")
    numerator: str | None = None
    denominator: str | None = None
    scale: float = Field(1.0, gt=0, description="multiplier of a ratio, e.g. 1000 for 'per 1k views'")
    unit: str = ""
    time_column: Identifier | None = None
    granularity: Granularity | None = None
    completeness_delay: CompletenessDelay | None = None
    history: History | None = None
    series_dimension: Identifier | None = None
    slice_dimensions: Dimensions | None = None
    direction: Literal["up", "down", "both"] | None = None
    threshold: float | None = Field(None, gt=0)
    interval_width: float | None = Field(None, gt=0, lt=1)
    noise_floors: NoiseFloors | None = None
    detector: DetectorName | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: str) -> str:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"metric name {name!r} must be letters, digits and underscores")
        return name

    @model_validator(mode="after")
    def _columns_match_kind(self) -> MetricConfig:
        if self.kind == "count":
            if self.value is None:
                raise ValueError("kind 'count' needs 'value' (the column to sum)")
            if self.numerator or self.denominator:
                raise ValueError("kind 'count' takes 'value', not numerator/denominator")
        else:
            if not (self.numerator and self.denominator):
                raise ValueError("kind 'ratio' needs both 'numerator' and 'denominator' columns")
            if self.value:
                raise ValueError("kind 'ratio' takes numerator/denominator, not 'value'")
        for column in self.columns():
            if not _IDENTIFIER.match(column):
                raise ValueError(f"column {column!r} is not a plain identifier")
        return self

    def resolved(self, defaults: MetricDefaults) -> Metric:
        """The resolved :class:`Metric`: every field this metric leaves unset takes the default."""
        values = {name: getattr(self, name) for name in MetricConfig.model_fields}
        inherited = frozenset(name for name in INHERITED if values[name] is None)
        values.update({name: getattr(defaults, name) for name in inherited})
        metric = Metric(**values)
        metric._inherited = inherited
        return metric

    def columns(self) -> list[str]:
        """Every column the metric reads from its source."""
        measures = [self.value] if self.kind == "count" else [self.numerator, self.denominator]
        dims = [self.time_column, self.series_dimension, *(self.slice_dimensions or ())]
        return [c for c in [*dims, *measures] if c]

    @property
    def measure_columns(self) -> tuple[str, str | None]:
        """(numerator-like column, denominator column or None)."""
        if self.kind == "count":
            assert self.value is not None  # guaranteed by the validator
            return self.value, None
        assert self.numerator is not None and self.denominator is not None
        return self.numerator, self.denominator


class Metric(MetricConfig):
    """A metric resolved against the defaults: every inherited setting is set (nothing is ``None``).

    A subtype of :class:`MetricConfig` whose fields are narrowed (sound, as both are frozen), so code typed
    against ``MetricConfig`` keeps working while new code can rely on the non-optional types.
    ``value`` / ``numerator`` / ``denominator`` stay optional: which of them is set depends on ``kind``
    (use :attr:`measure_columns`).
    """

    time_column: Identifier
    granularity: Granularity
    completeness_delay: CompletenessDelay
    history: History
    series_dimension: Identifier
    slice_dimensions: Dimensions
    direction: Literal["up", "down", "both"]
    threshold: float = Field(gt=0)
    interval_width: float = Field(gt=0, lt=1)
    noise_floors: NoiseFloors
    detector: DetectorName

    # Which fields came from ``defaults`` (errors about them are reported at ``defaults.<field>``).
    _inherited: frozenset[str] = PrivateAttr(default=frozenset())

    def inherits(self, field: str) -> bool:
        """Whether ``field`` came from ``defaults:`` rather than from the metric itself."""
        return field in self._inherited

    def __eq__(self, other: object) -> bool:
        # Equal by value: where a setting came from (``_inherited``) is not part of the metric's identity.
        if not isinstance(other, Metric):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))


# -- database, alerts, scheduler --------------------------------------------------------------------------
class DatabaseConfig(_Strict):
    url: str = Field(description="SQLAlchemy URL; put passwords in ${ENV_VARS}")
    schema_name: Identifier | None = Field(None, alias="schema")

    @field_validator("url")
    @classmethod
    def _url_loads(cls, url: str) -> str:
        """The URL parses and its dialect and driver import (the URL itself is never echoed: secrets)."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(
                "not a valid SQLAlchemy URL; expected dialect[+driver]://user:password@host/database, "
                "e.g. sqlite:///livewatch.db or postgresql+psycopg://user:${DB_PASSWORD}@host/db"
            ) from None
        try:
            dialect = parsed.get_dialect()
        except NoSuchModuleError:
            raise ValueError(
                f"unknown database dialect {parsed.drivername!r} (built in: mssql, mysql, oracle, "
                "postgresql, sqlite; a third-party dialect needs its package installed, e.g. "
                "pip install duckdb-engine for duckdb://)"
            ) from None
        if getattr(dialect, "is_async", False):
            raise ValueError(
                f"{parsed.drivername!r} is an asyncio driver; livewatch needs a synchronous one "
                "(e.g. postgresql+psycopg, sqlite)"
            )
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            module = exc.name or parsed.get_driver_name()
            hint = _DRIVER_HINTS.get(module.split(".")[0], f"pip install the package providing {module!r}")
            raise ValueError(
                f"the driver of {parsed.drivername!r} is not installed (no module {module!r}): {hint}"
            ) from None
        return url


class RouteConfig(_Strict):
    """A node of the route tree (Alertmanager style): first matching child wins unless ``continue``."""

    match: dict[Literal["metric", "region", "severity", "kind"], str | list[str]] = {}
    channel: NonEmpty | None = None
    repeat_interval: RepeatInterval | None = None
    continue_: bool = Field(False, alias="continue")
    routes: tuple[RouteConfig, ...] = ()


# -- actions from Slack (issue 16) -------------------------------------------------------------------------
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]+$")
_SLACK_USERGROUP = re.compile(r"^S[A-Z0-9]+$")
_SLACK_CHANNEL = re.compile(r"^(#[a-z0-9][a-z0-9_.-]*|[CG][A-Z0-9]+)$")


def _slack_ids(pattern: re.Pattern[str], example: str) -> Any:
    def check(values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if not pattern.match(v)]
        if bad:
            raise ValueError(f"{bad} are not {example}")
        return _unique(values)

    return AfterValidator(check)


class InteractivityConfig(_Strict):
    """``alerts.slack.interactivity``: people acting on incidents from the Slack message (the daemon only).

    ``mode: auto`` (the default) listens over Socket Mode when ``$app_token_env`` is set and not at all
    otherwise; ``socket`` / ``http`` require their secret variable (the daemon refuses to start without
    it); ``off`` never listens. Secrets come from the environment only. Who may act: the listed users,
    the members of the listed user groups, anyone acting in a listed channel; all three empty (the default)
    lets nobody act, and everyone who tries is told ephemerally how to configure it.
    """

    mode: Literal["auto", "socket", "http", "off"] = "auto"
    app_token_env: EnvName = Field("SLACK_APP_TOKEN", description="env var of the app-level xapp- token")
    signing_secret_env: EnvName = Field(
        "SLACK_SIGNING_SECRET", description="env var of the app's signing secret (mode http)"
    )
    host: Annotated[str, AfterValidator(_host)] = Field(
        "127.0.0.1", description="address the http endpoint binds to (put it behind a TLS proxy)"
    )
    port: int = Field(3000, ge=0, le=65535, description="port of the http endpoint (0: any free port)")
    path: str = Field("/slack/actions", description="path of the http endpoint (Slack's Request URL)")
    allowed_users: Annotated[tuple[str, ...], _slack_ids(_SLACK_USER, "Slack user ids like U012ABCDEF")] = ()
    allowed_usergroups: Annotated[
        tuple[str, ...], _slack_ids(_SLACK_USERGROUP, "Slack user group ids like S012ABCDEF")
    ] = ()
    allowed_channels: Annotated[
        tuple[str, ...], _slack_ids(_SLACK_CHANNEL, "channel ids like C012ABCDEF or names like #oncall")
    ] = ()

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._~/-]*$", path):
            raise ValueError(f"{path!r} must be a URL path starting with '/', e.g. /slack/actions")
        return path


class SlackConfig(_Strict):
    token_env: EnvName = Field("SLACK_BOT_TOKEN", description="name of the env var holding the bot token")
    webhook_env: EnvName = Field(
        "SLACK_WEBHOOK_URL", description="env var of an incoming-webhook URL (no bot)"
    )
    api_url: str = "https://slack.com/api/"
    default_channel: NonEmpty = "#livewatch-alerts"
    timeout: SlackTimeout = timedelta(seconds=10)
    interactivity: InteractivityConfig = InteractivityConfig()

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("must be an http(s) URL, e.g. https://slack.com/api/")
        return url


class WindowConfig(_Strict):
    """A maintenance or event window (policy launch, live event)."""

    name: str
    start: datetime
    end: datetime
    match: dict[Literal["metric", "region"], str | list[str]] = {}
    suppress: bool = Field(True, description="false = annotate alerts but still send them")

    @model_validator(mode="after")
    def _ordered(self) -> WindowConfig:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a timezone, e.g. 2026-11-01T10:00:00Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class AlertsConfig(_Strict):
    slack: SlackConfig = SlackConfig()
    console: bool = True
    jsonl_path: NonEmpty | None = "livewatch-alerts.jsonl"
    resolve_after: int = Field(
        3, ge=1, le=1000, description="clean buckets before an incident resolves (1..1000)"
    )
    repeat_interval: RepeatInterval = timedelta(hours=4)
    group_window: Duration = timedelta(hours=2)
    routes: tuple[RouteConfig, ...] = ()
    windows: tuple[WindowConfig, ...] = ()


class ExecutorConfig(_Strict):
    type: Literal["local", "dask"] = "local"
    workers: int | None = Field(None, ge=1, le=1024, description="local process pool size; default all cores")
    address: str | None = Field(None, description="dask scheduler, e.g. tcp://scheduler:8786")

    @model_validator(mode="after")
    def _dask_needs_address(self) -> ExecutorConfig:
        if self.type == "dask" and not self.address:
            raise ValueError("executor type 'dask' needs 'address' (e.g. tcp://scheduler:8786)")
        return self


class SchedulerConfig(_Strict):
    refit_every: RefitEvery = timedelta(days=1)
    max_catchup: MaxCatchup = timedelta(days=14)
    misfire_grace: MisfireGrace = timedelta(minutes=5)
    metrics_port: int | None = Field(9108, ge=0, le=65535, description="Prometheus /metrics; null = off")
    metrics_address: Annotated[str, AfterValidator(_host)] = Field(
        "127.0.0.1", description="address /metrics binds to; 0.0.0.0 exposes it on every interface"
    )


class LoggingConfig(_Strict):
    """Log output of the CLI and the daemon (stderr).

    ``format: console`` (the default) is the readable one-line-per-event form for a terminal; set
    ``json`` for a daemon whose logs are shipped to a collector. ``level`` defaults to ``warning``, as the
    CLI's ``--log-level`` does.
    """

    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "warning"


# -- the whole file ---------------------------------------------------------------------------------------
class Config(_Strict):
    """The whole ``config.yaml``; ``metrics`` holds the resolved :class:`Metric` of every entry."""

    version: Literal[1] = 1
    database: DatabaseConfig
    state: DatabaseConfig = DatabaseConfig(url="sqlite:///livewatch-state.db")
    regions: dict[str, str] = Field(
        default_factory=dict, description="series value -> ISO country code for holidays"
    )
    defaults: MetricDefaults = MetricDefaults()
    metrics: tuple[Metric, ...]
    alerts: AlertsConfig = AlertsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    executor: ExecutorConfig = ExecutorConfig()
    logging: LoggingConfig = LoggingConfig()
    experiments: tuple[ExperimentConfig, ...] = ()

    @field_validator("regions")
    @classmethod
    def _countries_have_holidays(cls, regions: dict[str, str]) -> dict[str, str]:
        supported = holidays.list_supported_countries()
        problems = []
        for region, code in regions.items():
            if COUNTRY_ALIASES.get(code, code) in supported:
                continue
            close = difflib.get_close_matches(code.upper(), [c for c in supported if len(c) == 2], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                _problem(
                    (region,),
                    f"unknown ISO country code {code!r}: the 'holidays' package has no calendar for it "
                    f"({hint}use ISO 3166-1 alpha-2, e.g. BR, US, GB)",
                    code,
                )
            )
        _fail("regions", problems)
        return regions

    @field_validator("metrics", mode="before")
    @classmethod
    def _resolve(cls, raw: Any, info: ValidationInfo) -> Any:
        """Validate the entries as written, then resolve them against ``defaults`` (validated earlier)."""
        if isinstance(raw, list | tuple) and not raw:
            raise ValueError("no metrics configured; add at least one under 'metrics:' (see config.yaml)")
        if not isinstance(raw, list | tuple):
            return raw  # the declared type reports it
        written = _METRIC_ENTRIES.validate_python(tuple(raw))
        # With invalid defaults the whole file fails on them anyway; resolve against the built-in ones.
        defaults = info.data.get("defaults", MetricDefaults())
        return tuple(m if isinstance(m, Metric) else m.resolved(defaults) for m in written)

    @model_validator(mode="after")
    def _check_references(self) -> Config:
        problems: list[dict[str, Any]] = []
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(
                _problem(
                    ("metrics",),
                    f"duplicate metric names {dupes}: names identify metrics and must be unique",
                )
            )
        for i, metric in enumerate(self.metrics):
            problems += _metric_problems(i, metric)
        problems += self._catchup_problems()
        problems += self._matcher_problems(set(names))
        problems += [
            _problem(loc, message) for loc, message in check_references(self.experiments, self.metrics)
        ]
        # Inherited values are reported once, at defaults.<key>, however many metrics inherit them.
        unique: dict[tuple[tuple[str | int, ...], str], dict[str, Any]] = {}
        for p in problems:
            unique.setdefault((p["loc"], str(p["type"])), p)
        _fail("Config", list(unique.values()))
        return self

    def _catchup_problems(self) -> list[dict[str, Any]]:
        catchup = self.scheduler.max_catchup
        coarse = [m.name for m in self.metrics if m.granularity > catchup]
        if not coarse:
            return []
        widest = max(m.granularity for m in self.metrics)
        return [
            _problem(
                ("scheduler", "max_catchup"),
                f"{format_duration(catchup)} is shorter than one bucket of {coarse} "
                f"({format_duration(widest)}): a restart could not score even the last bucket; use at "
                f"least {format_duration(widest)}",
            )
        ]

    def _matcher_problems(self, known_metrics: set[str]) -> list[dict[str, Any]]:
        choices: dict[str, list[str]] = {
            "metric": sorted(known_metrics),
            "severity": [s.value for s in Severity],
            "kind": list(ANOMALY_KINDS),
        }
        if self.regions:  # with no regions configured, any series value may occur
            choices["region"] = sorted(self.regions)
        problems = []
        for where, match in self._matchers():
            for key, wanted in match.items():
                values = [wanted] if isinstance(wanted, str) else list(wanted)
                loc = (*where, "match", key)
                if not values:
                    problems.append(_problem(loc, "an empty list never matches; list values or drop the key"))
                valid = choices.get(key)
                for value in values:
                    if valid is not None and value not in valid:
                        problems.append(_problem(loc, _never_matches(key, value, valid), value))
        return problems

    def _matchers(self) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
        found: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []

        def walk(routes: tuple[RouteConfig, ...], prefix: tuple[str | int, ...]) -> None:
            for i, route in enumerate(routes):
                found.append(((*prefix, i), {str(k): v for k, v in route.match.items()}))
                walk(route.routes, (*prefix, i, "routes"))

        walk(self.alerts.routes, ("alerts", "routes"))
        found.extend(
            (("alerts", "windows", i), {str(k): v for k, v in w.match.items()})
            for i, w in enumerate(self.alerts.windows)
        )
        return found

    def metric(self, name: str) -> Metric:
        """The metric called ``name``; a :class:`ConfigError` lists the valid names otherwise."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise ConfigError(
            [f"unknown metric {name!r}; configured metrics: {', '.join(m.name for m in self.metrics)}"]
        )


def _never_matches(key: str, value: str, valid: list[str]) -> str:
    what = {"metric": "metric", "region": "region", "severity": "severity", "kind": "anomaly kind"}[key]
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    source = {"metric": "configured metrics", "region": "keys of 'regions'"}.get(key, "valid")
    return f"unknown {what} {value!r}: this matcher can never match ({hint}{source}: {', '.join(valid)})"


def _metric_problems(i: int, metric: Metric) -> list[dict[str, Any]]:
    """Rules across fields of one resolved metric, each reported at the key the user wrote."""

    def at(*fields: str) -> tuple[str | int, ...]:
        # The first of ``fields`` the metric sets itself; if it inherits them all, the defaults' key.
        for field in fields:
            if not metric.inherits(field):
                return ("metrics", i, field)
        return ("defaults", fields[0])

    def origin(field: str) -> str:
        return " (from defaults)" if metric.inherits(field) else ""

    problems = []
    # Two cycles of the shortest seasonality the models fit: daily for sub-daily buckets, weekly for daily.
    period, cycle = (DAY, "daily") if metric.granularity < DAY else (WEEK, "weekly")
    if metric.history < 2 * period:
        problems.append(
            _problem(
                at("history", "granularity"),
                f"history {format_duration(metric.history)}{origin('history')} is too short for "
                f"{format_duration(metric.granularity)} buckets{origin('granularity')}: the models need "
                f"two {cycle} cycles, i.e. history >= {format_duration(2 * period)} (sub-daily buckets "
                "need 2d, daily buckets 14d)",
            )
        )
    if metric.completeness_delay >= metric.history:
        problems.append(
            _problem(
                at("completeness_delay", "history"),
                f"completeness_delay {format_duration(metric.completeness_delay)} is not shorter than "
                f"history {format_duration(metric.history)}",
            )
        )
    if metric.series_dimension == metric.time_column:
        problems.append(
            _problem(
                at("series_dimension", "time_column"),
                f"{metric.series_dimension!r} is both the time column and the series dimension",
            )
        )
    reserved = {metric.time_column: "time_column", metric.series_dimension: "series_dimension"}
    clashes = [d for d in metric.slice_dimensions if d in reserved]
    if clashes:
        problems.append(
            _problem(
                at("slice_dimensions", *(reserved[c] for c in clashes)),
                f"{clashes} cannot be a slice dimension: it is the metric's "
                f"{' and '.join(reserved[c] for c in clashes)}",
            )
        )
    return problems


_METRIC_ENTRIES = TypeAdapter(tuple[MetricConfig, ...])


# -- loading and error formatting ------------------------------------------------------------------------
def _substitute_env(node: Any, path: str, env: dict[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            k: _substitute_env(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_substitute_env(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append(
                    f"{path}: environment variable {name} is not set; export it or remove ${{{name}}}"
                )
                return ""
            return env[name]

        return _ENV.sub(replace, node)
    return node


def _format_loc(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue
        elif not str(part).startswith(("function-", "literal[", "tagged-union")):
            text += f".{part}" if text else str(part)
    return text


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field annotation (``X | None``, ``tuple[X, ...]``, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The valid keys of the model an unknown key at ``loc`` was written in (aliases as written)."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        inner = _models_in(field.annotation) if field is not None else []
        model = inner[0] if inner else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _line(error: Any) -> str:
    loc = tuple(error["loc"])
    where = _format_loc(loc) or "config"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        keys = _keys_at(loc)
        message = "unknown key" + _did_you_mean(str(loc[-1]) if loc else "", keys)
        if keys:
            message += f"; valid keys here: {', '.join(keys)}"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "finite_number":
        message = (
            "must be a finite number (inf and nan are not; a literal beyond ~1.8e308, like 1e400, is inf)"
        )
    elif error["type"] == "literal_error" and isinstance(error.get("input"), str):
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        if loc and loc[-1] == "[key]":
            message = (
                "unknown key" + _did_you_mean(error["input"], choices) + f"; valid: {', '.join(choices)}"
            )
        else:
            message += _did_you_mean(error["input"], choices)
    return f"{where}: {message}"


def _secret_free(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def parse_config(data: Any, *, env: dict[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data. Raises :class:`ConfigError` with one line per problem."""
    env = dict(os.environ) if env is None else env
    if not isinstance(data, dict):
        raise ConfigError(["config: the file must be a YAML mapping with 'database' and 'metrics'"])
    problems: list[str] = []
    substituted = _substitute_env(data, "", env, problems)
    if problems:
        raise ConfigError(problems)
    secrets = [env[name] for name in set(_ENV.findall(yaml.safe_dump(data)))]
    try:
        return Config.model_validate(substituted)
    except ValidationError as exc:
        lines = list(dict.fromkeys(_secret_free(_line(e), secrets) for e in exc.errors()))
        raise ConfigError(lines) from None


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: config file not found; pass --config PATH or run from the repo root"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
    return parse_config(data, env=env)
