"""Property-based fuzz of every gateway route (issue "Hardening I"): whatever the
path, query and body, the answer is never a 5xx, and every 4xx is JSON
``{ok: false, error}``. The gateway runs on a real socket in front of the real
store, adapters (dry-run) and advisor; requests go over raw ``http.client``
from a thread, so nothing in the client tidies them up.

Deterministic (``derandomize``) and bounded (``EXAMPLES`` per route). The
requests tried and the status codes seen are printed (``pytest -s``) and
recorded as the test's ``fuzz`` property.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.adapters import SimulateBody, SubmitBody
from schemas.advisor import AdvisorJobSpecBody, CostRequest, FlagsUpdate
from schemas.providers import ProviderProfileBody
from services.gateway.service import GatewayService

EXAMPLES = 25
ROUTES = [
    ("GET", "/health"),
    ("GET", "/api/events"),
    ("GET", "/api/modder/hooks"),
    ("GET", "/api/modder/hooks/ws"),
    ("GET", "/api/gpu/list"),
    ("POST", "/api/compute/advise"),
    ("POST", "/api/compute/costs"),
    ("GET", "/api/providers"),
    ("POST", "/api/providers"),
    ("GET", "/api/providers/stats"),
    ("GET", "/api/providers/{id}"),
    ("PUT", "/api/providers/{id}"),
    ("DELETE", "/api/providers/{id}"),
    ("GET", "/api/flags"),
    ("PUT", "/api/flags"),
    ("POST", "/api/providers/gpu/health"),
    ("POST", "/api/providers/gpu/submit"),
    ("GET", "/api/providers/gpu/poll/{id}"),
    ("POST", "/api/providers/gpu/cancel/{id}"),
    ("GET", "/api/providers/gpu/providers"),
    ("POST", "/api/providers/gpu/simulate"),
    ("GET", "/{id}/{id}"),  # no such route
]


def _field_names(types: list[Any], depth: int = 2) -> list[str]:
    names: set[str] = set()
    for t in types:
        if not (isinstance(t, type) and issubclass(t, msgspec.Struct)):
            continue
        for f in msgspec.structs.fields(t):
            names.add(f.encode_name)
            if depth:
                names.update(_field_names([*getattr(f.type, "__args__", ()), f.type], depth - 1))
    return sorted(names)


FIELDS = _field_names(
    [AdvisorJobSpecBody, CostRequest, FlagsUpdate, ProviderProfileBody, SubmitBody, SimulateBody]
)
QUERY_NAMES = ["after", "limit", "type", "key", "last", "topic", "subjects", "debug", "kind",
               "provider", "job_id", "patterns"]  # fmt: skip

texts = st.text(max_size=40) | st.sampled_from(
    ["runpod", "local", "job.>", "*.failed", "-1", "0", "1", str(2**63), "1e309", "nan", "true",
     "a" * 300, "\x00", "\ud800", "é", "a,b,c", ">"]
)  # fmt: skip
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**70)
    | st.floats() | texts
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["none", "json", "object", "bytes", "utf8", "deep"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    doc = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
    raw = _encode(doc if kind != "json" else draw(json_values))
    if kind == "utf8" and len(raw) > 2:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    if kind == "deep":
        depth = draw(st.integers(60, 2000))
        raw = b'{"job": {"input": ' + b"[" * depth + b"]" * depth + b"}}"
    return raw


@st.composite
def requests(draw: st.DrawFn, method: str, template: str) -> tuple[str, str, bytes | None]:
    path = template
    while "{id}" in path:
        segment = draw(texts.filter(lambda s: s not in ("", ".", "..")))
        path = path.replace("{id}", quote(segment, safe="", errors="surrogatepass"), 1)
    query = draw(st.dictionaries(st.sampled_from(QUERY_NAMES) | st.text(max_size=6), texts,
                                 max_size=4))  # fmt: skip
    if query:
        path += "?" + "&".join(
            f"{quote(k, errors='surrogatepass')}={quote(v, errors='surrogatepass')}"
            for k, v in query.items()
        )
    return method, path, draw(bodies())


def fuzz(port: int, seen: Counter[int], failures: list[str]) -> int:
    tried = 0
    for method, template in ROUTES:

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(requests(method, template))
        def one(request: tuple[str, str, bytes | None]) -> None:
            nonlocal tried
            tried += 1
            status, content_type, body = send(port, *request)
            seen[status] += 1
            problem = None
            if status >= 500:
                problem = "5xx"
            elif content_type != "application/json":
                problem = f"content type {content_type!r}"
            else:
                doc = json.loads(body)
                if status >= 400 and not (doc.get("ok") is False and doc.get("error")):
                    problem = "not {ok: false, error}"
            if problem:
                failures.append(f"{problem}: {request!r:.300} -> {status} {body[:300]!r}")

        one()
    return tried


def send(port: int, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", "").split(";")[0], r.read()
    finally:
        conn.close()


async def test_every_route_answers_fuzzed_input_with_json_and_never_5xx(
    stack: GatewayService, record_property: Any
) -> None:
    seen: Counter[int] = Counter()
    failures: list[str] = []
    tried = await asyncio.to_thread(fuzz, stack.port, seen, failures)
    summary = {"requests": tried, "routes": len(ROUTES), "statuses": dict(sorted(seen.items()))}
    print(f"\nfuzz: {summary}")
    record_property("fuzz", summary)
    assert not failures, "\n".join(failures[:20])
    assert tried >= EXAMPLES * len(ROUTES) // 2
