"""The event envelope and the registry of event types.

Every event on the wire is one JSON object: the envelope fields below plus
``data``, the typed payload. ``type`` is the envelope's tag and always equals the
NATS subject the event was published on, so one decoder (a tagged union over
every registered type) validates any event in a single parse and names the bad
field in its error (``Expected `int`, got `str` - at `$.data.width```).

Event types are registered with :func:`event_type`, which builds the envelope
subclass for one payload. Schemas evolve additively: a new payload field gets a
default and goes last; a tag or a field's type never changes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Union, cast

import msgspec

from schemas import limits

SCHEMA_VERSION = 1

Timestamp = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
"""Unix seconds, finite (up to the year 5138): JSON 1e309 would decode to inf."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Envelope fields shared by every event; subclasses add ``data``.

    ``id`` is time-ordered and unique (also the ``Nats-Msg-Id`` header, so
    JetStream drops duplicates); ``key`` is the aggregate (a job id, a provider
    id); ``ts`` is unix seconds from the publisher's injected clock.
    """

    id: str
    key: str
    ts: Timestamp
    source: str
    correlation_id: str | None = None
    causation_id: str | None = None
    version: int = SCHEMA_VERSION

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag

    @property
    def payload(self) -> Any:
        """The typed payload (``data``); every registered subclass has one."""
        return getattr(self, "data")  # noqa: B009 - declared on subclasses only


@dataclass(frozen=True)
class EventType:
    subject: str
    description: str
    payload: type[msgspec.Struct]
    envelope: type[Event]
    publishers: tuple[str, ...] = ()
    """Services that publish it (the subject registry, ``schemas/subjects.py``)."""
    readers: tuple[str, ...] = ()
    """Services that follow or consume it, beyond those that read every event."""


_BY_SUBJECT: dict[str, EventType] = {}
_BY_PAYLOAD: dict[type[msgspec.Struct], EventType] = {}


def event_type(
    subject: str,
    payload: type[msgspec.Struct],
    description: str,
    *,
    publishers: tuple[str, ...] = (),
    readers: tuple[str, ...] = (),
) -> type[Event]:
    """Register ``payload`` as the data of events on ``subject``, published by
    ``publishers`` and read by ``readers`` (service names; the NATS permissions
    and the AsyncAPI document follow from them).

    Must run at import time of a ``schemas`` module: the union decoder is built
    once, on first use, from everything registered by then.
    """
    if subject in _BY_SUBJECT:
        raise ValueError(f"event type {subject!r} registered twice")
    if _decoder.cache_info().currsize:
        raise RuntimeError(f"event type {subject!r} registered after the decoder was built")
    name = payload.__name__ + "Event"
    envelope = cast(
        type[Event],
        msgspec.defstruct(
            name, [("data", payload)], bases=(Event,), tag=subject, frozen=True, kw_only=True
        ),
    )
    et = EventType(subject, description, payload, envelope, tuple(publishers), tuple(readers))
    _BY_SUBJECT[subject] = et
    _BY_PAYLOAD[payload] = et
    return envelope


def event_types() -> dict[str, EventType]:
    """Every registered event type by subject (a copy, sorted by subject)."""
    return dict(sorted(_BY_SUBJECT.items()))


def subject_of(payload: msgspec.Struct) -> str:
    try:
        return _BY_PAYLOAD[type(payload)].subject
    except KeyError:
        raise TypeError(f"{type(payload).__name__} is not a registered event payload") from None


def make_event(
    data: msgspec.Struct,
    *,
    id: str,
    key: str,
    ts: float,
    source: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    """Wrap a payload in its envelope; the subject follows from the payload type."""
    envelope = _BY_PAYLOAD[type(data)].envelope if type(data) in _BY_PAYLOAD else None
    if envelope is None:
        raise TypeError(f"{type(data).__name__} is not a registered event payload")
    return envelope(  # type: ignore[call-arg]
        id=id,
        key=key,
        ts=ts,
        source=source,
        correlation_id=correlation_id,
        causation_id=causation_id,
        data=data,
    )


@functools.cache
def _decoder() -> msgspec.json.Decoder[Any]:
    members = tuple(et.envelope for et in _BY_SUBJECT.values())
    return msgspec.json.Decoder(Union[members])  # noqa: UP007


_encoder = msgspec.json.Encoder()


def decode_event(raw: bytes | str) -> Event:
    """Decode and validate one event of any registered type.

    Raises ``msgspec.ValidationError`` (with the JSON path of the bad field) or
    ``msgspec.DecodeError`` (not JSON, invalid UTF-8, nested deeper than
    ``limits.MAX_JSON_DEPTH``). Size is checked where events enter: ``Bus``
    publishes and the store's ingest.
    """
    event: Event = limits.decode(_decoder(), raw, what="event")
    return event


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def events_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every event type, generated from the Structs."""
    members = tuple(et.envelope for et in _BY_SUBJECT.values())
    schema: dict[str, Any] = msgspec.json.schema(Union[members])  # noqa: UP007
    return schema
