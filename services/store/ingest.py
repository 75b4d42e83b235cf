"""What the store does with each delivered message, before and after the commit.

:func:`classify` turns one message into an event row or a dead letter and never
raises: whatever is wrong with the bytes (too big, invalid UTF-8, nested 1,000
deep, not an event, an event of another type than its subject) is a reason,
never an exception that could stop the writer.

:func:`dead_letter_message` wraps a dead letter for ``dlq.<subject>`` so that
it always fits NATS's ``max_payload``: body and headers together at most
``MAX_EVENT_BYTES`` (the whole body stays in the ``dead_letters`` table), the reason bounded, and
headers saying the original size and whether the body was cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from schemas import decode_event, limits
from schemas.subjects import DLQ_PREFIX
from services.store.eventlog import Dead, Row

DEAD_REASON = "Gpuroute-Dead-Reason"
DEAD_SIZE = "Gpuroute-Dead-Size"
"""The size in bytes of the message as it was received."""
DEAD_TRUNCATED = "Gpuroute-Dead-Truncated"
"""``true`` when the republished body is only the start of the message."""


def one_line(text: str, max_chars: int = limits.MAX_TEXT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= max_chars else line[: max_chars - 3] + "..."


def classify(subject: str, data: bytes) -> Row | str:
    """The event row of a valid event, else the reason it is not one."""
    if len(data) > limits.MAX_EVENT_BYTES:
        return f"event is {len(data)} bytes, over the limit of {limits.MAX_EVENT_BYTES}"
    try:
        event = decode_event(data)
        if event.type != subject:
            return one_line(f"type {event.type!r} does not match subject {subject!r}")
        return (event.id, subject, event.key, event.ts, data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        return one_line(str(e))
    except Exception as e:  # a bad message must never stop the writer
        return one_line(f"cannot decode event: {type(e).__name__}: {e}")


@dataclass(frozen=True)
class DeadLetter:
    subject: str
    body: bytes
    headers: dict[str, str]


def dead_letter_message(dead: Dead, stream: str) -> DeadLetter:
    """The republish of one dead letter on ``dlq.<subject>``, deduplicated by
    its stream (``created``) and position: a retried batch republishes
    nothing twice, a recreated stream's position 1 is not the old one's."""
    stream_seq, subject, reason, body = dead
    headers = {
        DEAD_REASON: reason,
        DEAD_SIZE: str(len(body)),
        "Nats-Msg-Id": f"dlq-{stream}-{stream_seq}",
    }
    if len(body) + _header_bytes(headers) > limits.MAX_EVENT_BYTES:
        headers[DEAD_TRUNCATED] = "true"
        body = body[: limits.MAX_EVENT_BYTES - _header_bytes(headers)]
    return DeadLetter(DLQ_PREFIX + subject, body, headers)


def _header_bytes(headers: dict[str, str]) -> int:
    """Headers as they count against a message's size (``Name: value\r\n``)."""
    return sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
