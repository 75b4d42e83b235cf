"""Turning a job's payload (already-decoded JSON) into an executor's typed form."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from services.scheduler.errors import SchedulerError

T = TypeVar("T")


class BadPayload(SchedulerError):
    """A payload the executor cannot run: a failed, never retryable, outcome."""


def convert(payload: Any, type_: type[T], executor: str) -> T:
    """``payload`` as ``type_``; a mismatch is :class:`BadPayload` with msgspec's
    message and path (``Expected `float`, got `str` - at `$.duration_s```)."""
    try:
        return msgspec.convert(payload if payload is not None else {}, type_)
    except msgspec.ValidationError as e:
        raise BadPayload(f"{executor} payload: {e}") from None
