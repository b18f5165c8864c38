"""Strict, typed configuration loaded from ``config.yaml``.

* Models are frozen and forbid unknown keys: a typo fails with its key path (``metrics[2].denominatr``).
* ``${ENV_VAR}`` anywhere in a string value is replaced from the environment at load time; a missing
  variable fails with the key path. Substituted values are secrets: they never appear in errors or logs.
* Durations (``10m``, ``1h``, ``14d``) are parsed once into :class:`datetime.timedelta`.
* All defaults live in :class:`MetricDefaults` (overridable under ``defaults:`` in the file); a metric
  inherits every field it does not set.
* References are checked at load (routes, windows and slice dimensions name known metrics and columns);
  references to the database (tables, columns) are checked by :func:`monitor.source.check_metrics`,
  which ``livewatch check-config`` runs.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.errors import ConfigError
from monitor.experiments.config import ExperimentConfig, check_references

__all__ = [
    "AlertsConfig",
    "Config",
    "DatabaseConfig",
    "ExecutorConfig",
    "MetricConfig",
    "MetricDefaults",
    "NoiseFloors",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(value: Any) -> timedelta:
    """Parse ``30s``, ``10m``, ``1h``, ``14d``, ``2w``, ISO 8601 (``PT1H``) or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip().upper().startswith("P"):  # ISO 8601, e.g. PT1H
        try:
            return timedelta(seconds=pd.Timedelta(value.strip()).total_seconds())
        except ValueError:
            pass
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit s, m, h, d or w (e.g. 10m, 1h)"
        )
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseFloors(_Strict):
    """An anomaly alerts only if its volume and effect clear all three floors."""

    min_volume: float = Field(0.0, ge=0, description="minimum denominator (ratio) or expected count")
    min_abs_effect: float = Field(0.0, ge=0, description="minimum |observed - expected| in metric units")
    min_rel_effect: float = Field(0.0, ge=0, description="minimum |observed - expected| / expected")


class MetricDefaults(_Strict):
    """Every metric setting with a default; the one place where defaults live."""

    time_column: str = "ts"
    granularity: Duration = timedelta(hours=1)
    completeness_delay: Duration = timedelta(minutes=10)
    history: Duration = timedelta(days=56)
    series_dimension: str = "region"
    slice_dimensions: tuple[str, ...] = ()
    direction: Literal["up", "down", "both"] = "both"
    threshold: float = Field(4.0, gt=0, description="|score| in sigmas above which a point is anomalous")
    interval_width: float = Field(0.99, gt=0, lt=1)
    noise_floors: NoiseFloors = NoiseFloors()


class SqlSource(_Strict):
    """Either a table name or a SELECT that uses the bound parameters ``:start`` and ``:end``."""

    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of 'table' or 'query'")
        if self.table is not None and not all(_IDENTIFIER.match(p) for p in self.table.split(".")):
            raise ValueError(f"table {self.table!r} is not a plain identifier (schema.table allowed)")
        if self.query is not None and not (":start" in self.query and ":end" in self.query):
            raise ValueError("query must filter on the bound parameters :start and :end")
        return self


class MetricConfig(_Strict):
    """One monitored metric. Fields left unset inherit from :class:`MetricDefaults`."""

    name: str
    description: str = ""
    source: SqlSource
    kind: Literal["count", "ratio"]
    value: str | None = Field(None, description="column summed, for kind=count")
    numerator: str | None = None
    denominator: str | None = None
    scale: float = Field(1.0, gt=0, description="multiplier of a ratio, e.g. 1000 for 'per 1k views'")
    unit: str = ""
    time_column: str | None = None
    granularity: Duration | None = None
    completeness_delay: Duration | None = None
    history: Duration | None = None
    series_dimension: str | None = None
    slice_dimensions: tuple[str, ...] | None = None
    direction: Literal["up", "down", "both"] | None = None
    threshold: float | None = Field(None, gt=0)
    interval_width: float | None = Field(None, gt=0, lt=1)
    noise_floors: NoiseFloors | None = None

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

    def resolved(self, defaults: MetricDefaults) -> MetricConfig:
        """A copy where every unset field takes the default."""
        updates = {
            name: getattr(defaults, name)
            for name in MetricDefaults.model_fields
            if getattr(self, name) is None
        }
        return self.model_copy(update=updates)

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


