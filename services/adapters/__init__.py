"""Provider adapters: RunPod, Hugging Face Inference Endpoints, Replicate, Modal.

One job contract (``contract.py``), live HTTP clients per provider, a dry-run stand-in
(``dryrun.py``), a seeded simulation (``sim.py``), secrets (``secrets.py``), the
registry that decides, per provider, live or dry-run and says why (``registry.py``), the
job book folded from ``adapter.*`` events (``tracking.py``: which jobs are live, what a
restarted service needs to answer for them), inline outputs saved as files
(``artifacts.py``), and the service that serves them over NATS (``service.py``). The
types that cross NATS live in ``schemas/adapters.py``, the ``[adapters]`` config section
in ``schemas/adapter_settings.py``.
"""

from schemas.adapter_settings import AdaptersSettings, RetryPolicy
from schemas.adapters import ProviderDescription, ProviderProfile, SimTranscript

from .contract import (
    PROVIDERS,
    TERMINAL_STATUSES,
    CancelResult,
    HealthResult,
    PollResult,
    ProviderAdapter,
    ProviderJob,
    Status,
    SubmitResult,
)
from .errors import AdapterError
from .http import HttpOptions
from .registry import AdapterRegistry, build_registry
from .secrets import Secret, SecretStore, load_secrets
from .sim import encode_transcript, simulate

__all__ = [
    "PROVIDERS",
    "TERMINAL_STATUSES",
    "AdapterError",
    "AdapterRegistry",
    "AdaptersSettings",
    "CancelResult",
    "HealthResult",
    "HttpOptions",
    "PollResult",
    "ProviderAdapter",
    "ProviderDescription",
    "ProviderJob",
    "ProviderProfile",
    "RetryPolicy",
    "Secret",
    "SecretStore",
    "SimTranscript",
    "Status",
    "SubmitResult",
    "build_registry",
    "encode_transcript",
    "load_secrets",
    "simulate",
]
