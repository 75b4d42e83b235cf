"""The subject registry: every NATS subject gpuroute uses, one line each.

Event subjects (``noun.past-tense-verb``) come from the registered event types
and are captured by the JetStream stream; the others are core NATS or
request/reply subjects and are listed here by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.envelope import event_types


@dataclass(frozen=True)
class Subject:
    name: str
    description: str
    stored: bool


_COMMANDS: list[Subject] = []


def command(name: str, description: str) -> str:
    """Register a request/reply subject (a ``nats.micro`` endpoint); returns ``name``."""
    _COMMANDS.append(Subject(name, "Request/reply: " + description, False))
    return name


STREAM = "GPUROUTE"
DLQ_STREAM = "GPUROUTE_DLQ"

HEARTBEAT = "svc.heartbeat"
PING = "svc.ping"
DLQ_PREFIX = "dlq."
STORED_PREFIX = "stored."
STORE_READ = command("gpuroute.store.read", "read stored events (StoreReadRequest).")
STORE_STATS = command("gpuroute.store.stats", "event count, last position, file size.")
STORE_ACKNOWLEDGE = command(
    "gpuroute.store.acknowledge",
    "acknowledge the store's notices (a stream reset); replies StoreStats.",
)


_OTHER = (
    Subject(HEARTBEAT, "Service heartbeat: name, version, pid, uptime. Core NATS.", False),
    Subject(PING, "Asks every running service to publish its heartbeat now. Core NATS.", False),
    Subject(
        DLQ_PREFIX + ">",
        "Dead letters: a message that failed validation, on dlq.<original subject>, "
        "with the reason in the Gpuroute-Dead-Reason header. Kept in its own stream.",
        False,
    ),
    Subject(
        STORED_PREFIX + ">",
        "Events after the store committed them, as {seq, event}, on stored.<type>. Core NATS.",
        False,
    ),
)


def registry() -> list[Subject]:
    """Every subject, events first, each with a one-line description."""
    events = [Subject(s, et.description, True) for s, et in event_types().items()]
    return events + list(_OTHER) + sorted(_COMMANDS, key=lambda c: c.name)


def stream_subjects() -> list[str]:
    """The wildcard subjects of the event stream: one ``<noun>.>`` per event noun."""
    return sorted({s.split(".", 1)[0] + ".>" for s in event_types()})
