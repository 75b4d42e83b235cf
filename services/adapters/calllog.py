"""Structured JSON log lines for adapter calls.

One line per ``submit``, ``poll``, ``cancel`` and ``health``, on the stdlib logger
``gpuroute.adapters``: the message is a JSON object, and the same fields go in
``extra`` (prefixed ``adapter_``) for handlers that format records themselves. The
spine owns handlers (log file under the data directory, stderr); this module only logs.

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


_encoder = msgspec.json.Encoder()


def log_call(record: CallRecord) -> None:
    """Emit ``record`` as one JSON line: INFO when ok, WARNING otherwise."""
    level = logging.INFO if record.ok else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    fields = msgspec.structs.asdict(record)
    extra = {f"adapter_{name}": value for name, value in fields.items() if value is not None}
    logger.log(level, _encoder.encode(record).decode(), extra=extra)
