"""Commands that do not forecast start without the heavy libraries (each one costs 0.3-1.3 s per call).

Run in a fresh interpreter, since this test process has imported them all already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Loaded only by the commands that need them: fits, changepoints, scale-out, charts.
HEAVY = ("prophet", "cmdstanpy", "ruptures", "scipy.stats", "dask", "distributed", "matplotlib")

PROBE = """
import json, sys
from monitor.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="livewatch")
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, sorted(m for m in {heavy} if m in sys.modules)]))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["incidents", "list", "--config", "{config}"],
        ["silence", "list", "--config", "{config}"],
    ],
)
def test_command_does_not_import_heavy_libraries(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        (REPO / "config.yaml")
        .read_text()
        .replace("sqlite:///livewatch-state.db", f"sqlite:///{tmp_path / 'state.db'}")
    )
    argv = [a.format(config=config) for a in args]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code in (0, None), done.stderr
    assert loaded == [], f"livewatch {' '.join(args)} imported {loaded}; import them where they are used"
