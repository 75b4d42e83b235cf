"""The subject registry: every NATS subject gpuroute uses, who publishes it, who reads it.

One row per subject, declared next to its types:

- events: :func:`schemas.envelope.event_type` (``publishers=``, ``readers=``);
  every event is also read by :data:`EVERY_EVENT_READERS` (the store stores it,
  the gateway's hooks and the modder follow ``stored.*``);
- request/reply endpoints: :func:`command` (``server=`` answers, ``clients=``
  call it, ``request=``/``reply=`` name the types);
- the core-NATS subjects below (heartbeats, ping, ``stored.*``, ``dlq.*``).

The AsyncAPI document (``schemas/asyncapi.py``) and each service's NATS
permissions (``services/runtime/permissions.py``) are generated from
:func:`registry`, so a new service adds rows here and nothing else. "Reads"
means subscribes to, or consumes through JetStream; a reader of an event may
subscribe to both ``<type>`` and ``stored.<type>`` and calls the store's read
endpoint (history and gap repair of ``follow()``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Literal

from schemas.envelope import event_types

SERVICES: tuple[str, ...] = (
    "store", "adapters", "advisor", "gateway", "telemetry", "budget", "scheduler", "cloud",
)  # fmt: skip
"""Every service that connects to NATS as its own user (``gpuroute serve NAME``)."""
MODDER = "modder"
"""A user that reads events and the store and publishes nothing (see docs/security.md)."""
BUDGET_CLIENT = "budget-client"
"""The user of programs built on ``services/budget/client.py``: its asset, job and
profiler calls and ``asset.evicted`` (``gpuroute creds budget-client``)."""
USERS: tuple[str, ...] = (*SERVICES, MODDER, BUDGET_CLIENT)
"""Services, then the users of people's programs (each with an inbox of its own)."""
EVERY_EVENT_READERS: tuple[str, ...] = ("store", "gateway", MODDER)
"""Readers of every event type: the store (its JetStream consumer), the gateway
(``/api/modder/hooks``: any pattern) and the modder."""

FOLLOWERS: dict[str, tuple[str, ...]] = {
    "job.": ("cloud",),  # the cloud ledger: the queue and the jobs each pod ran
    "flags.changed": ("cloud", "scheduler"),  # enable_compute gates autoscaling, serverless
}
"""Readers of event types declared elsewhere, by type prefix (a service that
folds another's events without the declaring module naming it)."""

Kind = Literal["event", "command", "stored", "dead-letter", "heartbeat", "ping"]


@dataclass(frozen=True)
class Subject:
    """One row of the registry. For a command, ``publishers`` are its clients
    and ``readers`` its server; ``request``/``reply`` are the Struct types, or
    their names in ``module`` (a command is declared before its types)."""

    name: str
    description: str
    stored: bool
    kind: Kind = "event"
    publishers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    request: Any = None
    reply: Any = None
    module: str = ""


_COMMANDS: list[Subject] = []


def command(
    name: str,
    description: str,
    *,
    server: str = "",
    clients: tuple[str, ...] = (),
    request: type | str | None = None,
    reply: type | str | None = None,
) -> str:
    """Register a request/reply subject (a ``nats.micro`` endpoint); returns ``name``.

    ``server``: the service that answers (default: ``gpuroute.<service>.*``'s
    service); ``clients``: the users that call it. ``request``/``reply``: the
    types, or their names when declared later in the calling module."""
    if not server:
        middle = name.split(".")[1] if name.count(".") >= 2 else ""
        server = middle if middle in SERVICES else ""
    module = sys._getframe(1).f_globals.get("__name__", "")
    readers = (server,) if server else ()
    _COMMANDS.append(
        Subject(name, "Request/reply: " + description, False, "command",
                tuple(clients), readers, request, reply, module)
    )  # fmt: skip
    return name


STREAM = "GPUROUTE"
DLQ_STREAM = "GPUROUTE_DLQ"

HEARTBEAT = "svc.heartbeat"
PING = "svc.ping"
DLQ_PREFIX = "dlq."
STORED_PREFIX = "stored."
STORE_READ = command(
    "gpuroute.store.read",
    "read stored events (StoreReadRequest).",
    # and every reader of an event (see registry()); the store's profiler reporter
    # follows flags.changed through it too
    clients=("gateway", MODDER, "store"),
    request="StoreReadRequest",
    reply="StoredPage",
)
STORE_STATS = command(
    "gpuroute.store.stats",
    "event count, last position, file size, problems.",
    clients=("gateway", "advisor"),
    request="StoreAcknowledgeRequest",  # an empty object, like it
    reply="StoreStats",
)
STORE_ACKNOWLEDGE = command(
    "gpuroute.store.acknowledge",
    "acknowledge the store's notices (a stream reset); replies StoreStats.",
    clients=("gateway",),
    request="StoreAcknowledgeRequest",
    reply="StoreStats",
)


_OTHER = (
    Subject(HEARTBEAT, "Service heartbeat: name, version, pid, uptime, faults. Core NATS.",
            False, "heartbeat", SERVICES, ("gateway",), "Heartbeat", None, "schemas.system"),
    Subject(PING, "Asks every running service to publish its heartbeat now. Core NATS.",
            False, "ping", ("gateway",), SERVICES),
    Subject(
        DLQ_PREFIX + ">",
        "Dead letters: a message that failed validation, on dlq.<original subject>, "
        "with the reason in the Gpuroute-Dead-Reason header. Kept in its own stream.",
        False, "dead-letter", ("store",),
    ),
    Subject(
        STORED_PREFIX + ">",
        "Events after the store committed them, as {seq, event}, on stored.<type>. Core NATS.",
        False, "stored", ("store",), (), "StoredEvent", None, "schemas.system",
    ),
)  # fmt: skip


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(u for g in groups for u in g))


def registry() -> list[Subject]:
    """Every subject, events first, each with a one-line description, its
    publishers and its readers (derived rows filled in: every event's
    :data:`EVERY_EVENT_READERS`, the readers of ``stored.*`` and the callers
    of the store's read endpoint)."""
    events = [
        Subject(s, et.description, True, "event", et.publishers,
                _union(et.readers, *(r for p, r in FOLLOWERS.items() if s.startswith(p)),
                       EVERY_EVENT_READERS))
        for s, et in event_types().items()
    ]  # fmt: skip
    followers = _union(*(tuple(u for u in e.readers if u != "store") for e in events))
    other = [replace(o, readers=followers) if o.kind == "stored" else o for o in _OTHER]
    commands = [
        replace(c, publishers=_union(c.publishers, followers)) if c.name == STORE_READ else c
        for c in sorted(_COMMANDS, key=lambda c: c.name)
    ]
    return events + other + commands


def stream_subjects() -> list[str]:
    """The wildcard subjects of the event stream: one ``<noun>.>`` per event noun."""
    return sorted({s.split(".", 1)[0] + ".>" for s in event_types()})
