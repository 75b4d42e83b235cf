"""Schemathesis drives every operation of the gateway's own OpenAPI document
against the real gateway in front of the real store, adapters (dry-run) and
advisor (issue "Foundations I"; replaces the hand-written fuzz list).

For each operation: ``EXAMPLES`` positive cases (valid by the document) and
``EXAMPLES`` negative ones (each violating it somewhere), deterministic
(``derandomize``) and without shrinking. Every answer must be no 5xx but the
503 ``/health`` may give, a status the document lists for the operation, JSON
(HTML for ``/docs``), and every error ``{ok: false, error}``; a success must
match the reply schema. The requests tried and the statuses seen are printed
(``pytest -s``) and recorded as the test's ``schemathesis`` property.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.openapi import document
from services.gateway.routes import TABLE
from services.gateway.service import GatewayService

EXAMPLES = 4
"""Cases per operation and mode: 4 + 4 for each of the ~66 operations is ~450
requests. Most of the time is hypothesis drawing cases in the test's own
process (its thread shares the GIL with the six services); 8 + 8 took twice
the CPU (fuzz ~17 s instead of ~9 s) and wall times of 27-50 s on the shared
2-core machine. The routes share one parser, one error map and one envelope,
so what breaks one kind of input breaks it on every route that takes it."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip
MAY_BE_5XX = {("GET", "/health"): {503}, ("GET", "/api/ops/doctor"): {503}}
"""Statuses over 499 an operation may give in this set-up: /health and doctor
answer 503 when a check fails (the adapters never send a heartbeat /health would
expect; on a loaded machine doctor's JetStream probe can time out); nothing else
may fail."""


def fuzz(base_url: str, seen: dict[str, Counter[int]], failures: list[str]) -> int:
    schema = schemathesis.openapi.from_dict(document(TABLE))
    tried = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            op = result.ok()
            counts = seen.setdefault(f"{op.method.upper()} {op.path}", Counter())
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    tried += _cases(op, mode, base_url, session, counts, failures)
                except Unsatisfiable:  # nothing to violate: no parameter and no body
                    assert mode is GenerationMode.NEGATIVE, op.label
    return tried


def _cases(op: Any, mode: GenerationMode, base_url: str, session: requests.Session,
           counts: Counter[int], failures: list[str]) -> int:  # fmt: skip
    tried = 0

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(op.as_strategy(generation_mode=mode))
    def one(case: schemathesis.Case) -> None:
        nonlocal tried
        tried += 1
        response = case.call(base_url=base_url, session=session, timeout=30)
        counts[response.status_code] += 1
        problem = _problem(case, response)
        if problem:
            failures.append(f"{case.method} {case.formatted_path}: {problem}"[:600])

    one()
    return tried


def _problem(case: schemathesis.Case, response: Any) -> str | None:
    status = response.status_code
    if status >= 500 and status not in MAY_BE_5XX.get((case.method, case.path), ()):
        return f"{status} {response.text[:300]}"
    if status >= 400:
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return f"{status} not JSON: {response.content[:200]!r}"
        if not (isinstance(body, dict) and body.get("ok") is False and body.get("error")):
            return f"{status} not {{ok: false, error}}: {response.text[:200]}"
    try:
        case.validate_response(response, checks=CHECKS)
    except (Exception, BaseExceptionGroup) as e:  # schemathesis's FailureGroup
        return f"{status} {type(e).__name__}: {' '.join(str(e).split())[:400]}"
    return None


@pytest.mark.timeout(150)  # ~64 operations x 8 requests against six services
async def test_schemathesis_finds_no_server_error_and_only_documented_answers(
    stack: GatewayService, record_property: Any
) -> None:
    seen: dict[str, Counter[int]] = {}
    failures: list[str] = []
    tried = await asyncio.to_thread(fuzz, stack.url, seen, failures)
    statuses: Counter[int] = sum(seen.values(), Counter())
    summary = {"requests": tried, "operations": len(seen),
               "statuses": dict(sorted(statuses.items())),
               "by_operation": {k: dict(sorted(v.items())) for k, v in seen.items()}}  # fmt: skip
    print(f"\nschemathesis: {msgspec.json.encode(summary).decode()}")
    record_property("schemathesis", summary)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:25])
    assert len(seen) == len(TABLE)
    assert tried >= len(TABLE) * EXAMPLES
