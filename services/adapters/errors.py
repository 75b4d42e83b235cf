"""Errors raised by the provider adapters.

Every failure that reaches a caller of ``services.adapters`` is a ``ProviderError``
(services/runtime/provider_errors.py): the HTTP layer and the secrets loader are
shared with the cloud service and raise the runtime's provider errors as they are;
what only the adapters can get wrong is an ``AdapterError``. aiohttp, msgspec and
tomllib exceptions are translated where they enter our code. Each error carries
``provider`` (``runpod``, ``replicate``, ``huggingface``, ``modal`` or ``""`` when no
provider is involved), ``call`` (``submit``, ``poll``, ``cancel``, ``health``,
``load_secrets``, ...) and ``reason`` (what was wrong, in words), and its message reads
``"<provider> <call>: <reason>"``. No error ever holds a secret value: provider-supplied
text is redacted before it is put in ``reason``. Both roots are ``GpurouteError``s, so
the CLI prints one that escapes as one line, never a traceback.
``failures.py`` maps each to the code of an error reply.

    ProviderError                 (services/runtime/provider_errors.py)
    ├── SecretsFileError          the secrets file is unreadable or malformed (path, key)
    ├── TransportError            no usable HTTP answer came back
    │   ├── ProviderTimeoutError      the call ran past its timeout
    │   └── ProviderConnectionError   connecting or reading failed
    ├── ProviderHTTPError         the provider answered with an error status (status)
    │   ├── AuthError                 401 / 403: the token is wrong or lacks rights
    │   ├── NotFoundError             404: unknown job, endpoint or route
    │   ├── RateLimitedError          429 after the retries allowed (retry_after_s)
    │   └── ProviderUnavailableError  502 / 503 / 504 after the retries allowed
    ├── MalformedResponseError    the answer was not the JSON the provider documents
    └── AdapterError              root of the adapters' own errors (this module)
        ├── SettingsError             an adapter setting is missing or invalid
        ├── InvalidJobError           the job cannot be sent to this provider as given
        ├── UnknownProviderError      a provider name we have no adapter for
        ├── UnknownJobError           a remote id no one submitted (dry-run ids, HF
        │                             local ids)
        ├── JobConflictError          the job exists, but this call cannot be served
        │                             for it here or now (a live job whose provider
        │                             cannot go live)
        └── NotReadyError             the service is still reading its jobs from the
                                      store
"""

from __future__ import annotations

from services.runtime.provider_errors import ProviderError


class AdapterError(ProviderError):
    """Root of the errors only the adapters raise; ``str(err)`` is one readable line."""


class SettingsError(AdapterError):
    """An adapter setting (endpoint id, model, base URL, ...) is missing or invalid."""


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
