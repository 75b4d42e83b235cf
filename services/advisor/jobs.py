"""job.submitted -> job.advised: the advisor's consumer of the job stream.

``job.submitted`` arrives through a durable JetStream push consumer with a
deliver group, so N replicas share the work. For each job the advisor
publishes ``job.advised`` (event id derived from the submitted id, so a
redelivered job is dropped by JetStream and by the store) with the decision
and its inputs, and acks only after JetStream stored it.

Only a valid event is answered: a message on ``job.submitted`` that does not
decode as one (over ``limits.MAX_EVENT_BYTES``, nested deeper than
``limits.MAX_JSON_DEPTH``, invalid UTF-8, not JSON, not an event, its type is
not the subject, or its spec breaks a bound of ``schemas.jobs.JobSpec``, a
width over 16384, say) is the store's to dead-letter with msgspec's message
naming the field, not a job; the advisor acks it, counts it
(``JobConsumer.invalid``), logs a warning and publishes nothing. Each message
is decoded once, as the typed event (the spec is the same ``JobSpec`` the
advisor decides on), through ``schemas.limits.decode``, which turns any
failure (``RecursionError`` included) into ``msgspec.DecodeError``, so no
message can stop the consumer.

:class:`JobConsumer` subscribes, batches, publishes and acks; the decision
comes from the ``decide`` callable it is given (the service's, which reads the
advisor's state), so a batch is decided with the state of the moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas import Event, decode_event, limits, make_event
from schemas.advisor import JobAdvised
from schemas.jobs import JobSpec, JobSubmitted
from schemas.subjects import STREAM
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError
from services.runtime.ids import derived_id

CONSUMER = "advisor"
"""Durable name and deliver group of the job.submitted consumer."""
BATCH = 256
MAX_ACK_PENDING = 4096
SUBJECT = "job.submitted"


def advised_id(submitted_id: str) -> str:
    """The id of the ``job.advised`` answering a ``job.submitted``: a UUIDv7 of the
    submitted event's millisecond, the same for the same submitted id."""
    return derived_id(submitted_id, "advised")


class JobConsumer:
    """Takes job.submitted in batches of up to ``BATCH``; :meth:`run` until cancelled,
    then :meth:`stop`. ``decide`` answers one valid spec; ``source`` names the
    publisher of the job.advised events."""

    def __init__(
        self,
        bus: Bus,
        decide: Callable[[JobSpec], JobAdvised],
        *,
        source: str,
        log: logging.Logger,
    ) -> None:
        self.bus = bus
        self.clock = bus.clock
        self.decide = decide
        self.source = source
        self.log = log
        self._inbox: list[Msg] = []
        self._inbox_event = asyncio.Event()
        self._jobs: JetStreamContext.PushSubscription | None = None
        self.invalid = 0
        """Messages on job.submitted that are not a valid event: acked, not answered."""

    async def stop(self) -> None:
        """Unsubscribe from job.submitted; a NATS error on the way out is ignored."""
        if self._jobs is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._jobs.unsubscribe()

    async def run(self) -> None:
        config = ConsumerConfig(
            durable_name=CONSUMER,
            deliver_group=CONSUMER,
            filter_subject=SUBJECT,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=MAX_ACK_PENDING,
        )
        self._jobs = await self.bus.js.subscribe(
            SUBJECT,
            queue=CONSUMER,
            durable=CONSUMER,
            stream=STREAM,
            config=config,
            cb=self._on_job,
            manual_ack=True,
        )
        while True:
            await self._inbox_event.wait()
            self._inbox_event.clear()
            while self._inbox:
                batch, self._inbox = self._inbox[:BATCH], self._inbox[BATCH:]
                await self._advise_batch(batch)

    async def _on_job(self, msg: Msg) -> None:
        self._inbox.append(msg)
        self._inbox_event.set()

    async def _advise_batch(self, msgs: list[Msg]) -> None:
        """Decide each job with the same state; publish every job.advised, then ack.
        A message that is not a valid job.submitted event is acked unanswered."""
        events: list[Event] = []
        done: list[Msg] = []
        for msg in msgs:
            submitted = self._valid(msg)
            if submitted is None:
                await msg.ack()
                continue
            events.append(self._advised(submitted))
            done.append(msg)
        if not events:
            return
        try:
            await self.bus.publish_many(events)
        except GpurouteError as e:
            self.log.error("job.advised not published", extra={"fields": {"error": str(e)}})
            for msg in done:
                await msg.nak(delay=1)
            return
        for msg in done:
            await msg.ack()

    def _valid(self, msg: Msg) -> Event | None:
        """The valid job.submitted event in ``msg``; None (counted and logged) when the
        store would dead-letter it: the same checks as the store's."""
        try:
            size = limits.MAX_EVENT_BYTES  # decode_event checks depth, not size
            limits.check_json(msg.data, max_bytes=size, max_depth=None, what=SUBJECT)
            event = decode_event(msg.data)
            if not isinstance(event.payload, JobSubmitted):
                raise ValueError(f"type {event.type!r} does not match subject {SUBJECT!r}")
            return event
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as e:
            self.invalid += 1
            self.log.warning(
                "invalid job.submitted not answered (the store dead-letters it)",
                extra={"fields": {"error": str(e), "invalid": self.invalid}},
            )
            return None

    def _advised(self, submitted: Event) -> Event:
        """The job.advised event for one job: the decision with its inputs."""
        return make_event(
            self.decide(submitted.payload.spec),
            id=advised_id(submitted.id),
            key=submitted.key,
            ts=self.clock.now(),
            source=self.source,
            correlation_id=submitted.correlation_id or submitted.id,
            causation_id=submitted.id,
        )
