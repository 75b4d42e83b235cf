"""Errors of calls to outside providers, shared by every service that makes them.

``ProviderHttp`` (http.py) and the secrets loader (secrets.py) raise these; a service
catches ``ProviderError`` and translates it into its own errors where its callers
need them (the adapters service's ``AdapterError`` subclasses extend this family;
the cloud service maps it onto its ``CloudError``). Each error carries ``provider``
(``runpod``, ``replicate``, ``huggingface``, ``modal`` or ``""`` when no provider is
involved), ``call`` (``submit``, ``poll``, ``create``, ``load_secrets``, ...) and
``reason`` (what was wrong, in words), and its message reads
``"<provider> <call>: <reason>"``. No error ever holds a secret value: provider text
is redacted before it is put in ``reason``. The tree is drawn in runtime/errors.py.
"""

from __future__ import annotations

from .errors import GpurouteError


class ProviderError(GpurouteError):
    """Root of the provider-call errors; ``str(err)`` is a one-line readable message."""

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


class SecretsFileError(ProviderError):
    """The secrets file could not be read or does not have the documented shape."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.problem = reason
        where = f"{path}: key {key!r}" if key else path
        super().__init__("", "load_secrets", f"{where}: {reason}")


class TransportError(ProviderError):
    """No usable HTTP answer: timeout, refused connection, reset, bad payload framing."""


class ProviderTimeoutError(TransportError):
    """The call did not finish within its timeout (after the retries allowed)."""


class ProviderConnectionError(TransportError):
    """Connecting to or reading from the provider failed (after the retries allowed)."""


class ProviderHTTPError(ProviderError):
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


class MalformedResponseError(ProviderError):
    """The provider answered, but not with the JSON its API documents."""
