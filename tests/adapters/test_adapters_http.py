"""The HTTP layer's pure parts: Retry-After parsing and the seeded backoff."""

from __future__ import annotations

import email.utils
import random

import pytest

from services.adapters.errors import AdapterError, RateLimitedError
from services.adapters.http import (
    HttpReply,
    ProviderHttp,
    RetryPolicy,
    join_url,
    parse_retry_after,
    segment,
)
from services.adapters.secrets import Secret


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (" 0.5 ", 0.5), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(3)
    delays = [policy.backoff(attempt, rng) for attempt in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    again = [policy.backoff(attempt, random.Random(3)) for attempt in range(1, 2)]
    assert again[0] == delays[0]


def test_errors_have_structured_fields_and_a_readable_message() -> None:
    http = ProviderHttp(
        "replicate", auth_headers={"Authorization": Secret("Bearer r8_x")}, timeout_s=1,
        retry=RetryPolicy(), rng=random.Random(0), redact=[Secret("r8_x")],
    )
    reply = HttpReply(
        status=429, body=b'{"detail": "slow down, r8_x", "status": 429}',
        content_type="application/json", retry_after="4",
    )
    err = http.error_for("poll", reply)
    assert isinstance(err, RateLimitedError) and isinstance(err, AdapterError)
    assert str(err) == "replicate poll: HTTP 429: slow down, ***"
    assert err.to_dict() == {
        "error": "RateLimitedError", "provider": "replicate", "call": "poll",
        "reason": err.reason, "status": 429, "retry_after_s": 4.0,
    }


def test_long_error_bodies_are_cut_after_redaction() -> None:
    token = "secret-token-value"
    http = ProviderHttp(
        "modal", auth_headers={"Modal-Secret": Secret(token)}, timeout_s=1,
        retry=RetryPolicy(), rng=random.Random(0),
    )
    body = ("x" * 295 + token + "y" * 20).encode()
    detail = http.detail(HttpReply(status=500, body=body, content_type="text/plain"))
    assert "secret-" not in detail and detail.endswith("...")


def test_url_helpers_quote_ids() -> None:
    assert segment("a/b c") == "a%2Fb%20c"
    assert join_url("http://h/v2/", "ep", "", "status/") == "http://h/v2/ep/status"
