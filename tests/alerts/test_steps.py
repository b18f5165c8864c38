"""The per-step state machine of exactly-once delivery: a table of (step, last record, lookup) cases."""

from __future__ import annotations

import pytest

from alerts.steps import (
    LookupOutcome,
    StepAction,
    StepKind,
    StepReason,
    StepRecord,
    StepStatus,
    decide_step,
    last_records,
    plan_steps,
)
from tests.alerts.factories import T0

P, U, D, R = StepKind.POST, StepKind.UPLOAD, StepKind.UPDATE, StepKind.REPLY
FOUND, ABSENT, NA = LookupOutcome.FOUND, LookupOutcome.ABSENT, LookupOutcome.UNAVAILABLE


def rec(step: StepKind, status: StepStatus | None) -> StepRecord | None:
    return None if status is None else StepRecord("n1", step, status, T0, channel="C1", ts="1.1")


CASES = [
    # (step, last status, attempted before, lookup) -> (action, reason)   # what it proves
    (P, None, False, None, StepAction.RUN, StepReason.NOT_STARTED),  # first attempt just runs
    (P, StepStatus.DONE, False, None, StepAction.SKIP, StepReason.ALREADY_DONE),  # recorded: never again
    (P, StepStatus.DONE, True, None, StepAction.SKIP, StepReason.ALREADY_DONE),  # ... even after a crash
    (U, StepStatus.SKIPPED, True, None, StepAction.SKIP, StepReason.ALREADY_DONE),  # given up for good
    (R, StepStatus.FAILED, False, None, StepAction.RUN, StepReason.FAILED_BEFORE),  # Slack said no: redo
    (P, StepStatus.STARTED, False, None, StepAction.LOOKUP, StepReason.UNCONFIRMED),  # may be in Slack
    (R, StepStatus.STARTED, False, None, StepAction.LOOKUP, StepReason.UNCONFIRMED),
    (U, StepStatus.STARTED, False, None, StepAction.LOOKUP, StepReason.UNCONFIRMED),
    (P, None, True, None, StepAction.LOOKUP, StepReason.UNCONFIRMED),  # no records but attempted: ask
    (P, StepStatus.STARTED, False, FOUND, StepAction.ADOPT, StepReason.FOUND_IN_SLACK),  # no re-post
    (U, StepStatus.STARTED, False, FOUND, StepAction.ADOPT, StepReason.FOUND_IN_SLACK),
    (R, StepStatus.STARTED, False, ABSENT, StepAction.RUN, StepReason.NOT_IN_SLACK),  # never lost
    (P, StepStatus.STARTED, False, NA, StepAction.RUN, StepReason.CANNOT_VERIFY),  # <=1 duplicate
    (D, StepStatus.STARTED, False, None, StepAction.RUN, StepReason.IDEMPOTENT_RETRY),  # same content
    (D, None, True, None, StepAction.RUN, StepReason.NOT_STARTED),  # update needs no lookup
    (D, StepStatus.DONE, True, None, StepAction.SKIP, StepReason.ALREADY_DONE),  # not re-sent once done
]


@pytest.mark.parametrize(("step", "status", "attempted", "lookup", "action", "reason"), CASES)
def test_decide_step(
    step: StepKind,
    status: StepStatus | None,
    attempted: bool,
    lookup: LookupOutcome | None,
    action: StepAction,
    reason: StepReason,
) -> None:
    decision = decide_step(step, rec(step, status), attempted_before=attempted, lookup=lookup)
    assert (decision.step, decision.action, decision.reason) == (step, action, reason)


@pytest.mark.parametrize(
    ("has_thread", "has_chart", "plan"),
    [(False, True, (P, U)), (False, False, (P,)), (True, True, (D, R)), (True, False, (D, R))],
)
def test_plan_steps(has_thread: bool, has_chart: bool, plan: tuple[StepKind, ...]) -> None:
    assert plan_steps(has_thread=has_thread, has_chart=has_chart) == plan


def test_last_record_per_step_wins_and_records_round_trip() -> None:
    started, done = rec(P, StepStatus.STARTED), rec(P, StepStatus.DONE)
    upload = StepRecord("n1", U, StepStatus.DONE, T0, "C1", "1.1", "F1")
    assert started is not None and done is not None
    assert last_records([started, upload, done]) == {P: done, U: upload}
    assert StepRecord.from_dict(upload.to_dict()) == upload
