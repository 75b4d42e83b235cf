"""schemas.limits: every way bytes can fail to decode is one DecodeError."""

from __future__ import annotations

import msgspec
import pytest

from schemas import decode_event, limits


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested 1000 levels deep, over the limit of 64"),
        (b'{"a":"\xff\xfe"}', "invalid UTF-8"),
        ('"\ud800"', "invalid UTF-8"),
        (b"{", "truncated"),
    ],
)
def test_bad_json_is_a_decode_error(raw: bytes | str, needle: str) -> None:
    with pytest.raises(msgspec.DecodeError, match=needle):
        limits.decode_any(raw)


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert limits.json_depth(b'{"a":"[[[[[[[[[[","b":[[1]]}') == 3
    assert limits.json_depth(b'"\\"[[["') == 0
    limits.check_json(b'["' + b"[" * 500 + b'"]')  # brackets in a string: fine


def test_size_limit_names_size_and_limit() -> None:
    with pytest.raises(msgspec.DecodeError, match="11 bytes, over the limit of 10"):
        limits.decode_any(b'"123456789"', max_bytes=10)


def test_a_deep_event_is_a_decode_error_not_recursion() -> None:
    deep = b'{"type":"job.submitted","data":' + b"[" * 2000 + b"]" * 2000 + b"}"
    with pytest.raises(msgspec.DecodeError):
        decode_event(deep)
