"""The HTTP client of every call to an outside provider: timeouts, retries, errors.

The adapters service (serverless jobs) and the cloud service (pods) both go through
``ProviderHttp``, so there is one retry, ``Retry-After`` and error-decoding mechanism.

- Every request has a total timeout (``timeout_s``, per client, overridable per call).
- Retries: on 429, 502, 503, 504, timeouts and broken connections, with exponential
  backoff and jitter drawn from an injected ``random.Random``, sleeping through an
  injected ``sleep`` (tests pass a recorder, so retries cost no wall time). A
  ``Retry-After`` header (seconds or HTTP date, RFC 9110 §10.2.3) replaces the backoff,
  capped at ``max_retry_after_s``; without one, an IETF ``RateLimit`` header's exhausted
  window (``r=0;t=<seconds>``, RunPod REST v2) gives the wait.
- Only calls the caller marks ``idempotent`` are retried on a status or a timeout; a
  non-idempotent POST (a submit) is sent once, because a lost answer may hide a job
  that did start. Two exceptions: a connection that was never opened (nothing was
  sent), and a status the provider documents as "refused, not processed"
  (``NOT_PROCESSED``: a 429 rate limit; the HF scale-from-zero 503 widens it): the
  request did nothing, so trying again cannot duplicate a job. Every retry, of any
  call, spends the same ``RetryPolicy`` budget and honours ``Retry-After``.
- Answers are bounded: a body over ``max_body_bytes`` is refused while it is read, and
  every JSON answer is decoded through ``schemas.limits`` (size and nesting bounded,
  invalid UTF-8 and deep nesting are a ``MalformedResponseError`` naming provider,
  call and problem, never an exception that escapes).
- Any other failure becomes a ``ProviderError`` subclass (provider_errors.py) naming
  provider, call and reason; provider text in a reason is truncated and has every
  known secret redacted.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import aiohttp
import msgspec

from schemas import limits
from schemas.adapter_settings import RetryPolicy

from .provider_errors import (
    AuthError,
    MalformedResponseError,
    NotFoundError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from .secrets import Secret

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
NOT_PROCESSED: Final = frozenset({429})
"""Statuses that mean "refused before it was processed": safe to retry even for a
non-idempotent POST (RunPod and Replicate document 429 as a rate-limit refusal)."""
MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""The largest answer read from a provider (an inline image in RunPod's output is a few
MiB of base64); a larger one is a ``MalformedResponseError``, not memory exhaustion."""
MAX_JSON_BYTES: Final = MAX_BODY_BYTES
_DETAIL_CHARS: Final = 300
MAX_RETRY_AFTER_S: Final = 86_400.0
"""A provider's ``Retry-After`` past a day is read as a day (we wait at most
``RetryPolicy.max_retry_after_s`` anyway; this bounds what is reported)."""
log = logging.getLogger("gpuroute.http")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent
    or unreadable (``inf``, ``nan`` and ``1e999`` are unreadable). A date in the past
    gives 0; anything past ``MAX_RETRY_AFTER_S`` gives that."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            return None
        return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
    current = time.time() if now is None else now
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, OverflowError):  # a day of 10**30 overflows
        return None
    return min(max(0.0, when - current), MAX_RETRY_AFTER_S)


