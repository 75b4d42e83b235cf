"""The HTTP layer's pure parts: Retry-After parsing, the seeded backoff, and the bounds
of the ``[adapters]`` settings that feed them."""

from __future__ import annotations

import email.utils
import random
import re
from pathlib import Path

import msgspec
import pytest

from schemas.adapter_settings import MAX_DELAY_S, AdaptersSettings
from schemas.adapters import decode_failure
from services.runtime.config import load_config
from services.runtime.errors import ConfigError
from services.runtime.http import (
    MAX_RETRY_AFTER_S,
    HttpReply,
    ProviderHttp,
    RetryPolicy,
    join_url,
    parse_retry_after,
    segment,
)
from services.runtime.provider_errors import ProviderError, RateLimitedError
from services.runtime.secrets import Secret


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
        "replicate",
        auth_headers={"Authorization": Secret("Bearer r8_x")},
        timeout_s=1,
        retry=RetryPolicy(),
        rng=random.Random(0),
        redact=[Secret("r8_x")],
    )
    reply = HttpReply(
        status=429,
        body=b'{"detail": "slow down, r8_x", "status": 429}',
        content_type="application/json",
        retry_after="4",
    )
    err = http.error_for("poll", reply)
    assert isinstance(err, RateLimitedError) and isinstance(err, ProviderError)
    assert str(err) == "replicate poll: HTTP 429: slow down, ***"
    assert err.to_dict() == {
        "error": "RateLimitedError",
        "provider": "replicate",
        "call": "poll",
        "reason": err.reason,
        "status": 429,
        "retry_after_s": 4.0,
    }


def test_long_error_bodies_are_cut_after_redaction() -> None:
    token = "secret-token-value"
    http = ProviderHttp(
        "modal",
        auth_headers={"Modal-Secret": Secret(token)},
        timeout_s=1,
        retry=RetryPolicy(),
        rng=random.Random(0),
    )
    body = ("x" * 295 + token + "y" * 20).encode()
    detail = http.detail(HttpReply(status=500, body=body, content_type="text/plain"))
    assert "secret-" not in detail and detail.endswith("...")


def test_url_helpers_quote_ids() -> None:
    assert segment("a/b c") == "a%2Fb%20c"
    assert join_url("http://h/v2/", "ep", "", "status/") == "http://h/v2/ep/status"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("inf", None), ("nan", None), ("-inf", None), ("1e999", None), ("1e300", MAX_RETRY_AFTER_S),
     ("99999999999999999999999999999999 Jan 2020 00:00:00 GMT", None),
     ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S)],
)  # fmt: skip
def test_retry_after_is_finite_and_bounded(header: str, seconds: float | None) -> None:
    """A provider's header never yields inf/NaN (an endless sleep, a 500 at the gateway
    when it becomes a Retry-After) nor raises OverflowError."""
    assert parse_retry_after(header) == seconds


def test_a_429_with_an_infinite_retry_after_reports_none() -> None:
    http = ProviderHttp(
        "runpod", auth_headers={}, timeout_s=1, retry=RetryPolicy(), rng=random.Random(0)
    )
    reply = HttpReply(status=429, body=b"", content_type="text/plain", retry_after="1e999")
    err = http.error_for("submit", reply)
    assert isinstance(err, RateLimitedError) and err.retry_after_s is None


def test_backoff_stays_finite_for_any_attempt_number() -> None:
    policy = RetryPolicy(base_delay_s=MAX_DELAY_S, max_delay_s=MAX_DELAY_S)
    for attempt in (1, 64, 1100, 10**6):
        delay = policy.backoff(attempt, random.Random(attempt))
        assert MAX_DELAY_S / 2 <= delay <= MAX_DELAY_S


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("adapters.retry", "max_attempts", "1000000"),
        ("adapters.retry", "base_delay_s", "inf"),
        ("adapters.retry", "max_delay_s", "nan"),
        ("adapters.retry", "max_retry_after_s", "1e400"),
        ("adapters.runpod", "timeout_s", "inf"),
        ("adapters.replicate", "timeout_s", "nan"),
        ("adapters.modal", "timeout_s", "3601"),
        ("adapters.huggingface", "timeout_s", "0"),
        ("adapters.huggingface", "inference_timeout_s", "1e309"),
        ("adapters.huggingface", "scale_up_timeout_s", "99999999999"),
        ("adapters.huggingface", "scale_up_max_attempts", "1000000"),
        ("adapters.huggingface", "max_jobs_kept", "10000000000"),
    ],
)
def test_every_number_in_the_adapters_section_is_bounded(
    tmp_path: Path, table: str, key: str, value: str
) -> None:
    """TOML's inf and nan, and absurd values, are a ConfigError naming the key."""
    path = tmp_path / "gpuroute.toml"
    path.write_text(f"[{table}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=re.escape(f"$.{table}.{key}")):
        load_config(path)


def test_the_default_adapter_settings_lie_within_their_bounds() -> None:
    defaults = msgspec.to_builtins(AdaptersSettings())
    assert msgspec.convert(defaults, AdaptersSettings) == AdaptersSettings()


def test_a_deep_service_error_description_is_not_a_failure_and_not_a_crash() -> None:
    """The gateway reads service error descriptions from NATS headers: bounded decode."""
    assert decode_failure('{"error": ' + "[" * 3000) is None
    assert decode_failure('{"error": "x\udcff"}') is None
