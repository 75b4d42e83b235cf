"""Exceptions of the gpuroute runtime, and the root of every package's errors.

    GpurouteError                 root: every error we raise on purpose
    ├── ConfigError               a config or secrets file is unreadable or invalid
    │   └── AdvisorConfigError    (services/advisor/errors.py) an advisor config or seed file
    ├── NatsServerError           the embedded nats-server could not start
    ├── BusError                  NATS is unreachable or refused a publish
    ├── StoreError                the SQLite event log failed
    ├── ServiceCallError          a request/reply endpoint answered with an error
    │                             (``code`` is HTTP-like: 400 bad input, 404 not found,
    │                             503 unavailable)
    ├── EndpointError             (endpoints.py) a handler's answer as a service error:
    │                             ``code`` and ``description`` go back to the caller
    ├── FollowError               (follow.py) the store cannot be read while following
    │   └── FollowerBehind        (follow.py) a live follower fell too far behind;
    │                             carries the position to resume from
    ├── DataDirInUse              (datadir.py) another gpuroute holds the data directory
    ├── ProviderError             (provider_errors.py) a call to an outside provider, or
    │   │                         its secrets, failed: ``provider``, ``call``, ``reason``
    │   ├── SecretsFileError      (provider_errors.py) the secrets file is unreadable or
    │   │                         malformed (secrets.py raises it; ``path``, ``key``)
    │   ├── TransportError        no usable HTTP answer came back (http.py raises these)
    │   │   ├── ProviderTimeoutError      the call ran past its timeout
    │   │   └── ProviderConnectionError   connecting or reading failed
    │   ├── ProviderHTTPError     an error status after the retries allowed (``status``)
    │   │   ├── AuthError                 401 / 403: the token is wrong or lacks rights
    │   │   ├── NotFoundError             404: unknown job, pod, endpoint or route
    │   │   ├── RateLimitedError          429 (``retry_after_s``)
    │   │   └── ProviderUnavailableError  502 / 503 / 504
    │   ├── MalformedResponseError  not the JSON the provider documents, or too big
    │   └── AdapterError          (services/adapters/errors.py) the adapters' root
    ├── AdvisorError              (services/advisor/errors.py) the advisor's root
    ├── BudgetError               (services/budget/errors.py) the budget's root
    ├── CloudError                (services/cloud/pods.py) the pod client's root
    ├── GatewayError              (services/gateway/errors.py) the gateway's root
    └── SchedulerError            (services/scheduler/errors.py) the scheduler's root

The classes marked with a module live beside the code that raises them; every
runtime one, and every other package's root, is listed here; the module that
defines a package's root draws the rest of that package's tree
(``tests/runtime/test_error_tree.py`` walks ``services/`` and keeps all of it
complete). Foreign exceptions are translated where they enter our code
(``raise StoreError(...) from e``); messages are one readable line.
"""

from __future__ import annotations


class GpurouteError(Exception):
    """Root of every error gpuroute raises on purpose."""


class ConfigError(GpurouteError):
    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class NatsServerError(GpurouteError):
    pass


class BusError(GpurouteError):
    pass


class StoreError(GpurouteError):
    pass


class ServiceCallError(GpurouteError):
    def __init__(self, subject: str, code: int, description: str) -> None:
        self.subject = subject
        self.code = code
        self.description = description
        super().__init__(f"{subject}: {code} {description}")
