"""How ``gpuroute doctor`` reaches NATS: once, briefly, never retrying forever.

Doctor must say "NATS is down" within ``deadline_s`` rather than wait, so it
uses a plain nats-py connection with no reconnects (a service uses the
``Bus``, which reconnects forever). The login is the gateway's (its user may
read JetStream INFO and ask ``$SRV``): ``--creds``, else the data directory's.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.aio.client import Client

from services.ops.doctor import Probes, run_doctor
from services.ops.report import DoctorReport
from services.runtime.config import Config
from services.runtime.credentials import Credentials

DEADLINE_S = 2.0


async def _connect(url: str, creds: Credentials | None, deadline_s: float) -> Client:
    login = {}
    if creds is not None:
        login = {"user": creds.user, "password": creds.password,
                 "inbox_prefix": creds.inbox_prefix}  # fmt: skip

    seen: list[Exception] = []

    async def keep(e: Exception) -> None:  # reported once, as the check's evidence
        seen.append(e)

    # nats-py retries a refused first connect forever whatever the options: bound it
    try:
        return await asyncio.wait_for(nats.connect(
            url, connect_timeout=deadline_s, allow_reconnect=False, max_reconnect_attempts=0,
            error_cb=keep, name="gpuroute-doctor", **login), deadline_s)  # fmt: skip
    except TimeoutError:
        last = f"{type(seen[-1]).__name__}: {seen[-1]}" if seen else "no answer"
        raise ConnectionError(f"{last} (gave up after {deadline_s:g}s)") from None


async def doctor(
    config: Config, url: str, creds: Credentials | None, expected: list[str],
    probes: Probes | None = None, deadline_s: float = DEADLINE_S,
) -> DoctorReport:  # fmt: skip
    """Connect to ``url`` (within ``deadline_s``) and run every check; an
    unreachable NATS is the report's first failure, not an exception."""
    nc: Client | None = None
    why = ""
    try:
        nc = await _connect(url, creds, deadline_s)
    except Exception as e:  # nats-py raises several unrelated types for "cannot connect"
        why = f"{type(e).__name__}: {e}".rstrip(": ")
    try:
        return await run_doctor(nc, config, expected, why=why, url=url, probes=probes)
    finally:
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
