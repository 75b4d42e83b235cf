"""``/openapi.json``, ``/asyncapi.json`` and ``/docs``: the documents, served as
encoded once when the app is built (``create_app`` sets :data:`DOCUMENTS`).

``/docs`` is a page written here (no build step, no third-party code) whose
script fetches ``openapi.json`` and lists every operation with its
parameters, body, statuses and the Structs they reference. ``/asyncapi.json``
is ``schemas.asyncapi.asyncapi_document()``; a 404 naming it when that module
is not part of this version.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from services.gateway.errors import HttpError
from services.gateway.openapi import document as generate_openapi
from services.gateway.table import Inputs, Route


@dataclass(frozen=True)
class Documents:
    openapi: bytes


DOCUMENTS = web.AppKey("documents", Documents)


def build(openapi_document: dict[str, Any]) -> Documents:
    return Documents(openapi=msgspec.json.encode(openapi_document))


@functools.cache
def for_table(table: tuple[Route, ...]) -> Documents:
    """The documents of ``table``, built once per process: generating the
    OpenAPI document costs 0.1-0.3 s of CPU (a JSON schema of every type) and
    the table never changes at run time, while a test run builds hundreds of
    gateways. ``Documents`` holds bytes only, so sharing it is safe."""
    return build(generate_openapi(table))


@functools.cache
def asyncapi_bytes() -> bytes | None:
    """The AsyncAPI document, encoded on first use (None: not in this version).
    Built lazily so that a type it cannot describe fails this route, not the
    gateway's start."""
    try:
        from schemas.asyncapi import asyncapi_document  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return msgspec.json.encode(asyncapi_document())


async def openapi(request: web.Request, inputs: Inputs) -> web.Response:
    return web.Response(body=request.app[DOCUMENTS].openapi, content_type="application/json")


async def asyncapi(request: web.Request, inputs: Inputs) -> web.Response:
    body = asyncapi_bytes()
    if body is None:
        raise HttpError("no AsyncAPI document in this version (schemas/asyncapi.py)", 404)
    return web.Response(body=body, content_type="application/json")


async def docs_page(request: web.Request, inputs: Inputs) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gpuroute gateway API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ccc}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer} code,pre{font:13px ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:24rem}
.m{display:inline-block;min-width:4.5rem;font-weight:bold}
.GET{color:#06c}.POST{color:#080}.PUT{color:#a60}.DELETE{color:#c00}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
.muted{color:#666}
</style></head><body>
<h1>gpuroute gateway API</h1>
<p class="muted">Rendered from <a href="openapi.json">openapi.json</a>;
the NATS subjects are in <a href="asyncapi.json">asyncapi.json</a>.</p>
<div id="out">Loading openapi.json ...</div>
<script>
"use strict";
const out = document.getElementById("out");
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function refName(s) { return s && s.$ref ? s.$ref.split("/").pop() : null; }
function describe(s) {
  if (!s) return "";
  const r = refName(s);
  if (r) return r;
  if (s.allOf) return s.allOf.map(describe).join(" + ");
  if (s.anyOf) return s.anyOf.map(describe).join(" | ");
  if (s.type === "array") return describe(s.items) + "[]";
  const bounds = ["minimum", "maximum", "minLength", "maxLength", "pattern", "enum", "const"]
    .filter(k => k in s).map(k => k + " " + JSON.stringify(s[k]));
  return (s.type || "any") + (bounds.length ? " (" + bounds.join(", ") + ")" : "");
}
function schemaBlock(doc, name) {
  const d = el("details"); d.id = "schema-" + name;
  d.append(el("summary", name));
  d.append(el("pre", JSON.stringify(doc.components.schemas[name], null, 2)));
  return d;
}
function operation(path, method, op) {
  const d = el("details");
  const s = el("summary");
  s.append(el("span", method.toUpperCase(), "m " + method.toUpperCase()),
           el("code", path), el("span", "  " + (op.summary || ""), "muted"));
  d.append(s);
  if (op["x-nats-subject"]) d.append(el("p", "NATS subject: " + op["x-nats-subject"] +
                                          ", timeout " + op["x-timeout-s"] + " s"));
  if (op.security && op.security.length === 0) d.append(el("p", "No token needed."));
  if (op.parameters && op.parameters.length) {
    const t = el("table");
    t.append(...[["name", "in", "required", "type"]].concat(op.parameters.map(
      p => [p.name, p.in, p.required ? "yes" : "", describe(p.schema)])).map((row, i) => {
        const tr = el("tr");
        tr.append(...row.map(c => el(i ? "td" : "th", c)));
        return tr;
      }));
    d.append(t);
  }
  if (op.requestBody) {
    const c = op.requestBody.content["application/json"];
    d.append(el("p", "Body: " + describe(c.schema) + " (" + op.requestBody.description + ")"));
  }
  const ul = el("ul");
  for (const [code, r] of Object.entries(op.responses)) {
    const c = r.content && Object.values(r.content)[0];
    ul.append(el("li", code + " " + r.description + (c ? ": " + describe(c.schema) : "")));
  }
  d.append(ul);
  return d;
}
fetch("openapi.json").then(r => r.json()).then(doc => {
  out.textContent = "";
  out.append(el("p", doc.info.description + " Version " + doc.info.version + "."));
  const tags = {};
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item))
      (tags[op.tags[0]] = tags[op.tags[0]] || []).push(operation(path, method, op));
  for (const [tag, ops] of Object.entries(tags)) out.append(el("h2", tag), ...ops);
  out.append(el("h2", "Schemas"));
  for (const name of Object.keys(doc.components.schemas)) out.append(schemaBlock(doc, name));
}).catch(e => { out.textContent = "Cannot load openapi.json: " + e; });
</script>
</body></html>
"""
