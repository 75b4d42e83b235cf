"""Structured logging: one JSON object per line, to stderr and to a file.

Log with ``log.info("message", extra={"fields": {...}})``; the fields become
keys of the line. Secrets are never passed here (their types render as ***).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from services.runtime.datadir import private_dir, private_file

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # gpuroute doctor finds restart loops by it
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = repr(record.exc_info[1])
        return _encoder.encode(line).decode()


def setup_logging(level: str = "INFO", log_file: Path | None = None) -> None:
    """Route every ``gpuroute.*`` logger to stderr (and ``log_file``) as JSON lines."""
    root = logging.getLogger("gpuroute")
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        private_file(private_dir(log_file.parent) / log_file.name)  # 0600 in a 0700 folder
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.propagate = False
    logging.Formatter.converter = time.gmtime


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"gpuroute.{name}")
