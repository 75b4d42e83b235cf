"""Event ids the advisor derives: UUIDv7, the same for the same input (dedupe)."""

from __future__ import annotations

import uuid

from services.advisor.jobs import advised_id
from services.advisor.service import seed_id
from services.runtime.ids import IdGenerator


def test_advised_id_is_a_uuid7_of_the_submitted_millisecond() -> None:
    submitted = IdGenerator().new()
    first, again = advised_id(submitted), advised_id(submitted)
    assert first == again != submitted  # a redelivery gets the same id: JetStream drops it
    assert uuid.UUID(first).version == 7
    assert uuid.UUID(first).int >> 80 == uuid.UUID(submitted).int >> 80  # same millisecond
    assert advised_id(IdGenerator().new()) != first


def test_advised_id_of_any_submitted_id() -> None:
    """Ids from other publishers need not be UUIDs, even ones shaped like a UUIDv7."""
    odd = ["job-1", "", "zzzzzzzzzzzz7zzzzzzzzzzzzzzzzzzz", "0" * 32]
    ids = [advised_id(i) for i in odd]
    assert ids == [advised_id(i) for i in odd] and len(set(ids)) == len(odd)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_seed_ids_are_deterministic_uuid7s() -> None:
    ids = [seed_id(p) for p in ("modal", "replicate", "modal")]
    assert ids[0] == ids[2] != ids[1]
    assert all(uuid.UUID(i).version == 7 for i in ids)
