"""The AsyncAPI 3.0 document of every NATS subject, generated from the registry.

One channel per row of :func:`schemas.subjects.registry` (``stored.{type}``
and ``dlq.{subject}`` with a parameter; a command has a second channel for its
reply, whose address is the requester's inbox), message payloads from the
msgspec Structs (``msgspec.json.schema_components``: every schema under
``#/components/schemas``), and one operation per user and subject: ``send``
for a publisher or a command's client, ``receive`` for a reader or its
server; a command's operations carry the reply. This is what a modder reads to
subscribe from any language (``gpuroute schema --asyncapi``, the gateway's
``GET /asyncapi.json``); ``tests/schemas/test_asyncapi.py`` validates it against the
official 3.0.0 JSON Schema.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from typing import Any

import msgspec

from schemas.subjects import Subject, registry

ASYNCAPI_VERSION = "3.0.0"
_ID = re.compile(r"[^\w.\-]")
_REF = "#/components/schemas/{name}"

_DESCRIPTION = (
    "Every NATS subject of gpuroute: events (JSON envelopes, also stored in the "
    "JetStream stream GPUROUTE and in the SQLite log), their stored.* broadcasts "
    "with a global position, dead letters, heartbeats and the request/reply "
    "endpoints (nats.micro: errors in the Nats-Service-Error and "
    "Nats-Service-Error-Code headers). Operations say which service sends and "
    "which receives each subject; the NATS permissions of each service's user "
    "are generated from the same registry. A modder logs in as `modder` "
    "(gpuroute creds modder) with the inbox prefix _INBOX.modder."
)


def _resolve(ref: Any, row: Subject) -> Any:
    """A request/reply type: the type itself, or its name in the module that
    registered ``row``, else in any ``schemas`` module."""
    if ref is None or not isinstance(ref, str):
        return ref
    modules = [sys.modules.get(row.module)] + [
        m for name, m in sorted(sys.modules.items()) if name.startswith("schemas.")
    ]
    for module in modules:
        found = getattr(module, ref, None) if module is not None else None
        if isinstance(found, type):
            return found
    raise LookupError(f"{row.name}: type {ref!r} is not defined in {row.module} or schemas.*")


def message_types(row: Subject) -> tuple[Any, Any]:
    """The payload type of ``row`` (a command: its request) and its reply type."""
    if row.kind == "event":
        from schemas.envelope import event_types

        return event_types()[row.name].envelope, None
    return _resolve(row.request, row), _resolve(row.reply, row)


def _schema_hook(t: type) -> dict[str, Any]:
    """``object`` (``dict[str, object]``) is any JSON value, as ``Any`` is."""
    if t is object:
        return {"description": "any JSON value"}
    raise NotImplementedError


def _channel_id(name: str) -> str:
    return _ID.sub("_", name.replace(".>", "").replace(">", "all"))


def _address(row: Subject) -> tuple[str, dict[str, Any]]:
    if row.kind == "stored":
        return row.name[:-1] + "{type}", {"type": {"description": "the event type"}}
    if row.kind == "dead-letter":
        return row.name[:-1] + "{subject}", {"subject": {"description": "the original subject"}}
    return row.name, {}


_HEADERS: dict[str, dict[str, Any]] = {
    "event": {"Nats-Msg-Id": "the event id: JetStream drops a duplicate"},
    "dead-letter": {"Gpuroute-Dead-Reason": "why the message was refused"},
}


def _message(name: str, title: str, payload: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": title, "contentType": "application/json"}
    if payload is not None:
        message["payload"] = payload
    headers = _HEADERS.get(kind)
    if headers:
        message["headers"] = {
            "type": "object",
            "properties": {h: {"type": "string", "description": d} for h, d in headers.items()},
        }
    return message


def asyncapi_document() -> dict[str, Any]:
    """The document as a JSON-ready dict (the same for the same registry)."""
    rows = registry()
    types: list[Any] = []
    for row in rows:
        types += [t for t in message_types(row) if t is not None]
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(
        unique, ref_template=_REF, schema_hook=_schema_hook
    )
    schema_of = dict(zip(unique, refs, strict=True))

    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for row in rows:
        cid = _channel_id(row.name)
        request, reply = message_types(row)
        address, parameters = _address(row)
        payload = schema_of[request] if request is not None else None
        messages[cid] = _message(cid, row.name, payload, row.kind)
        channel: dict[str, Any] = {
            "address": address,
            "description": row.description,
            "messages": {cid: {"$ref": f"#/components/messages/{cid}"}},
        }
        if parameters:
            channel["parameters"] = parameters
        channels[cid] = channel
        own = [{"$ref": f"#/channels/{cid}/messages/{cid}"}]
        reply_op: dict[str, Any] | None = None
        if row.kind == "command":
            rid = cid + ".reply"
            messages[rid] = _message(rid, row.name + " reply", schema_of.get(reply), "reply")
            channels[rid] = {
                "address": None,
                "description": f"The reply of {row.name}, on the requester's inbox.",
                "messages": {rid: {"$ref": f"#/components/messages/{rid}"}},
            }
            reply_op = {
                "channel": {"$ref": f"#/channels/{rid}"},
                "messages": [{"$ref": f"#/channels/{rid}/messages/{rid}"}],
            }
        for action, users in (("send", row.publishers), ("receive", row.readers)):
            for user in users:
                op: dict[str, Any] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{cid}"},
                    "messages": own,
                    "tags": [{"name": user}],
                }
                if reply_op is not None:
                    op["reply"] = reply_op
                operations[f"{user}.{action}.{cid}"] = op

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "gpuroute subjects", "version": _version(),
                 "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The nats-server `gpuroute up` starts; one user per service.",
                "security": [{"$ref": "#/components/securitySchemes/user"}],
            }
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": components,
            "messages": messages,
            "securitySchemes": {
                "user": {
                    "type": "userPassword",
                    "description": "One NATS user per service and `modder`; passwords in "
                    "<data-dir>/credentials/ (docs/security.md).",
                }
            },
        },
    }  # fmt: skip


def _version() -> str:
    try:
        return importlib.metadata.version("gpuroute")
    except importlib.metadata.PackageNotFoundError:
        return "0"
