"""NATS permissions of every gpuroute user, generated from the subject registry.

Each service connects as its own user (``schemas.subjects.USERS``). What it
may publish and subscribe to is exactly what ``schemas.subjects.registry()``
says it publishes and reads, plus what its client needs:

- subscribe ``_INBOX.>``: replies to its requests and the JetStream acks of
  ``Bus.publish_many`` (the modder only ``_INBOX.modder.>``: it cannot read
  other users' replies, and must connect with that inbox prefix);
- ``allow_responses``: answering requests (its endpoints, ``$SRV`` discovery);
- subscribe ``$SRV.>``: ``nats.micro`` discovery and stats;
- the JetStream API calls in :data:`JETSTREAM`: only the store may create or
  update the streams and manage its durable consumer; the advisor manages its
  own job consumer. Publishing into a stream needs only the event's subject.

A reader of an event may subscribe to ``<type>`` and ``stored.<type>``; a
reader of every event type of a noun gets ``<noun>.>`` (what a follower of
``provider.>`` subscribes to), a reader of every event type ``stored.>``
(the gateway's hooks take any pattern). Nothing here is a secret: passwords
live in the credentials (``credentials.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas.envelope import event_types
from schemas.subjects import (
    DLQ_STREAM,
    MODDER,
    SERVICES,
    STORED_PREFIX,
    STREAM,
    USERS,
    Subject,
    registry,
)

JS_API = "$JS.API."


@dataclass(frozen=True)
class JetStreamUse:
    """What a user may do with JetStream beyond publishing into the stream:
    ``streams`` it creates, updates and inspects; durable ``consumers`` on the
    event stream that it creates, inspects, deletes, binds to and acks."""

    streams: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    inspects: bool = False
    """Read-only: JetStream's account info, INFO of both streams and of the
    store's consumer, and ``$SRV`` requests (``gpuroute doctor``, ``/metrics``)."""
    gets: tuple[str, ...] = ()
    """Streams it reads single messages of (``js.get_last_msg``: ``STREAM.MSG.GET``)."""


JETSTREAM: dict[str, JetStreamUse] = {
    "store": JetStreamUse(streams=(STREAM, DLQ_STREAM), consumers=("store",)),
    "advisor": JetStreamUse(consumers=("advisor",)),
    "gateway": JetStreamUse(inspects=True),
    "budget": JetStreamUse(gets=(STREAM,)),  # its newest change JetStream holds
    "cloud": JetStreamUse(gets=(STREAM,)),  # the same (services/runtime/catch_up.py)
}
"""Durable names as the services use them (services/store/service.py ``durable``,
services/advisor/jobs.py ``CONSUMER``)."""


@dataclass(frozen=True)
class Permissions:
    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool

    def as_conf(self) -> dict[str, object]:
        """The ``permissions`` map of a user in nats-server's config."""
        conf: dict[str, object] = {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }
        if self.allow_responses:
            conf["allow_responses"] = True
        return conf


def inbox_prefix(user: str) -> str:
    """The inbox prefix ``user`` must connect with (``_INBOX`` for services; a
    person's program gets its own, so it cannot read other users' replies)."""
    return "_INBOX" if user in SERVICES else f"_INBOX.{user}"


def _jetstream(use: JetStreamUse) -> list[str]:
    subjects: list[str] = []
    for stream in use.streams:
        subjects += [f"{JS_API}STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")]
    for durable in use.consumers:
        at = f"{STREAM}.{durable}"
        subjects += [f"{JS_API}CONSUMER.{op}.{at}" for op in ("INFO", "DELETE", "DURABLE.CREATE")]
        subjects += [f"{JS_API}CONSUMER.CREATE.{at}", f"{JS_API}CONSUMER.CREATE.{at}.>"]
        subjects += [f"$JS.ACK.{at}.>", f"$JS.FC.{at}.>"]
    subjects += [f"{JS_API}STREAM.MSG.GET.{stream}" for stream in use.gets]
    if use.inspects:
        subjects += [f"{JS_API}INFO", f"{JS_API}STREAM.INFO.{STREAM}",
                     f"{JS_API}STREAM.INFO.{DLQ_STREAM}", f"{JS_API}CONSUMER.INFO.{STREAM}.store",
                     "$SRV.>"]  # fmt: skip
    return subjects


def _event_reads(types: set[str]) -> list[str]:
    """Subscriptions for reading ``types``: each as the shortest prefix
    wildcard whose every type is read (``cloud.>`` when all of ``cloud.*`` is,
    else ``cloud.pod.>`` when all of ``cloud.pod.*`` is, else the type itself),
    ``stored.>`` when every type is. A follower may subscribe with any of
    these (the scheduler follows ``cloud.pod.>``), and nothing more."""
    everything = list(event_types())
    if types and types >= set(everything):
        nouns = sorted({t.split(".", 1)[0] for t in everything})
        return [f"{n}.>" for n in nouns] + [STORED_PREFIX + ">"]
    patterns: list[str] = []
    covered: set[str] = set()
    for t in sorted(types):
        if t in covered:
            continue
        tokens = t.split(".")
        for k in range(1, len(tokens)):
            prefix = ".".join(tokens[:k]) + "."
            members = {x for x in everything if x.startswith(prefix)}
            if members <= types:
                patterns.append(prefix + ">")
                covered |= members
                break
        else:
            patterns.append(t)
            covered.add(t)
    return patterns + [STORED_PREFIX + p for p in patterns]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def permissions(user: str, subjects: list[Subject] | None = None) -> Permissions:
    """The permissions of ``user`` (a service name or ``modder``) under the registry."""
    if user not in USERS:
        raise ValueError(f"unknown NATS user {user!r}: one of {', '.join(USERS)}")
    rows = registry() if subjects is None else subjects
    publish: list[str] = []
    subscribe: list[str] = []
    reads: set[str] = set()
    serves = False
    for s in rows:
        if user in s.publishers:
            publish.append(s.name)
        if user in s.readers:
            if s.kind == "event":
                reads.add(s.name)
            elif s.kind != "stored":  # stored.* follows from the events read
                subscribe.append(s.name)
            serves = serves or s.kind == "command"
    subscribe += _event_reads(reads)
    if user not in SERVICES:
        if user == MODDER:
            publish.append("$SRV.>")
        subscribe.append(inbox_prefix(user) + ".>")
    else:
        subscribe += ["_INBOX.>", "$SRV.>"]
        publish += _jetstream(JETSTREAM.get(user, JetStreamUse()))
    return Permissions(user, _unique(publish), _unique(subscribe), user in SERVICES or serves)


def authorization(passwords: Mapping[str, str]) -> str:
    """nats-server's ``authorization`` block: one user per entry of
    ``passwords`` (user -> password) with its :func:`permissions`. JSON is
    valid nats-server config syntax, so values are quoted safely."""
    users = [
        {"user": user, "password": password, "permissions": permissions(user).as_conf()}
        for user, password in passwords.items()
    ]
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"
