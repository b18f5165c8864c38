"""The deployment examples stay valid: every example config loads (dialects need not be installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.config import load_config, parse_config
from monitor.errors import ConfigError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("name", ["config.postgres.yaml", "config.trino.yaml", "config.snowflake.yaml"])
def test_example_configs_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LIVEWATCH_DB_PASSWORD", "TRINO_PASSWORD", "SNOWFLAKE_PASSWORD"):
        monkeypatch.setenv(var, "secret")
    try:
        config = load_config(DEPLOY / name)
    except ConfigError as exc:
        # Trino / Snowflake dialects are optional extras: without them only the URL's dialect is refused,
        # and the rest of the file must be valid.
        assert "unknown database dialect" in str(exc) and "needs its package installed" in str(exc)
        data = yaml.safe_load((DEPLOY / name).read_text())
        dialect = data["database"]["url"].split("://")[0]
        data["database"]["url"] = "sqlite:///placeholder.db"
        config = parse_config(data)
        assert dialect in {"trino", "snowflake"}
    assert config.logging.format == "json" and config.scheduler.metrics_address == "0.0.0.0"
    assert config.state.url.startswith("postgresql+psycopg://")
    assert config.database.url.split("://")[0] in {"postgresql+psycopg", "trino", "snowflake", "sqlite"}


def test_dockerfile_and_unit_run_the_daemon() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    unit = (DEPLOY / "livewatch.service").read_text()
    assert '".[postgres]"' in dockerfile and '"run"' in dockerfile
    assert "ExecStart=/opt/livewatch/bin/livewatch --log-format json run" in unit


def test_version_option() -> None:
    from click.testing import CliRunner

    from monitor.cli.main import cli

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("livewatch ")


def test_demo_url_takes_a_path_or_any_url() -> None:
    from monitor.tools.demo import demo_url

    assert demo_url("demo.db").render_as_string() == "sqlite:///demo.db"
    assert demo_url("postgresql+psycopg://lw@db/wh").get_backend_name() == "postgresql"
    assert demo_url("trino://lw@host:443/hive/x").get_backend_name() == "trino"


def test_demo_init_with_a_sqlite_url(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli.main import cli

    target = tmp_path / "w.db"
    result = CliRunner().invoke(
        cli, ["demo", "init", "--db", f"sqlite:///{target}", "--days", "3", "--end", "2026-02-01T00:00Z"]
    )
    assert result.exit_code == 0, result.output
    assert target.exists() and f"to sqlite:///{target}" in result.stdout
