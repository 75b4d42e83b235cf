"""The OpenAPI document is generated from the route table: it validates as
OpenAPI 3.1, lists every registered route and nothing else, and is what
``GET /openapi.json`` and ``gpuroute schema --openapi`` give (issue
"Foundations I")."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from services.gateway.openapi import document, statuses
from services.gateway.routes import TABLE
from services.gateway.service import GatewayService
from services.gateway.table import Route, register, router_path
from tests.support import BIN


def registered(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def test_the_document_validates_and_lists_exactly_the_registered_routes() -> None:
    doc = document(TABLE)
    validate(doc)
    app = web.Application()
    register(app, TABLE)
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == registered(app)
    assert len(documented) == len(TABLE)


def test_every_ref_resolves_and_every_operation_names_its_subject() -> None:
    doc = document(TABLE)
    text = msgspec.json.encode(doc).decode()
    refs = set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(doc["components"]["schemas"])
    for route in TABLE:
        op = doc["paths"][route.path][route.method.lower()]
        assert op.get("x-nats-subject") == route.subject
        assert sorted(map(int, op["responses"])) == statuses(route)


def test_a_path_parameter_never_matches_a_sibling_literal() -> None:
    table = [Route(method="GET", path="/a/{id}", summary="", tag="t"),
             Route(method="GET", path="/a/stats", summary="", tag="t"),
             Route(method="GET", path="/a/gpu/x", summary="", tag="t")]  # fmt: skip
    assert router_path(table[0], table) == "/a/{id:(?!(?:gpu|stats)$)[^{}/]+}"
    assert router_path(table[1], table) == "/a/stats"


async def test_the_gateway_serves_the_document_and_a_docs_page(gateway: GatewayService) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/openapi.json") as r:
            assert r.status == 200 and await r.json() == document(TABLE)
        async with session.get(gateway.url + "/docs") as r:
            page = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            assert 'fetch("openapi.json")' in page


@pytest.mark.parametrize("flag", ["--openapi"])
def test_the_cli_prints_the_same_document(flag: str) -> None:
    out = subprocess.run(
        [str(BIN / "gpuroute"), "schema", flag], capture_output=True, check=True, timeout=60
    ).stdout
    printed: Any = msgspec.json.decode(out)
    assert printed == document(TABLE)
