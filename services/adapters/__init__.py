"""Provider adapters: RunPod, Hugging Face Inference Endpoints, Replicate, Modal.

One job contract (``contract.py``), live HTTP clients per provider, a dry-run stand-in
(``dryrun.py``), a seeded simulation (``sim.py``), the live clients' options
(``options.py``: the runtime's HTTP policy plus the service's hooks), the
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
from .options import AdapterOptions
from .registry import AdapterRegistry, build_registry
from .sim import encode_transcript, simulate

__all__ = [
    "PROVIDERS",
    "TERMINAL_STATUSES",
    "AdapterError",
    "AdapterOptions",
    "AdapterRegistry",
    "AdaptersSettings",
    "CancelResult",
    "HealthResult",
    "PollResult",
    "ProviderAdapter",
    "ProviderDescription",
    "ProviderJob",
    "ProviderProfile",
    "RetryPolicy",
    "SimTranscript",
    "Status",
    "SubmitResult",
    "build_registry",
    "encode_transcript",
    "simulate",
]