def ratelimit_wait(value: str | None) -> str | None:
    """Seconds (as ``Retry-After`` would write them) until the latest exhausted window
    of an IETF ``RateLimit`` header resets: ``"minute";r=0;t=12, "hour";r=5;t=900``
    gives ``"12"``. None when absent, unreadable, or no window is exhausted (``r=0``).
    RunPod REST v2 sends it on every answer; a 429 without ``Retry-After`` waits this."""
    if not value:
        return None
    waits = []
    for member in value[:4096].split(","):
        params = dict(
            part.strip().partition("=")[::2] for part in member.split(";")[1:] if "=" in part
        )
        if params.get("r", "").strip() == "0" and params.get("t", "").strip().isdigit():
            waits.append(int(params["t"]))
    return str(max(waits)) if waits else None


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    """The policy every ``ProviderHttp`` of a service shares (tests replace
    ``rng``/``sleep``/``session``); a service may subclass it to carry its own
    hooks beside it (the adapters' ``AdapterOptions``)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random | None = None  # None: a fresh unseeded generator per client
    sleep: Sleep = asyncio.sleep
    session: aiohttp.ClientSession | None = None  # None: each client owns one
    redact: Sequence[Secret] = ()  # every secret known (the registry passes them all)
    max_body_bytes: int = MAX_BODY_BYTES


class HttpReply(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    body: bytes
    content_type: str
    retry_after: str | None = None


class ProviderHttp:
    """An aiohttp client bound to one provider's auth headers and retry policy."""

    def __init__(
        self,
        provider: str,
        *,
        auth_headers: Mapping[str, Secret],
        timeout_s: float,
        retry: RetryPolicy,
        rng: random.Random,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        redact: Sequence[Secret] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.provider = provider
        self._max_body = max_body_bytes
        self._auth = dict(auth_headers)
        self._timeout_s = timeout_s
        self._retry = retry
        self._rng = rng
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._secrets = [*self._auth.values(), *redact]

    def __repr__(self) -> str:
        return f"ProviderHttp(provider={self.provider!r}, headers={sorted(self._auth)})"

    @classmethod
    def build(
        cls,
        provider: str,
        auth_headers: Mapping[str, Secret],
        timeout_s: float,
        options: HttpOptions,
        redact: Sequence[Secret] = (),
    ) -> ProviderHttp:
        """A client from shared ``options``; ``redact`` adds secrets (beyond the header
        values) to scrub from provider text, e.g. the bare token inside ``Bearer ...``."""
        return cls(
            provider,
            auth_headers=auth_headers,
            timeout_s=timeout_s,
            retry=options.retry,
            rng=options.rng if options.rng is not None else random.Random(),
            sleep=options.sleep,
            session=options.session,
            redact=[*options.redact, *redact],
            max_body_bytes=options.max_body_bytes,
        )

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def redact(self, text: str) -> str:
        """``text`` with every secret this client knows replaced by ``***``."""
        for secret in self._secrets:
            value = secret.reveal()
            if value:
                text = text.replace(value, "***")
        return text

    async def request(
        self,
        call: str,
        method: str,
        url: str,
        *,
        json_body: object = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        retry_statuses: frozenset[int] | None = None,
        ok_statuses: frozenset[int] = frozenset({200, 201, 202}),
        timeout_s: float | None = None,
    ) -> HttpReply:
        """Send one request (retrying as allowed); return the reply whose status is in
        ``ok_statuses``, or raise the ``ProviderError`` that fits."""
        retry_on = (
            retry_statuses
            if retry_statuses is not None
            else (RETRYABLE_STATUSES if idempotent else NOT_PROCESSED)
        )
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self._retry.max_attempts
            try:
                reply = await self._send(call, method, url, json_body, headers, timeout_s)
            except aiohttp.ClientConnectorError as e:
                if last or isinstance(e, aiohttp.ClientSSLError):
                    raise ProviderConnectionError(
                        self.provider, call, f"cannot connect to {e.host}:{e.port}"
                    ) from e
                delay = self._retry.backoff(attempt, self._rng)
            except TimeoutError as e:
                if last or not idempotent:
                    total = timeout_s or self._timeout_s
                    raise ProviderTimeoutError(
                        self.provider, call, f"no answer within {total:g} s"
                    ) from e
                delay = self._retry.backoff(attempt, self._rng)
            except aiohttp.ClientError as e:
                if last or not idempotent:
                    raise ProviderConnectionError(
                        self.provider, call, f"connection failed ({type(e).__name__})"
                    ) from e
                delay = self._retry.backoff(attempt, self._rng)
            else:
                if reply.status in ok_statuses:
                    return reply
                if last or reply.status not in retry_on:
                    raise self.error_for(call, reply)
                delay = self._delay_for(reply, attempt)
            log.debug("retrying %s %s after try %d in %.3f s", self.provider, call, attempt, delay)
            await self._sleep(delay)

    def decode(self, call: str, reply: HttpReply, type_: type[T]) -> T:
        """The reply's JSON body as ``type_``, bounded by ``schemas.limits`` (size,
        nesting, UTF-8); ``MalformedResponseError`` naming the problem if it is not."""
        try:
            decoder: msgspec.json.Decoder[T] = limits.decoder_for(type_)
            return limits.decode(decoder, reply.body, max_bytes=MAX_JSON_BYTES, what="answer")
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise MalformedResponseError(
                self.provider, call, self.redact(f"unexpected response body: {e}")
            ) from None

    def error_for(self, call: str, reply: HttpReply) -> ProviderHTTPError:
        """The error for a reply whose status is not a success."""
        reason = f"HTTP {reply.status}: {self.detail(reply)}"
        status = reply.status
        if status in (401, 403):
            return AuthError(self.provider, call, reason, status=status)
        if status == 404:
            return NotFoundError(self.provider, call, reason, status=status)
        if status == 429:
            retry_after = parse_retry_after(reply.retry_after)
            return RateLimitedError(
                self.provider, call, reason, status=status, retry_after_s=retry_after
            )
        if status in (502, 503, 504):
            return ProviderUnavailableError(self.provider, call, reason, status=status)
        return ProviderHTTPError(self.provider, call, reason, status=status)

    def detail(self, reply: HttpReply) -> str:
        """A short, redacted description of an error body (RFC 7807 ``detail``,
        ``error``, ``message``, ``title``, or the text itself)."""
        text = reply.body[: 64 * 1024].decode("utf-8", errors="replace").strip()
        try:
            data = limits.decode_any(text) if text else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            data = None
        found = _error_text(data)
        if found is not None:
            text = found
        if not text:
            return "(empty body)"
        text = self.redact(text)  # before truncating, so no partial secret survives
        return text[:_DETAIL_CHARS] + "..." if len(text) > _DETAIL_CHARS else text

    def _delay_for(self, reply: HttpReply, attempt: int) -> float:
        retry_after = parse_retry_after(reply.retry_after)
        if retry_after is not None:
            return min(retry_after, self._retry.max_retry_after_s)
        return self._retry.backoff(attempt, self._rng)

    async def _send(
        self,
        call: str,
        method: str,
        url: str,
        json_body: object,
        headers: Mapping[str, str] | None,
        timeout_s: float | None,
    ) -> HttpReply:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        all_headers = {"Accept": "application/json"}
        all_headers.update({name: secret.reveal() for name, secret in self._auth.items()})
        if headers:
            all_headers.update(headers)
        data = None
        if json_body is not None:
            data = msgspec.json.encode(json_body)
            all_headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        async with self._session.request(
            method, url, data=data, headers=all_headers, timeout=timeout, allow_redirects=False
        ) as resp:
            if (resp.content_length or 0) > self._max_body:
                raise self._too_big(call, resp.content_length or 0)
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self._max_body:
                    raise self._too_big(call, size)
                chunks.append(chunk)
            body = b"".join(chunks)
            return HttpReply(
                status=resp.status,
                body=body,
                content_type=resp.content_type,
                retry_after=resp.headers.get("Retry-After")
                or ratelimit_wait(resp.headers.get("RateLimit")),
            )

    def _too_big(self, call: str, size: int) -> MalformedResponseError:
        return MalformedResponseError(
            self.provider, call,
            f"answer of {size} bytes is over the limit of {self._max_body} bytes",
        )  # fmt: skip


def _error_text(data: object) -> str | None:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return None
    for key in ("detail", "error", "message", "title"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            inner = _error_text(value)
            if inner:
                return inner
    return None


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment, so an id can never add a path."""
    return urllib.parse.quote(value, safe="")


def join_url(base: str, *parts: str) -> str:
    """``base`` (trailing slash optional) followed by ``parts``, already quoted."""
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts if part)])
