"""``[ops]``: what ``gpuroute doctor`` checks beyond gpuroute itself.

Model files are checked only inside ``model_roots`` (a path that resolves
outside every root is refused, so a config cannot make doctor stat or list
arbitrary folders). Worker endpoints are the local inference servers the
executors call (ComfyUI, llama.cpp, anything with a health route).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]

HEALTH_PATHS: dict[str, str] = {
    "comfyui": "/system_stats",
    "llamacpp": "/health",
    "http": "/health",
}
"""The health route of each kind of worker, unless ``health_path`` says otherwise."""


class WorkerEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    """Base URL: ``http://127.0.0.1:8188``."""
    kind: Literal["comfyui", "llamacpp", "http"] = "http"
    health_path: Annotated[str, msgspec.Meta(pattern=r"^/", max_length=512)] | None = None

    @property
    def health_url(self) -> str:
        return self.url.rstrip("/") + (self.health_path or HEALTH_PATHS[self.kind])


class OpsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_roots: list[Text] = msgspec.field(default_factory=list)
    """Folders model files may live in; their free space is checked too."""
    model_files: list[Text] = msgspec.field(default_factory=list)
    """Model files to check (absolute, or relative to the first root)."""
    workers: list[WorkerEndpoint] = msgspec.field(default_factory=list)
    settle_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 3.0
    """Seconds between the two size checks of each model file (a file still being
    copied or synced changes size in between)."""
    min_free_mb: Annotated[int, msgspec.Meta(ge=0)] = 1024
    """Less free space than this under the data directory or a model root fails."""
    max_gpu_temp_c: Annotated[int, msgspec.Meta(ge=0, le=200)] = 85
    """A GPU at or over this temperature is unsafe (the advisor falls back to CPU)."""
    vram_full_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 95.0
    """A GPU with this share of its memory in use is full."""
    nats_conf: Text | None = None
    """The nats-server config doctor reads ``sync_interval`` from; None: the
    embedded server's (``<data-dir>/nats/server.conf``)."""
    listen_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    """How long doctor listens for heartbeats and ``$SRV`` answers after asking."""
    growth_warn_mb_per_day: Annotated[float, msgspec.Meta(gt=0, le=1e9)] = 1024.0
    """events.db or JetStream growing faster than this (MiB per day, over the
    time between their first and last event) is a warn in doctor."""
