"""Provider adapters: RunPod, Hugging Face Inference Endpoints, Replicate, Modal.

One job contract (``contract.py``), live HTTP clients per provider, a dry-run stand-in
(``dryrun.py``), a seeded simulation (``sim.py``), secrets (``secrets.py``) and the
registry that decides, per provider, live or dry-run and says why (``registry.py``).
"""

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
from .http import HttpOptions, RetryPolicy
from .registry import AdapterRegistry, AdaptersSettings, ProviderDescription, build_registry
from .secrets import Secret, SecretStore, load_secrets
from .sim import ProviderProfile, SimTranscript, encode_transcript, simulate

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
