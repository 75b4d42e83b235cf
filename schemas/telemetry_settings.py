"""The ``[telemetry]`` config section: the node id, how often to sample, what to publish.

:class:`TelemetrySettings` is the section as ``services/runtime/config.py`` loads
it. Strict like every config table (a typo is an error naming the key), every
field has a working default and every number is bounded, so TOML's ``inf`` or
``nan`` is refused at load. Units: seconds (``*_s``), MiB (``*_mb``), percent
(``*_pct``), degrees Celsius (``*_c``). docs/telemetry.md says what each does.
"""

from __future__ import annotations

import re
import socket
from typing import Annotated

import msgspec

from schemas.limits import MAX_NAME
from schemas.telemetry import NodeId

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Band = Annotated[float, msgspec.Meta(ge=0, le=1 << 40)]

_NOT_IN_NODE_ID = re.compile(r"[^A-Za-z0-9._-]")


class Deadbands(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How far each reading may move from the last published sample before a new
    one is published. A reading moves past its band when ``|new - old| > band``
    (0: any change publishes). A reading that appears or disappears (read before,
    unknown now), a GPU added or lost, a new driver or a new reason always does."""

    vram_mb: Band = 256.0
    """VRAM used and free, per GPU."""
    gpu_util_pct: Band = 20.0
    """GPU utilisation, per GPU."""
    temperature_c: Band = 5.0
    """GPU temperature, per GPU."""
    ram_mb: Band = 512.0
    """Host RAM available."""
    cpu_pct: Band = 25.0
    """Host CPU utilisation."""


class TelemetrySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """[telemetry]: this node's id and its sampler's timing and deadbands."""

    node: NodeId | None = None
    """This process's node: the telemetry service publishes as it and the advisor
    decides for it. None: the host name (see :meth:`node_id`)."""
    interval_s: Seconds = 10.0
    """Seconds between two readings (a reading is taken, not always published)."""
    keepalive_s: Seconds = 300.0
    """A sample is published at least this often, moved or not."""
    deadband: Deadbands = msgspec.field(default_factory=Deadbands)

    def node_id(self) -> str:
        """``node``, else the host name made a valid :data:`NodeId` (characters
        outside ``[A-Za-z0-9._-]`` become ``-``, cut to 128; ``localhost`` when
        nothing is left), so an odd host name never stops a service."""
        if self.node is not None:
            return self.node
        name = _NOT_IN_NODE_ID.sub("-", socket.gethostname())[:MAX_NAME].lstrip("._-")
        return name or "localhost"
