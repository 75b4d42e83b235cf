"""``[http]`` and ``[gateway]``: where the gateway listens, whom it serves and
how long a client may hold it (docs/gateway.md, docs/security.md).

The bearer token is a secret: the section's ``repr`` hides it, and
``GPUROUTE_TOKEN`` in the environment wins over the file's value
(``services.runtime.config.bearer_token`` reads it, since reading the
environment is the loader's job, not a schema's).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.nats_settings import Port

TOKEN_ENV = "GPUROUTE_TOKEN"
MIN_TOKEN = 16
"""Fewest characters of a bearer token, from the file or the environment."""


class HttpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Beyond loopback only with a token."""
    port: Port = 8000


class GatewaySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    expect_services: list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]] = (
        msgspec.field(default_factory=list)
    )
    """Services ``/health`` requires a fresh heartbeat from (503 naming a missing one);
    ``gpuroute up`` adds every service it starts."""
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    """Seconds to receive a request's headers (also an idle keep-alive) and its body;
    a body that does not arrive in time is a 408."""
    ws_send_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    """Seconds one WebSocket send may wait for a client before it is closed."""
    max_instances: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    """Service instances ``/health`` tracks; heartbeats of more are ignored and counted."""
    hosts: list[Annotated[str, msgspec.Meta(min_length=1, max_length=253)]] = msgspec.field(
        default_factory=list
    )
    """Host names the gateway serves besides the loopback names and its bind address
    (a request with another ``Host`` is a 421: DNS rebinding)."""
    origins: list[Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]] = msgspec.field(
        default_factory=list
    )
    """Browser origins allowed besides the gateway's own (``https://dash.example``);
    a request with another ``Origin`` is a 403."""
    token: Annotated[str, msgspec.Meta(min_length=MIN_TOKEN, max_length=4096)] | None = None
    """Bearer token every route but ``/health`` needs; ``GPUROUTE_TOKEN`` in the
    environment wins over it. Required to bind beyond loopback. Never logged."""
    read_token: bool = True
    """With a token: reads (GET) need it too; false: only routes that change state."""

    def __repr__(self) -> str:  # the token must never reach a log line
        return "GatewaySettings(...)"
