"""Structured JSON log lines for adapter calls.

One line per ``submit``, ``poll``, ``cancel`` and ``health``, on the stdlib logger
``gpuroute.adapters``: the message is the event name and the fields travel in
``extra={"fields": ...}``, the runtime's convention, so ``services.runtime.logs`` writes
them as keys of one JSON line. The spine owns handlers (``<data-dir>/gpuroute.log`` and
stderr); this module only logs.

Fields: ``event`` (``adapter.<call>``), ``provider``, ``dry_run``, ``latency_ms``,
``ok``, and when known ``remote_id``, ``job_id``, ``status``, ``error`` (an
``AdapterError`` class name) and ``reason``. No secret ever reaches a log line:
reasons come from ``AdapterError``, whose text is redacted where it is built.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec

LOGGER_NAME: Final = "gpuroute.adapters"
logger = logging.getLogger(LOGGER_NAME)


class CallRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one log line says about one adapter call."""

    event: str
    provider: str
    dry_run: bool
    latency_ms: float
    ok: bool
    remote_id: str | None = None
    job_id: str | None = None
    status: str | None = None
    error: str | None = None
    reason: str | None = None


def log_call(record: CallRecord) -> None:
    """Emit ``record`` as one JSON line: INFO when ok, WARNING otherwise."""
    level = logging.INFO if record.ok else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    fields = {k: v for k, v in msgspec.structs.asdict(record).items() if v is not None}
    logger.log(level, record.event, extra={"fields": fields})
