"""Crash-recovery sweep: ``kill -9`` a Slack catch-up at every Slack request, restart, count the damage.

    .venv/bin/python benchmarks/crash.py [--modes history,no-history] [--when before,after] [--double N]
                                          [--limit N]

The catch-up is ``livewatch run --once`` over the tiny warehouse of :mod:`tests.monitor.daemon_helpers`
(2 incidents, 6 notifications, 17 Slack requests) against the loopback Slack fake in strict mode, the
channel addressed by name. For each Slack mode (token with the history scopes; without them) and each
request N of the uninterrupted run, the fake kills the process at request N, *before* the request takes
effect or *after* applying it without answering, and the same command runs again. ``--double N`` also
kills each of the first N recovery runs at every one of their first N requests (a crash during
recovery) before the final run.

Per kill point, what the channel shows is compared with the uninterrupted run: *lost* = posts, replies,
chart files or distinct edits missing; *duplicated* = extra ones. Without history scopes the documented
fallback allows exactly one duplicate per kill that hit an accepted new message or file (post, thread
reply, chart share); the sweep reports those separately as *allowed* and fails on anything else.

The last line is ``crash: <N> kill points, lost <L>, duplicated <D>`` (D counts every duplicate,
allowed ones included; ``unexpected`` ones are in the line before).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor.store import upgrade  # noqa: E402
from tests.monitor.daemon_helpers import (  # noqa: E402
    SLACK_MODES,
    CrashOutcome,
    KillingSlack,
    build_warehouse,
    reference_run,
    run_kill_point,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(SLACK_MODES), help="Slack modes (comma-separated).")
    parser.add_argument("--when", default="before,after", help="Kill moments (comma-separated).")
    parser.add_argument("--double", type=int, default=0, help="Also kill recovery runs at requests 1..N.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N requests as kill points.")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    moments = [w for w in args.when.split(",") if w]
    unknown = [m for m in modes if m not in SLACK_MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; known: {sorted(SLACK_MODES)}")

    began = time.monotonic()
    outcomes: list[CrashOutcome] = []
    fake = KillingSlack()
    fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="livewatch-crash-") as scratch:
            root = Path(scratch)
            warehouse = build_warehouse(root / "wh.db")
            template = root / "template.db"
            upgrade(f"sqlite:///{template}")
            for mode in modes:
                reference, methods = reference_run(fake, root, warehouse, mode)
                count = len(methods) if args.limit is None else min(args.limit, len(methods))
                points: list[tuple[int, str, list[tuple[int, str]]]] = []
                for at in range(1, count + 1):
                    for when in moments:
                        points.append((at, when, []))
                        for second in range(1, args.double + 1):
                            points += [(at, when, [(second, w)]) for w in moments]
                for at, when, then in points:
                    outcome = run_kill_point(
                        fake,
                        root,
                        warehouse,
                        reference,
                        mode=mode,
                        at=at,
                        when=when,
                        then=then,
                        template=template,
                    )
                    outcomes.append(outcome)
                    chain = f"{at}/{when}" + "".join(f" then {n}/{w}" for n, w in then)
                    print(
                        f"{mode:10} kill at {chain:24} ({outcome.method}): kills {outcome.kills}, "
                        f"lost {outcome.lost}, duplicated {outcome.duplicated} "
                        f"(allowed {outcome.expected_duplicates}), {outcome.seconds:.1f} s"
                        + ("" if outcome.ok else "  <-- UNEXPECTED"),
                        flush=True,
                    )
    finally:
        fake.stop()

    for mode in modes:
        mine = [o for o in outcomes if o.mode == mode]
        print(
            f"{mode}: {len(mine)} kill points ({sum(o.kills for o in mine)} kills), "
            f"lost {sum(o.lost for o in mine)}, duplicated {sum(o.duplicated for o in mine)} "
            f"(allowed by the mode's guarantee {sum(o.expected_duplicates for o in mine)})"
        )
    unexpected = [o for o in outcomes if not o.ok]
    print(f"unexpected outcomes: {len(unexpected)}; {time.monotonic() - began:.0f} s")
    lost = sum(o.lost for o in outcomes)
    duplicated = sum(o.duplicated for o in outcomes)
    print(f"crash: {len(outcomes)} kill points, lost {lost}, duplicated {duplicated}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
