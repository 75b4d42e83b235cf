"""A restarted writer catches up with what JetStream holds before it answers.

A service that numbers its own changes (``n``: the budget, the cloud service)
decides each change on the state the previous ones left. After a restart its
:class:`~services.runtime.follower.Follower` has folded what the *store* held
when loading began; an event JetStream already acknowledged but the store has
not committed yet is missing from that state, and a decision made past it
could, for the cloud, spend money a reservation already holds. So before such
a service answers:

1. :func:`stream_last` reads the newest message on each subject the service
   writes straight from JetStream (``STREAM.MSG.GET``: the user needs
   ``JetStreamUse(gets=(STREAM,))`` in services/runtime/permissions.py) and
   takes the largest change number of them;
2. :func:`catch_up` waits until the follower's state holds that number,
   re-checking every time the follower's position moves, and logs a warning
   each ``patience_s`` seconds it keeps waiting (a store that is down: the
   service keeps answering 503 "still loading" rather than decide past it).

A subject with no message, an unreadable message or a JetStream that does not
answer counts as 0 for that subject: the store will say what it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import Logger
from typing import Any

import msgspec
import nats.errors

from schemas import Event, decode_event
from schemas.envelope import event_types
from schemas.subjects import STREAM
from services.runtime.bus import Bus
from services.runtime.follower import Follower

PATIENCE_S = 10.0
"""Seconds between the warnings of a writer still waiting for the store."""


def written_by(service: str) -> tuple[str, ...]:
    """Every event type the registry says ``service`` publishes."""
    return tuple(s for s, et in event_types().items() if service in et.publishers)


def change_number(event: Event) -> int:
    """The ``n`` of an event's payload (0 when it has none)."""
    n = getattr(event.payload, "n", 0)
    return n if isinstance(n, int) else 0


async def stream_last(
    bus: Bus, subjects: Iterable[str], number: Callable[[Event], int] = change_number
) -> int:
    """The largest ``number`` of the newest event JetStream holds on each subject."""
    last = 0
    for subject in subjects:
        try:
            msg = await bus.js.get_last_msg(STREAM, subject)
            event = decode_event(msg.data or b"")
        except (nats.errors.Error, msgspec.DecodeError, msgspec.ValidationError):
            continue  # none on that subject (or unreadable: the store will say)
        last = max(last, number(event))
    return last


async def catch_up(
    follower: Follower[Any],
    subjects: Iterable[str],
    current: Callable[[], int],
    *,
    log: Logger,
    number: Callable[[Event], int] = change_number,
    patience_s: float = PATIENCE_S,
) -> int:
    """Return once ``current()`` (the state's change number) reaches the newest
    change of ``subjects`` in JetStream; that number. Call it after
    ``follower.loaded``; it waits as long as it takes (see the module)."""
    last = await stream_last(follower.bus, subjects, number)
    while current() < last:
        if not await follower.wait_position(follower.position + 1, patience_s):
            log.warning(
                "waiting for the store to hold the newest change JetStream holds",
                extra={"fields": {"folded": current(), "in_stream": last,
                                  "position": follower.position}},
            )  # fmt: skip
    return last