class DatabaseConfig(_Strict):
    url: str = Field(description="SQLAlchemy URL; put passwords in ${ENV_VARS}")
    schema_name: str | None = Field(None, alias="schema")


class RouteConfig(_Strict):
    """A node of the route tree (Alertmanager style): first matching child wins unless ``continue``."""

    match: dict[Literal["metric", "region", "severity", "kind"], str | list[str]] = {}
    channel: str | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue")
    routes: tuple[RouteConfig, ...] = ()


class SlackConfig(_Strict):
    token_env: str = Field("SLACK_BOT_TOKEN", description="name of the env var holding the bot token")
    webhook_env: str = Field("SLACK_WEBHOOK_URL", description="env var of an incoming-webhook URL (no bot)")
    api_url: str = "https://slack.com/api/"
    default_channel: str = "#livewatch-alerts"
    timeout: Duration = timedelta(seconds=10)


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
    jsonl_path: str | None = "livewatch-alerts.jsonl"
    resolve_after: int = Field(3, ge=1, description="clean buckets before an incident resolves")
    repeat_interval: Duration = timedelta(hours=4)
    group_window: Duration = timedelta(hours=2)
    routes: tuple[RouteConfig, ...] = ()
    windows: tuple[WindowConfig, ...] = ()


class ExecutorConfig(_Strict):
    type: Literal["local", "dask"] = "local"
    workers: int | None = Field(None, ge=1, description="local process pool size; default all cores")
    address: str | None = Field(None, description="dask scheduler, e.g. tcp://scheduler:8786")

    @model_validator(mode="after")
    def _dask_needs_address(self) -> ExecutorConfig:
        if self.type == "dask" and not self.address:
            raise ValueError("executor type 'dask' needs 'address' (e.g. tcp://scheduler:8786)")
        return self


class SchedulerConfig(_Strict):
    refit_every: Duration = timedelta(days=1)
    max_catchup: Duration = timedelta(days=14)
    misfire_grace: Duration = timedelta(minutes=5)
    metrics_port: int | None = Field(9108, ge=0, le=65535)


class Config(_Strict):
    """The whole ``config.yaml``."""

    version: Literal[1] = 1
    database: DatabaseConfig
    state: DatabaseConfig = DatabaseConfig(url="sqlite:///livewatch-state.db")
    regions: dict[str, str] = Field(
        default_factory=dict, description="series value -> ISO country code for holidays"
    )
    defaults: MetricDefaults = MetricDefaults()
    metrics: tuple[MetricConfig, ...]
    alerts: AlertsConfig = AlertsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    executor: ExecutorConfig = ExecutorConfig()
    experiments: tuple[ExperimentConfig, ...] = ()

    @model_validator(mode="after")
    def _resolve_and_check(self) -> Config:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate metric names {dupes}: names identify metrics and must be unique")
        resolved = tuple(m.resolved(self.defaults) for m in self.metrics)
        object.__setattr__(self, "metrics", resolved)
        known = set(names)
        for where, match in self._matchers():
            wanted = match.get("metric")
            for metric in [wanted] if isinstance(wanted, str) else (wanted or []):
                if metric not in known:
                    raise ValueError(
                        f"{where}.match.metric: unknown metric {metric!r} (known: {sorted(known)})"
                    )
        problems = check_references(self.experiments, resolved)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _matchers(self) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []

        def walk(routes: tuple[RouteConfig, ...], prefix: str) -> None:
            for i, route in enumerate(routes):
                found.append((f"{prefix}[{i}]", {str(k): v for k, v in route.match.items()}))
                walk(route.routes, f"{prefix}[{i}].routes")

        walk(self.alerts.routes, "alerts.routes")
        found.extend(
            (f"alerts.windows[{i}]", {str(k): v for k, v in w.match.items()})
            for i, w in enumerate(self.alerts.windows)
        )
        return found

    def metric(self, name: str) -> MetricConfig:
        """The metric called ``name``; a :class:`ConfigError` lists the valid names otherwise."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise ConfigError(
            [f"unknown metric {name!r}; configured metrics: {', '.join(m.name for m in self.metrics)}"]
        )


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


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[", "tagged-union")):
            text += f".{part}" if text else str(part)
    return text


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
        lines = []
        for error in exc.errors():
            where = _format_loc(error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; check the spelling (see config.yaml reference in README.md)"
            elif error["type"] == "missing":
                message = "required key is missing"
            lines.append(_secret_free(f"{where}: {message}", secrets))
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
