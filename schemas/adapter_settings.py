"""The ``[adapters]`` config section: secrets file, per-provider settings, retry policy.

:class:`AdaptersSettings` is the section as ``services/runtime/config.py`` loads it
from the config file. Every table is strict (a typo is an error naming the file and
the key) and every field has a working default. No type here ever holds a secret
value: secrets come from environment variables or the secrets file it names.
Units: seconds (``*_s``).

Every number is bounded above as well as below, so a typo (``timeout_s = 1e400``) or
TOML's ``inf``/``nan`` is rejected at load naming the key, and no setting can make the
timeout or backoff arithmetic overflow, hang forever or go NaN.
"""

from __future__ import annotations

import random
from typing import Annotated, Final

import msgspec

MAX_TIMEOUT_S: Final = 3600.0
"""The longest timeout any one call may be given (an hour)."""
MAX_DELAY_S: Final = 3600.0
"""The longest any one wait between retries may be."""
MAX_ATTEMPTS: Final = 100
MAX_JOBS_KEPT: Final = 1_000_000
MAX_ARTIFACT_BYTES: Final = 1024 * 1024 * 1024
"""The largest inline output ``artifact_max_bytes`` may allow saving (1 GiB)."""
_MAX_EXPONENT: Final = 64  # 2**64 * MAX_DELAY_S is still a finite float

Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY_S)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)]


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the config tables: immutable, keyword-only, typos rejected."""


class RetryPolicy(_Settings, frozen=True):
    """How often and how long to retry. ``max_attempts`` counts the first try."""

    max_attempts: Attempts = 4
    base_delay_s: Delay = 0.5
    max_delay_s: Delay = 20.0
    max_retry_after_s: Delay = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based): exponential,
        half of it fixed and half drawn from ``rng`` (so clients spread out). The
        exponent is capped, so no attempt number can overflow it."""
        exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**exponent)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


class RunPodSettings(_Settings, frozen=True):
    endpoint_id: str = ""
    base_url: str = "https://api.runpod.ai/v2"
    timeout_s: Seconds = 30.0
    dry_run: bool = False

    def missing(self) -> list[str]:
        """Dotted names of settings that must be set before going live."""
        return [] if self.endpoint_id else ["runpod.endpoint_id"]

    def target(self) -> str | None:
        return self.endpoint_id or None


class HuggingFaceSettings(_Settings, frozen=True):
    namespace: str = ""
    name: str = ""
    endpoint_url: str = ""  # overrides the URL the management API reports
    inference_path: str = ""
    management_url: str = "https://api.endpoints.huggingface.cloud/v2"
    # > 0: send X-Scale-Up-Timeout (it is added to inference_timeout_s)
    scale_up_timeout_s: Annotated[int, msgspec.Meta(ge=0, le=int(MAX_TIMEOUT_S))] = 0
    scale_up_max_attempts: Attempts = 30
    timeout_s: Seconds = 30.0
    inference_timeout_s: Seconds = 300.0
    max_jobs_kept: Annotated[int, msgspec.Meta(ge=1, le=MAX_JOBS_KEPT)] = 1000
    dry_run: bool = False

    def missing(self) -> list[str]:
        return [f"huggingface.{key}" for key in ("namespace", "name") if not getattr(self, key)]

    def target(self) -> str | None:
        return f"{self.namespace}/{self.name}" if self.namespace and self.name else None


class ReplicateSettings(_Settings, frozen=True):
    """Exactly one of ``model`` (``owner/name``), ``version`` (a version id) or
    ``deployment`` (``owner/name``) is the default target; a job's ``target`` may
    override it with ``owner/name`` or ``owner/name:version``."""

    model: str = ""
    version: str = ""
    deployment: str = ""
    base_url: str = "https://api.replicate.com"
    timeout_s: Seconds = 30.0
    dry_run: bool = False

    def missing(self) -> list[str]:
        chosen = [name for name in ("model", "version", "deployment") if getattr(self, name)]
        if not chosen:
            return ["replicate.model (or replicate.version or replicate.deployment)"]
        if len(chosen) > 1:
            return [f"only one of replicate.{', replicate.'.join(chosen)}"]
        return []

    def target(self) -> str | None:
        return self.deployment or self.model or self.version or None


class ModalSettings(_Settings, frozen=True):
    base_url: str = ""  # e.g. https://<workspace>--<app>-<label>.modal.run
    submit_path: str = "/submit"
    result_path: str = "/result"
    cancel_path: str = "/cancel"
    health_path: str = "/health"
    timeout_s: Seconds = 30.0
    dry_run: bool = False

    def missing(self) -> list[str]:
        return [] if self.base_url else ["modal.base_url"]

    def target(self) -> str | None:
        return self.base_url or None


class AdaptersSettings(_Settings, frozen=True):
    """The ``[adapters]`` config section; every field has a working default.

    ``secrets_file``: path of the secrets TOML (relative to the working directory);
    unset means secrets come from environment variables only.
    """

    secrets_file: str | None = None
    artifact_max_bytes: Annotated[int, msgspec.Meta(ge=0, le=MAX_ARTIFACT_BYTES)] = 50 * 1024 * 1024
    """The largest inline output (a base64 image, raw bytes) saved under
    ``<data-dir>/artifacts``; a larger one is left out and named in the poll's logs.
    0 saves none."""
    runpod: RunPodSettings = msgspec.field(default_factory=RunPodSettings)
    huggingface: HuggingFaceSettings = msgspec.field(default_factory=HuggingFaceSettings)
    replicate: ReplicateSettings = msgspec.field(default_factory=ReplicateSettings)
    modal: ModalSettings = msgspec.field(default_factory=ModalSettings)
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
