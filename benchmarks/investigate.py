"""How long `livewatch investigate` takes on the demo, CLI process included (goal: under 3 s per call).

Run from the repository root::

    python benchmarks/investigate.py [--workdir DIR] [--calls 5] [--metric user_reports] [--region MX]

In ``--workdir`` (default ``./.bench-investigate``) it builds the demo warehouse and runs one
``livewatch run --once`` so models are stored (skipped when already there), then times ``--calls``
separate ``livewatch investigate METRIC --region R --at T`` processes end to end (interpreter start,
imports, config, warehouse query, scoring with the stored model, rendering) and prints::

    investigate: median <s> s per call (CLI process included)

plus the CPU time per call (what the call costs when the cores are shared) and the start-up time of the CLI
alone (``python -X importtime`` is the tool to dig further).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 3.0


def _livewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    command = [sys.executable, "-c", "from monitor.cli.main import main; main()", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _prepare(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    if not config.exists():
        shutil.copy(ROOT / "config.yaml", config)
    if not (workdir / "livewatch-demo.db").exists():
        print("building the demo warehouse ...", flush=True)
        _check(_livewatch("demo", "init", "--db", "livewatch-demo.db", cwd=workdir))
    if not (workdir / "livewatch-state.db").exists():
        print("one `livewatch run --once` so models are stored ...", flush=True)
        _check(_livewatch("run", "--once", "--metrics-port", "-1", cwd=workdir), allow=(0, 1))


def _check(done: subprocess.CompletedProcess[str], allow: tuple[int, ...] = (0,)) -> None:
    if done.returncode not in allow:
        sys.exit(f"failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(args: list[str], cwd: Path, cpu: list[float] | None = None) -> float:
    began, cpu_began = time.perf_counter(), _cpu()
    done = _livewatch(*args, cwd=cwd)
    elapsed = time.perf_counter() - began
    if cpu is not None:
        cpu.append(_cpu() - cpu_began)
    _check(done)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-investigate")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--metric", default="user_reports")
    parser.add_argument("--region", default="MX")
    parser.add_argument("--hours-ago", type=int, default=6, help="--at this many hours before this hour")
    options = parser.parse_args()
    _prepare(options.workdir)
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=options.hours_ago)
    args = ["investigate", options.metric, "--region", options.region, "--at", f"{at:%Y-%m-%dT%H:%MZ}"]
    startup = statistics.median(_time(["--help"], options.workdir) for _ in range(3))
    cpu: list[float] = []
    times = [_time(args, options.workdir, cpu) for _ in range(options.calls)]
    median = statistics.median(times)
    print(f"calls: {', '.join(f'{t:.2f}' for t in times)} s; CLI startup (--help): {startup:.2f} s")
    # On shared cores wall time includes waiting for a core; CPU time (user + sys) is what the call costs.
    print(f"CPU time: median {statistics.median(cpu):.2f} s per call; load average {os.getloadavg()[0]:.1f}")
    print(f"investigate: median {median:.2f} s per call (CLI process included)")
    verdict = "meets" if median < GOAL_SECONDS else "misses"
    print(f"{verdict} the goal of {GOAL_SECONDS:g} s")


if __name__ == "__main__":
    main()
