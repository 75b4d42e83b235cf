"""The ``stored.<type>`` broadcast of a committed batch, as few writes as possible.

Each stored event goes out as its own core NATS message
``{"seq": N, "event": {...}}`` on ``stored.<type>`` (what followers decode:
``schemas.system.StoredEvent``). nats-py's ``publish`` costs about 5 us per
call (subject checks, command building, a buffer append and a flusher kick),
as much as storing the event; so a batch is turned into the protocol's own
``PUB <subject> <size>\\r\\n<payload>\\r\\n`` frames here and handed to the
client in chunks of about :data:`CHUNK_BYTES` through its pending buffer
(``Client._send_command`` and its flusher, the path ``publish`` itself ends
in; nats-py is pinned below 3). The bytes on the wire are the same as one
``publish`` per event.

Subjects need no checks: a stored type is a registered event type (the
event decoder's tags) equal to the subject it arrived on. A message over the
server's ``max_payload`` is left out and counted, as ``publish`` would refuse
it. While the connection is down, events go through ``publish`` one by one,
which buffers within nats-py's limit or refuses; a refusal is counted and
followers repair the gap from the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client

from schemas.subjects import STORED_PREFIX
from schemas.system import encode_stored
from services.store.eventlog import Stored

CHUNK_BYTES = 256 * 1024

_subjects: dict[str, bytes] = {}


def _subject(type_: str) -> bytes:
    found = _subjects.get(type_)
    if found is None:
        found = _subjects[type_] = (STORED_PREFIX + type_).encode()
    return found


def frames(stored: Sequence[Stored], max_payload: int) -> tuple[list[bytes], int]:
    """``stored`` as PUB frames joined in chunks of about ``CHUNK_BYTES``, and
    how many were left out for being over ``max_payload``."""
    chunks: list[bytes] = []
    chunk: list[bytes] = []
    size = too_big = 0
    for seq, type_, body in stored:
        payload = encode_stored(seq, body)
        if len(payload) > max_payload:
            too_big += 1
            continue
        frame = b"PUB %s %d\r\n%s\r\n" % (_subject(type_), len(payload), payload)
        chunk.append(frame)
        size += len(frame)
        if size >= CHUNK_BYTES:
            chunks.append(b"".join(chunk))
            chunk, size = [], 0
    if chunk:
        chunks.append(b"".join(chunk))
    return chunks, too_big


async def broadcast(nc: Client, stored: Sequence[Stored]) -> tuple[int, Exception | None]:
    """Send the broadcasts of ``stored``; returns (how many failed, the last
    error). Never raises for a message that cannot be sent."""
    if not nc.is_connected:
        return await _one_by_one(nc, stored)
    chunks, too_big = frames(stored, nc.max_payload)
    for chunk in chunks:
        await nc._send_command(chunk)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
    error = nats.errors.MaxPayloadError() if too_big else None
    return too_big, error


async def _one_by_one(nc: Client, stored: Sequence[Stored]) -> tuple[int, Exception | None]:
    failures, error = 0, None
    for seq, type_, body in stored:
        try:
            await nc.publish(STORED_PREFIX + type_, encode_stored(seq, body))
        except Exception as e:  # counted by the caller, never a reason to stop
            failures, error = failures + 1, e
    return failures, error
