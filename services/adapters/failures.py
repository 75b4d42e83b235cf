"""How a ``ProviderError`` leaves the adapters service: a ``nats.micro`` service error.

The code is HTTP-like, chosen here and nowhere else; the gateway passes it through:

    400  InvalidJobError, UnknownProviderError    the request cannot be served as given
    404  UnknownJobError; NotFoundError on poll   the remote id is unknown
         or cancel
    409  JobConflictError                         the job exists; this call cannot be served
    429  RateLimitedError                         ``retry_after_s`` becomes Retry-After
    503  NotReadyError                            still reading the job history; retry
    504  ProviderTimeoutError                     the provider did not answer in time
    502  everything else                          the provider refused or answered badly

The description is an ``AdapterFailure`` as one line of ASCII JSON
(``schemas.adapters.encode_failure``), so a caller gets provider, call and reason as fields.
"""

from __future__ import annotations

from schemas.adapters import AdapterFailure, encode_failure
from services.runtime.endpoints import EndpointError
from services.runtime.provider_errors import (
    NotFoundError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeoutError,
    RateLimitedError,
)

from .errors import (
    InvalidJobError,
    JobConflictError,
    NotReadyError,
    UnknownJobError,
    UnknownProviderError,
)


def status_code(err: ProviderError) -> int:
    """The HTTP-like code for ``err`` (see the module docstring)."""
    match err:
        case InvalidJobError() | UnknownProviderError():
            return 400
        case UnknownJobError():
            return 404
        case NotFoundError() if err.call in ("poll", "cancel"):
            return 404
        case JobConflictError():
            return 409
        case RateLimitedError():
            return 429
        case NotReadyError():
            return 503
        case ProviderTimeoutError():
            return 504
    return 502


def to_failure(err: ProviderError) -> AdapterFailure:
    return AdapterFailure(
        error=str(err),
        kind=type(err).__name__,
        provider=err.provider,
        call=err.call,
        reason=err.reason,
        provider_status=err.status if isinstance(err, ProviderHTTPError) else None,
        retry_after_s=err.retry_after_s if isinstance(err, RateLimitedError) else None,
    )


def endpoint_error(err: ProviderError) -> EndpointError:
    """The error to raise from an endpoint handler for ``err``."""
    return EndpointError(status_code(err), encode_failure(to_failure(err)))
