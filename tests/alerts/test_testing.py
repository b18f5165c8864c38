"""The shipped test helpers: in-memory ports pass the contract checks monitor.store will also run."""

from __future__ import annotations

import pytest

from alerts.model import DeliveryStatus
from alerts.ports import (
    ActionLog,
    ChannelDirectory,
    FalsePositiveRepository,
    IncidentRepository,
    Outbox,
    SilenceRepository,
    StepLog,
    UserGroupDirectory,
)
from alerts.steps import StepRecord
from alerts.testing import (
    InMemoryActionLog,
    InMemoryChannelDirectory,
    InMemoryFalsePositives,
    InMemoryIncidentRepository,
    InMemoryOutbox,
    InMemorySilenceRepository,
    InMemoryStepLog,
    StaticUserGroups,
    UnknownNotificationError,
    check_action_log,
    check_channel_directory,
    check_false_positive_repository,
    check_incident_repository,
    check_outbox,
    check_silence_repository,
    check_step_log,
)


def test_in_memory_ports_satisfy_the_protocols_and_contracts() -> None:
    incidents, outbox, silences = InMemoryIncidentRepository(), InMemoryOutbox(), InMemorySilenceRepository()
    assert isinstance(incidents, IncidentRepository)
    assert isinstance(outbox, Outbox)
    assert isinstance(silences, SilenceRepository)
    check_incident_repository(incidents)
    check_outbox(outbox)
    check_silence_repository(silences)


def test_contract_check_catches_a_broken_outbox() -> None:
    class ForgetsThreads(InMemoryOutbox):
        def thread_for(self, incident_id: str, receiver: str) -> None:
            return None

    with pytest.raises(AssertionError, match="mark_delivered\\(\\) records the thread"):
        check_outbox(ForgetsThreads())


def test_outbox_names_unknown_ids() -> None:
    with pytest.raises(UnknownNotificationError, match="'n1' is not in the outbox"):
        InMemoryOutbox().mark_sending("n1", None)  # type: ignore[arg-type]
    assert DeliveryStatus("pending") is DeliveryStatus.PENDING


def test_in_memory_versions_of_the_new_ports_satisfy_their_contracts() -> None:
    steps, channels = InMemoryStepLog(), InMemoryChannelDirectory()
    actions, fps, groups = InMemoryActionLog(), InMemoryFalsePositives(), StaticUserGroups({"S1": ["U1"]})
    assert isinstance(steps, StepLog) and isinstance(channels, ChannelDirectory)
    assert isinstance(actions, ActionLog) and isinstance(fps, FalsePositiveRepository)
    assert isinstance(groups, UserGroupDirectory) and groups.members("S1") == {"U1"}
    check_step_log(steps)
    check_channel_directory(channels)
    check_action_log(actions)
    check_false_positive_repository(fps)


def test_contract_check_catches_a_step_log_that_reorders() -> None:
    class Newest(InMemoryStepLog):
        def steps_for(self, notification_id: str) -> list[StepRecord]:
            return list(reversed(super().steps_for(notification_id)))

    with pytest.raises(AssertionError, match="insertion order"):
        check_step_log(Newest())
