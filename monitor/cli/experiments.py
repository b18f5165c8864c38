"""``livewatch experiments list | show NAME [--chart PNG] [--json]``: experiment guardrails on demand.

Each command evaluates the configured experiments against the warehouse as of ``--at`` (default: now,
the last complete hour), with the same code the tick runs (:mod:`monitor.experiments.evaluate`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.console import Console
from rich.table import Table

from monitor.cli.options import parse_time, utc_now, with_config
from monitor.config import Config, load_config
from monitor.errors import ConfigError, LivewatchError
from monitor.experiments.evaluate import ExperimentEvaluation, GuardrailEvaluation, evaluate_experiment
from monitor.experiments.source import SqlExperimentSource

__all__ = ["evaluation_payload", "experiments"]


def _console() -> Console:
    return Console(width=max(Console().width, 120), soft_wrap=False)


def _num(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%" if math.isfinite(value) else "-"


def _evaluate(config: Config, name: str, at: pd.Timestamp) -> ExperimentEvaluation:
    from monitor.wiring import make_engine

    matches = [e for e in config.experiments if e.name == name]
    if not matches:
        known = ", ".join(e.name for e in config.experiments) or "none configured"
        raise ConfigError([f"unknown experiment {name!r}; configured experiments: {known}"])
    source = SqlExperimentSource(make_engine(config.database), schema=config.database.schema_name)
    metrics = {m.name: m for m in config.metrics}
    return evaluate_experiment(matches[0], metrics, source, at.to_pydatetime())


def _at(text: str | None) -> pd.Timestamp:
    return pd.Timestamp(parse_time(text, now=utc_now()) if text else utc_now()).floor("h")


def _guardrail_payload(guardrail: GuardrailEvaluation, segments: tuple[str, ...]) -> dict[str, Any]:
    latest = guardrail.latest
    first = guardrail.first_harm()
    breakdown = guardrail.breakdown(segments)
    return {
        "metric": guardrail.spec.metric,
        "treatment": guardrail.spec.treatment,
        "control": guardrail.spec.control,
        "direction": guardrail.spec.direction,
        "min_effect": guardrail.spec.min_effect,
        "decision": str(latest.decision),
        "reason": latest.reason,
        "effect": _num(latest.effect),
        "lower": _num(latest.lower),
        "upper": _num(latest.upper),
        "ruled_out_beyond": _num(latest.ruled_out_beyond),
        "treatment_rate": _num(latest.treatment_rate),
        "control_rate": _num(latest.control_rate),
        "variance_reduction": _num(latest.variance_reduction),
        "first_harm": None if first is None else first.isoformat(),
        "timeline": [
            {
                "ts": r.ts.isoformat(),
                "effect": _num(r.effect),
                "lower": _num(r.lower),
                "upper": _num(r.upper),
                "decision": str(r.decision),
            }
            for r in guardrail.timeline
        ],
        "segments": [
            {
                "segment": str(row["segment"]),
                "value": str(row["value"]),
                "effect": _num(row["effect"]),
                "lower": _num(row["lower"]),
                "upper": _num(row["upper"]),
                "decision": str(row["decision"]),
                "share": _num(row["share"]),
            }
            for _, row in breakdown.iterrows()
        ],
    }


def evaluation_payload(evaluation: ExperimentEvaluation) -> dict[str, Any]:
    """The JSON document of ``experiments show --json``."""
    experiment = evaluation.experiment
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "control": experiment.control,
        "split": dict(experiment.split),
        "launch": evaluation.launch.isoformat(),
        "evaluated_to": evaluation.end.isoformat(),
        "units": evaluation.units,
        "srm": {
            "mismatch": evaluation.srm.mismatch,
            "p_value": _num(evaluation.srm.p_value),
            "counts": evaluation.srm.counts,
            "expected_share": evaluation.srm.expected_share,
            "reason": evaluation.srm.reason,
        },
        "guardrails": [_guardrail_payload(g, experiment.segments) for g in evaluation.guardrails],
    }


def _chart(evaluation: ExperimentEvaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guardrails = evaluation.guardrails
    fig, axes = plt.subplots(
        len(guardrails), 1, figsize=(10, 3 * len(guardrails)), sharex=True, squeeze=False
    )
    for ax, guardrail in zip(axes[:, 0], guardrails, strict=True):
        ts = [r.ts.to_pydatetime() for r in guardrail.timeline]
        effect = [100 * r.effect for r in guardrail.timeline]
        lower = [100 * max(r.lower, -1.0) for r in guardrail.timeline]
        upper = [100 * min(r.upper, 10.0) for r in guardrail.timeline]
        ax.fill_between(ts, lower, upper, alpha=0.25, label="always-valid interval")
        ax.plot(ts, effect, label="effect")
        ax.axhline(0, color="black", linewidth=0.8)
        sign = 1 if guardrail.spec.direction == "up" else -1
        ax.axhline(
            100 * sign * guardrail.spec.min_effect,
            color="red",
            linestyle="--",
            linewidth=0.8,
            label="min effect",
        )
        first = guardrail.first_harm()
        if first is not None:
            ax.axvline(first.to_pydatetime(), color="red", linewidth=1.0, label="harm")
        finite = [abs(e) for e in effect if math.isfinite(e)]
        ax.set_ylim(
            -min(100.0, max(30.0, 3 * max(finite, default=10.0))), max(30.0, 3 * max(finite, default=10.0))
        )
        ax.set_ylabel("% vs control")
        ax.set_title(
            f"{guardrail.spec.metric}: {guardrail.spec.treatment} vs {guardrail.spec.control} "
            f"({guardrail.latest.decision})"
        )
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"experiment {evaluation.experiment.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.group("experiments")
def experiments() -> None:
    """Experiment guardrails: is a treatment arm raising harmful content?"""


@experiments.command("list")
@with_config
@click.option("--at", "at_text", default=None, help="Evaluate as of this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def experiments_list(config_path: Path, at_text: str | None, as_json: bool) -> None:
    """Every configured experiment with its guardrail decisions and SRM check."""
    config = load_config(config_path)
    at = _at(at_text)
    rows: list[dict[str, Any]] = []
    for experiment in config.experiments:
        try:
            evaluation = _evaluate(config, experiment.name, at)
        except (LivewatchError, ValueError) as exc:
            rows.append({"experiment": experiment.name, "error": str(exc)})
            continue
        rows.append(
            {
                "experiment": experiment.name,
                "launch": evaluation.launch.isoformat(),
                "units": evaluation.units,
                "srm_mismatch": evaluation.srm.mismatch,
                "guardrails": {
                    f"{g.spec.metric}/{g.spec.treatment}": str(g.latest.decision)
                    for g in evaluation.guardrails
                },
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} experiment(s) as of {at:%Y-%m-%d %H:%M} UTC", title_justify="left")
    for column in ("experiment", "launch (UTC)", "units", "SRM", "guardrails"):
        table.add_column(column)
    for row in rows:
        if "error" in row:
            table.add_row(row["experiment"], "-", "-", "-", f"error: {row['error']}")
            continue
        table.add_row(
            row["experiment"],
            row["launch"][:16].replace("T", " "),
            ", ".join(f"{arm} {n}" for arm, n in row["units"].items()),
            "MISMATCH" if row["srm_mismatch"] else "ok",
            ", ".join(f"{k}: {v}" for k, v in row["guardrails"].items()),
        )
    _console().print(table)


@experiments.command("show")
@click.argument("name")
@with_config
@click.option("--at", "at_text", default=None, help="Evaluate as of this time (default: now).")
@click.option(
    "--chart",
    "chart_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG of the effect and its interval over time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def experiments_show(
    name: str, config_path: Path, at_text: str | None, chart_path: Path | None, as_json: bool
) -> None:
    """One experiment: effect over time with its interval, decision, power, segments, SRM."""
    config = load_config(config_path)
    evaluation = _evaluate(config, name, _at(at_text))
    if chart_path is not None:
        _chart(evaluation, chart_path)
    payload = evaluation_payload(evaluation)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    console = _console()
    console.print(
        f"experiment {name}: launched {evaluation.launch:%Y-%m-%d %H:%M} UTC, evaluated to "
        f"{evaluation.end:%Y-%m-%d %H:%M} UTC; units {payload['units']}"
    )
    console.print(f"SRM: {evaluation.srm.reason}")
    table = Table(title="guardrails", title_justify="left")
    for column in (
        "metric",
        "arm",
        "decision",
        "effect",
        "interval",
        "ruled out beyond",
        "CUPED",
        "first harm",
    ):
        table.add_column(column)
    for g in payload["guardrails"]:
        latest = next(
            x
            for x in evaluation.guardrails
            if x.spec.metric == g["metric"] and x.spec.treatment == g["treatment"]
        ).latest
        table.add_row(
            g["metric"],
            g["treatment"],
            g["decision"],
            _pct(latest.effect),
            f"[{_pct(latest.lower)}, {_pct(latest.upper)}]",
            _pct(latest.ruled_out_beyond),
            f"-{100 * latest.variance_reduction:.0f}% var"
            if math.isfinite(latest.variance_reduction)
            else "-",
            (g["first_harm"] or "-")[:16].replace("T", " "),
        )
    console.print(table)
    for g in payload["guardrails"]:
        harmful = [s for s in g["segments"] if (s["share"] or 0) > 0][:5]
        if g["decision"] == "harm" and harmful:
            console.print(
                f"{g['metric']} / {g['treatment']}: harm carried by "
                + ", ".join(
                    f"{s['segment']}={s['value']} ({100 * s['share']:.0f}%, {s['decision']})" for s in harmful
                )
            )
    if chart_path is not None:
        console.print(f"chart written to {chart_path}")
