"""Errors raised by the provider adapters.

Every failure that reaches a caller of ``services.adapters`` is an ``AdapterError``;
aiohttp, msgspec and tomllib exceptions are translated where they enter our code.
Each error carries ``provider`` (``runpod``, ``replicate``, ``huggingface``, ``modal``
or ``""`` when no provider is involved), ``call`` (``submit``, ``poll``, ``cancel``,
``health``, ``load_secrets``, ...) and ``reason`` (what was wrong, in words), and its
message reads ``"<provider> <call>: <reason>"``. No error ever holds a secret value:
provider-supplied text is redacted before it is put in ``reason``. ``AdapterError`` is a
``GpurouteError``, so the CLI prints one that escapes as one line, never a traceback.

    AdapterError
    ├── SecretsFileError          the secrets file is unreadable or malformed (path, key)
    ├── SettingsError             an adapter setting is missing or invalid
    ├── TransportError            no usable HTTP answer came back
    │   ├── ProviderTimeoutError      the call ran past its timeout
    │   └── ProviderConnectionError   connecting or reading failed
    ├── ProviderHTTPError         the provider answered with an error status (status)
    │   ├── AuthError                 401 / 403: the token is wrong or lacks rights
    │   ├── NotFoundError             404: unknown job, endpoint or route
    │   ├── RateLimitedError          429 after the retries allowed (retry_after_s)
    │   └── ProviderUnavailableError  502 / 503 / 504 after the retries allowed
    ├── MalformedResponseError    the answer was not the JSON the provider documents
    ├── InvalidJobError           the job cannot be sent to this provider as given
    ├── UnknownProviderError      a provider name we have no adapter for
    ├── UnknownJobError           a remote id no one submitted (dry-run ids, HF local ids)
    ├── JobConflictError          the job exists, but this call cannot be served for it
    │                             here or now (a live job whose provider cannot go live)
    └── NotReadyError             the service is still reading its jobs from the store
"""

from __future__ import annotations

from services.runtime.errors import GpurouteError


class AdapterError(GpurouteError):
    """Root of every adapter error; ``str(err)`` is a one-line readable message."""

    def __init__(self, provider: str, call: str, reason: str) -> None:
        self.provider = provider
        self.call = call
        self.reason = reason
        prefix = f"{provider} {call}" if provider else call
        super().__init__(f"{prefix}: {reason}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, call={self.call!r}, "
            f"reason={self.reason!r})"
        )

    def to_dict(self) -> dict[str, object]:
        """The error as plain data, for an error reply or an event payload."""
        return {
            "error": type(self).__name__,
            "provider": self.provider,
            "call": self.call,
            "reason": self.reason,
        }


class SecretsFileError(AdapterError):
    """The secrets file could not be read or does not have the documented shape."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.problem = reason
        where = f"{path}: key {key!r}" if key else path
        super().__init__("", "load_secrets", f"{where}: {reason}")


class SettingsError(AdapterError):
    """An adapter setting (endpoint id, model, base URL, ...) is missing or invalid."""


class TransportError(AdapterError):
    """No usable HTTP answer: timeout, refused connection, reset, bad payload framing."""


class ProviderTimeoutError(TransportError):
    """The call did not finish within its timeout (after the retries allowed)."""


class ProviderConnectionError(TransportError):
    """Connecting to or reading from the provider failed (after the retries allowed)."""


class ProviderHTTPError(AdapterError):
    """The provider answered with a status we do not treat as success."""

    def __init__(self, provider: str, call: str, reason: str, *, status: int) -> None:
        self.status = status
        super().__init__(provider, call, reason)

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["status"] = self.status
        return data


class AuthError(ProviderHTTPError):
    """401 or 403: the token was refused."""


class NotFoundError(ProviderHTTPError):
    """404: the job, endpoint, model or route does not exist."""


class RateLimitedError(ProviderHTTPError):
    """429 that outlived the retries allowed (or a submit, which is not retried)."""

    def __init__(
        self, provider: str, call: str, reason: str, *, status: int, retry_after_s: float | None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(provider, call, reason, status=status)

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["retry_after_s"] = self.retry_after_s
        return data


class ProviderUnavailableError(ProviderHTTPError):
    """502, 503 or 504 that outlived the retries allowed."""


class MalformedResponseError(AdapterError):
    """The provider answered, but not with the JSON its API documents."""


class InvalidJobError(AdapterError):
    """The job cannot be sent to this provider as given (e.g. an unsupported target)."""


class UnknownProviderError(AdapterError):
    """A provider name that is not one of ours."""


class UnknownJobError(AdapterError):
    """A remote id that this adapter never issued (adapters that keep local job state)."""


class JobConflictError(AdapterError):
    """The job is known, but the call cannot be made for it here or now: a job submitted
    live whose provider cannot go live any more, or a Hugging Face request running in
    another adapters instance. The reason says which and what to do."""


class NotReadyError(AdapterError):
    """The service has not yet read the jobs it knows of from the store, so it cannot
    tell a live job from a dry-run one; the caller should retry shortly."""
