"""Cloud workers (issue 14): rented GPU pods, their costs and the daily cap.

``pods.py`` is the pod client's interface (``PodClient``, ``pod_client()``), its error
tree, dry-run pods and the stuck rule; ``runpod_v2.py`` is the live RunPod REST API v2
client. The pod types live in ``schemas/cloud.py``.
"""

from schemas.cloud import PodInfo, PodPort, PodSpec, PodsSettings, PodStatus

from .pods import (
    CloudError,
    DryRunPods,
    MalformedAnswer,
    PodClient,
    PodNotFound,
    ProviderProblem,
    ProviderUnreachable,
    RateLimited,
    dry_run_reason,
    pod_client,
    stuck,
)

__all__ = [
    "CloudError",
    "DryRunPods",
    "MalformedAnswer",
    "PodClient",
    "PodInfo",
    "PodNotFound",
    "PodPort",
    "PodSpec",
    "PodStatus",
    "PodsSettings",
    "ProviderProblem",
    "ProviderUnreachable",
    "RateLimited",
    "dry_run_reason",
    "pod_client",
    "stuck",
]
