"""job.submitted -> job.advised: the advisor's consumer of the job stream.

``job.submitted`` arrives through a durable JetStream push consumer with a
deliver group, so N replicas share the work. For each job the advisor
publishes ``job.advised`` (event id derived from the submitted id, so a
redelivered job is dropped by JetStream and by the store) with the decision
and its inputs, and acks only after JetStream stored it.

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

from schemas import Event, make_event
from schemas.advisor import AdvisorJobSpec
from schemas.jobs import JobAdvised
from schemas.subjects import STREAM
from services.runtime.bus import Bus
from services.runtime.errors import GpurouteError

CONSUMER = "advisor"
"""Durable name and deliver group of the job.submitted consumer."""
BATCH = 256
MAX_ACK_PENDING = 4096


def advised_id(submitted_id: str) -> str:
    """The id of the ``job.advised`` answering a ``job.submitted``: same input, same id."""
    return f"{submitted_id}:advised"


class _SubmittedData(msgspec.Struct):
    spec: msgspec.Raw


class _Submitted(msgspec.Struct):
    """A job.submitted envelope, its spec kept raw: it is decoded as the advisor's
    spec (fields schemas.jobs.JobSpec does not know, like ``tokens``, survive)."""

    id: str
    key: str
    data: _SubmittedData
    correlation_id: str | None = None


_submitted_decoder = msgspec.json.Decoder(_Submitted)
_spec_decoder = msgspec.json.Decoder(AdvisorJobSpec)


class JobConsumer:
    """Takes job.submitted in batches of up to ``BATCH``; :meth:`run` until cancelled,
    then :meth:`stop`. ``decide`` answers one valid spec; ``source`` names the
    publisher of the job.advised events."""

    def __init__(
        self,
        bus: Bus,
        decide: Callable[[AdvisorJobSpec], JobAdvised],
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

    async def stop(self) -> None:
        """Unsubscribe from job.submitted; a NATS error on the way out is ignored."""
        if self._jobs is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._jobs.unsubscribe()

    async def run(self) -> None:
        config = ConsumerConfig(
            durable_name=CONSUMER,
            deliver_group=CONSUMER,
            filter_subject="job.submitted",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=MAX_ACK_PENDING,
        )
        self._jobs = await self.bus.js.subscribe(
            "job.submitted",
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
        """Decide each job with the same state; publish every job.advised, then ack."""
        events: list[Event] = []
        done: list[Msg] = []
        for msg in msgs:
            try:
                events.append(self._advised(_submitted_decoder.decode(msg.data)))
                done.append(msg)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                # not a job.submitted envelope at all: the store dead-letters it
                self.log.warning("malformed job.submitted", extra={"fields": {"error": str(e)}})
                await msg.term()
        try:
            await self.bus.publish_many(events)
        except GpurouteError as e:
            self.log.error("job.advised not published", extra={"fields": {"error": str(e)}})
            for msg in done:
                await msg.nak(delay=1)
            return
        for msg in done:
            await msg.ack()

    def _advised(self, submitted: _Submitted) -> Event:
        """The job.advised event for one job: a decision with its inputs, or a
        rejection (target ``rejected``) naming the field the advisor cannot accept."""
        try:
            spec = _spec_decoder.decode(submitted.data.spec)
        except msgspec.ValidationError as e:
            data = JobAdvised(target="rejected", rule="invalid_spec", reason=f"job spec: {e}")
        else:
            data = self.decide(spec)
        return make_event(
            data,
            id=advised_id(submitted.id),
            key=submitted.key,
            ts=self.clock.now(),
            source=self.source,
            correlation_id=submitted.correlation_id or submitted.id,
            causation_id=submitted.id,
        )
