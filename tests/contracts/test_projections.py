"""The projection contract, run against every projection in ``services.cli.PROJECTIONS``.

A projection is a pure fold: the same log gives the same state, byte for byte;
it ignores events it does not fold (a replay feeds it the whole log); a
snapshot of its state at any position plus the events after it gives the
state a rebuild from zero gives; and a snapshot that cannot be trusted
(truncated, corrupted, another code version, another initial state) is not
loaded. A projection added to the registry is held to all of it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas import Event, make_event
from schemas.adapters import AdapterStatusChanged, AdapterSubmitted
from schemas.advisor import QueueDepthChanged
from schemas.flags import ENABLE_COMPUTE, ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from schemas.providers import ProviderProfile, ProviderRemoved, ProviderUpserted
from services.cli import PROJECTIONS
from services.runtime.projection import Projection, Projector, state_hash
from services.runtime.snapshots import Snapshots
from tests.advisor.factories import gpu, sample
from tests.advisor.service_support import PROFILE
from tests.support import lifecycle


class _Ids:
    """Just what ``tests.support.lifecycle`` asks of a bus: deterministic events."""

    def __init__(self) -> None:
        self.n = 0

    def event(self, data: msgspec.Struct, *, key: str, causation: Event | None = None) -> Event:
        self.n += 1
        eid = f"evt-{self.n:06d}"
        return make_event(data, id=eid, key=key, ts=1_700_000_000.0 + self.n, source="test",
                          correlation_id=causation.id if causation else eid,
                          causation_id=causation.id if causation else None)  # fmt: skip


def mixed_log() -> list[tuple[int, Event]]:
    """Every kind of event a projection folds, interleaved, with the positions a
    store would give them (1, 2, 3, ...)."""
    ids = _Ids()
    events: list[Event] = []
    profile = msgspec.convert(PROFILE, ProviderProfile)
    for i in range(12):
        events += lifecycle(ids, f"job-{i % 5}")  # type: ignore[arg-type]
        events.append(ids.event(sample(gpu(free_mib=(i + 1) * 1024), sample_id=f"s{i}"),
                                key="host"))  # fmt: skip
        events.append(
            ids.event(
                ProviderUpserted(profile=msgspec.structs.replace(profile, id=f"box-{i % 3}")),
                key=f"box-{i % 3}",
            )
        )
        if i % 4 == 3:
            events.append(ids.event(ProviderRemoved(id=f"box-{i % 3}"), key=f"box-{i % 3}"))
        events.append(ids.event(FlagsChanged(flags={ENABLE_COMPUTE: i % 2 == 0,
                                                    ENABLE_PUBLIC_GPU_ADAPTERS: i % 3 == 0}),
                                key="flags"))  # fmt: skip
        events.append(ids.event(QueueDepthChanged(depth=i), key="remote"))
        events.append(
            ids.event(
                AdapterSubmitted(
                    provider="runpod",
                    dry_run=i % 2 == 0,
                    ok=True,
                    remote_id=f"rp-{i}",
                    job_id=f"job-{i % 5}",
                    status="queued",
                    instance=f"inst-{i % 2}",
                ),
                key=f"job-{i}",
            )
        )
        events.append(ids.event(AdapterStatusChanged(
            provider="runpod", dry_run=i % 2 == 0, remote_id=f"rp-{i // 2}", status="running",
            artifacts=[f"a{i}"], instance="inst-0"), key=f"job-{i}"))  # fmt: skip
    return list(enumerate(events, start=1))


def build(name: str) -> Projection[Any]:
    module, _, attr = PROJECTIONS[name].partition(":")
    projection: Projection[Any] = getattr(importlib.import_module(module), attr)()
    return projection


def fold(projection: Projection[Any], log: list[tuple[int, Event]]) -> Projector[Any]:
    projector = Projector(projection)
    for seq, event in log:
        projector.apply(seq, event)
    return projector


@pytest.fixture(params=sorted(PROJECTIONS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_registry_holds_every_projection_a_service_follows() -> None:
    assert {"jobs", "providers", "advisor", "adapters"} <= set(PROJECTIONS)


def test_replaying_twice_gives_the_same_hash(name: str) -> None:
    log = mixed_log()
    first, second = fold(build(name), log), fold(build(name), log)
    assert first.hash() == second.hash()
    assert first.position == second.position == len(log)
    assert first.hash() != Projector(build(name)).hash(), "the log changes nothing?"


def test_snapshot_plus_tail_is_the_rebuild_from_zero(name: str, tmp_path: Path) -> None:
    log = mixed_log()
    whole = fold(build(name), log).hash()
    snapshots = Snapshots(tmp_path)
    for cut in (0, 1, 7, len(log) // 3, len(log) // 2, len(log) - 1, len(log)):
        projection = build(name)
        head = fold(projection, log[:cut])
        initial = state_hash(projection.to_builtins(projection.initial()))
        snapshots.save(name, projection.version, initial, head.position, None, head.snapshot())
        loaded = snapshots.load(name, projection.version, initial)
        assert loaded is not None and loaded.position == cut
        restored = Projector(build(name))
        restored.reset(restored.projection.from_builtins(loaded.state), loaded.position)
        assert restored.hash() == head.hash(), f"round trip at {cut}"
        for seq, event in log[cut:]:
            restored.apply(seq, event)
        assert restored.hash() == whole, f"snapshot at {cut} plus the tail"


def _corruptions(data: bytes) -> dict[str, bytes]:
    head, _, body = data.partition(b"\n")
    flipped = bytearray(body)
    flipped[len(flipped) // 2] ^= 0x01
    return {
        "empty": b"",
        "truncated": data[: len(data) - 10],
        "header only": head + b"\n",
        "a flipped bit": head + b"\n" + bytes(flipped),
        "no header": body,
        "garbage header": b"{" * 5000 + b"\n" + body,
        "not JSON": b"\xff\xfe" * 100,
    }


def test_a_snapshot_that_cannot_be_trusted_is_not_loaded(name: str, tmp_path: Path) -> None:
    projection = build(name)
    head = fold(projection, mixed_log())
    initial = state_hash(projection.to_builtins(projection.initial()))
    snapshots = Snapshots(tmp_path)
    snapshots.save(name, projection.version, initial, head.position, "e", head.snapshot())
    path = snapshots.path(name, projection.version)
    good = path.read_bytes()
    assert snapshots.load(name, projection.version + 1, initial) is None  # another code
    assert snapshots.load(name, projection.version, "another initial state") is None
    for what, data in _corruptions(good).items():
        path.write_bytes(data)
        assert snapshots.load(name, projection.version, initial) is None, what
    path.write_bytes(good)
    assert snapshots.load(name, projection.version, initial) is not None


def test_snapshot_files_are_private(tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path / "snapshots")
    snapshots.save("jobs", 1, "i", 3, "e", {"a": 1})
    assert (tmp_path / "snapshots").stat().st_mode & 0o777 == 0o700
    assert snapshots.path("jobs", 1).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["jobs.v1.snapshot"]
