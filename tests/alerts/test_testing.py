"""The shipped test helpers: in-memory ports pass the contract checks monitor.store will also run."""

from __future__ import annotations

import pytest

from alerts.model import DeliveryStatus
from alerts.ports import IncidentRepository, Outbox, SilenceRepository
from alerts.testing import (
    InMemoryIncidentRepository,
    InMemoryOutbox,
    InMemorySilenceRepository,
    UnknownNotificationError,
    check_incident_repository,
    check_outbox,
    check_silence_repository,
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
