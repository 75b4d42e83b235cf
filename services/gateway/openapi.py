"""The OpenAPI 3.1 document of the gateway, generated from the route table.

Schemas come from the Structs the table names
(``msgspec.json.schema_components`` with ``#/components/schemas/{name}``
references), so the document changes when a type does and never by hand.
Every operation lists the statuses it can answer: its own (``Route.errors``)
and the ones every route can give:

    400  a bad query, path or body (an unknown query parameter on every route)
    401  a token is set and the request has none or another (all but /health)
    403  an Origin that is not the gateway's own or listed ([gateway] origins)
    421  a Host the gateway does not serve ([gateway] hosts)
    408, 413   a body that arrives too slowly or is too large (routes that read one)
    404, 405   a path segment that is another route's literal (routes with a {param})
    502, 503, 504   the service answered nonsense, nobody answered, or too late

Every error body is ``{ok: false, error}`` (the adapters' routes add the
provider failure's fields).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from schemas.adapters import AdapterFailure
from services.gateway.table import Route

REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_REASONS = {
    101: "Switching Protocols (WebSocket)", 200: "OK", 201: "Created",
    400: "Bad request: the message names the parameter or field and the limit",
    401: "A token is set and the request has none or another",
    403: "Origin not allowed", 404: "Not found", 405: "Method not allowed",
    408: "The body did not arrive in time", 409: "Conflict", 413: "Body too large",
    421: "Host not served here", 429: "The provider's rate limit (Retry-After)",
    502: "The service or provider failed", 503: "No service is answering (or unhealthy)",
    504: "No reply in time",
}  # fmt: skip
ERROR = {
    "type": "object",
    "properties": {"ok": {"const": False}, "error": {"type": "string"}},
    "required": ["ok", "error"],
}
OK = {"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]}


def version() -> str:
    try:
        return importlib.metadata.version("gpuroute")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def statuses(route: Route) -> list[int]:
    """Every status ``route`` can answer (see the module docstring)."""
    codes = {101 if route.websocket else route.status, 400, 403, 421, *route.errors}
    if not route.open:
        codes.add(401)
    if route.body is not None:
        codes |= {408, 413}
    if "{" in route.path:
        codes |= {404, 405}
    if route.subject is not None:
        codes |= {502, 503, 504}
    return sorted(codes)


def document(table: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``table`` as plain JSON values."""
    types: list[Any] = [AdapterFailure]
    for r in table:
        types += [t for t in (r.query, r.body, r.path_type, r.reply) if t is not None]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(_key, types), refs, strict=True))
    components["Error"] = ERROR
    components["Ok"] = OK
    failure = components[_name(schema_of[_key(AdapterFailure)])]
    components["AdapterError"] = {
        "type": "object",
        "description": "A provider call that failed: " + failure.get("description", ""),
        "properties": {**failure["properties"], "ok": {"const": False}},
        "required": ["ok", "error"],
    }
    paths: dict[str, dict[str, Any]] = {}
    for r in table:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, schema_of, components)
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuroute gateway",
            "version": version(),
            "description": "REST and WebSocket front door of gpuroute: events, the compute "
            "advisor, providers, flags and the GPU provider adapters. Every answer is JSON "
            "with `ok`; every error is `{ok: false, error}`.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    # msgspec's schemas hold Python values (a tuple default): make them JSON's
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(doc))
    return result


def _key(t: Any) -> str:
    return repr(t)


def _name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[1]


def _operation(
    r: Route, schema_of: dict[str, dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": r.method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", r.path).rstrip("_"),
        "summary": r.summary,
        "tags": [r.tag],
        "parameters": _parameters(r, schema_of, components),
        "responses": {str(s): _response(r, s, schema_of) for s in statuses(r)},
    }
    if r.open:
        op["security"] = []
    if r.body is not None:
        body = schema_of[_key(r.body)]
        if r.body_from_path:
            body = _without_path_fields(r, body, components)
        op["requestBody"] = {
            "required": False,
            "description": "JSON whatever the Content-Type; empty means every default",
            "content": {"application/json": {"schema": body}},
        }
    if r.subject is not None:
        op["x-nats-subject"] = r.subject
        op["x-timeout-s"] = r.timeout
    return op


def _parameters(
    r: Route, schema_of: dict[str, dict[str, Any]], components: dict[str, Any]
) -> list[dict[str, Any]]:
    params = []
    path_fields = _fields(r.path_type, schema_of, components)[0]
    for name in _PARAM.findall(r.path):
        schema = path_fields.get(name, {"type": "string"})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    fields, required = _fields(r.query, schema_of, components)
    for name, schema in fields.items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        param["schema"] = schema if name in required else _not_null(schema)
        if "description" in schema:
            param["description"] = schema["description"]
        params.append(param)
    return params


def _fields(
    t: Any, schema_of: dict[str, dict[str, Any]], components: dict[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    if t is None:
        return {}, set()
    schema = components[_name(schema_of[_key(t)])]
    return dict(schema.get("properties", {})), set(schema.get("required", ()))


def _without_path_fields(
    r: Route, ref: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    """The body's schema with the path's fields optional (they default to the path's)."""
    name = _name(ref)
    derived = f"{name}InPath"
    if derived not in components:
        schema = dict(components[name])
        params = set(_PARAM.findall(r.path))
        schema["required"] = [f for f in schema.get("required", ()) if f not in params]
        components[derived] = schema
    return {"$ref": REF.format(name=derived)}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is absent rather than null: drop the null branch."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    rest = [b for b in branches if b != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k != "anyOf" and (k, v) != ("default", None)}
    return {**out, **rest[0]} if len(rest) == 1 else {**out, "anyOf": rest}


def _response(r: Route, status: int, schema_of: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _REASONS.get(status, str(status))}
    if status == 101:
        return out
    if status >= 400:
        error = "AdapterError" if not r.envelope and status in r.errors else "Error"
        schema: dict[str, Any] = {"$ref": REF.format(name=error)}
    elif r.content_type != "application/json":
        out["content"] = {r.content_type: {"schema": {"type": "string"}}}
        return out
    elif r.reply is None:
        schema = {"$ref": REF.format(name="Ok")}
    elif r.envelope and r.handler is None:
        schema = {"allOf": [{"$ref": REF.format(name="Ok")}, schema_of[_key(r.reply)]]}
    else:
        schema = schema_of[_key(r.reply)]
    out["content"] = {"application/json": {"schema": schema}}
    if status == 429:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
    return out
