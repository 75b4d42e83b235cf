"""Modder hooks: a leading-wildcard topic finds the newest matching events, and
WebSocket clients that stop reading are closed with a code telling them where
to resume while the gateway's memory stays bounded (issues "Hardening I/II")."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
from typing import Any

import aiohttp
import psutil

from schemas.jobs import JobSucceeded
from services.gateway.hooks import CLOSE_TOO_SLOW
from services.gateway.service import GatewayService
from services.gateway.state import SOCKETS
from services.runtime.bus import Bus
from services.runtime.config import Config
from tests.gateway.conftest import running
from tests.support import EventWatch, lifecycle, poll


async def get(gateway: GatewayService, path: str, method: str = "GET") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gateway.url + path) as r:
            return r.status, await r.json()


async def test_a_leading_wildcard_topic_returns_the_newest_matching(
    config: Config, store: Any, bus: Bus, gateway: GatewayService, stored: EventWatch
) -> None:
    await bus.publish_many([e for j in range(10) for e in lifecycle(bus, f"job-{j}")])
    await bus.publish_many([lifecycle(bus, f"late-{j}")[0] for j in range(30)])  # submitted only
    await stored.count(70)
    status, body = await get(gateway, "/api/modder/hooks?topic=*.started&limit=3")
    assert status == 200 and body["topic"] == "*.started"
    assert [i["event"]["key"] for i in body["events"]] == ["job-7", "job-8", "job-9"]


async def test_provider_ids_never_shadow_routes(gateway: GatewayService) -> None:
    assert (await get(gateway, "/api/providers/stats", "PUT"))[0] == 405
    assert (await get(gateway, "/api/providers/gpu", "PUT"))[0] == 404
    status, body = await get(gateway, "/api/providers/gpu/providers")
    assert status == 503 and "provider" not in body["error"]  # the adapters' route, not {id}


async def _stalled(port: int, query: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    await loop.sock_connect(s, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(s, (
        f"GET /api/modder/hooks/ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(s, 1)  # byte by byte: leave every frame unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def _drain(s: socket.socket) -> bytes:
    loop, data = asyncio.get_running_loop(), bytearray()
    while chunk := await asyncio.wait_for(loop.sock_recv(s, 1 << 16), 10):
        data += chunk
    s.close()
    return bytes(data)


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            (n,), i = struct.unpack(">H", data[i : i + 2]), i + 2
        elif n == 127:
            (n,), i = struct.unpack(">Q", data[i : i + 8]), i + 8
        out.append((opcode, data[i : i + n]))
        i += n
    return out


async def test_stalled_websocket_clients_are_closed_and_memory_stays_bounded(
    config: Config, store: Any, bus: Bus
) -> None:
    config.gateway.ws_send_timeout_s = 0.3
    process = psutil.Process()
    async with running(GatewayService, config, "gateway") as gateway:
        clients = [await _stalled(gateway.port, "subjects=job.>") for _ in range(100)]
        await bus.nc.flush()
        baseline = peak = process.memory_info().rss
        big = JobSucceeded(artifacts=["a" * 1000] * 4)  # ~4 KB per event
        for batch in range(60):  # ~2.4 MB per client while they stall
            await bus.publish_many([bus.event(big, key=f"job-{batch}-{i}") for i in range(10)])
            peak = max(peak, process.memory_info().rss)
        await poll(lambda: all(ws.closed for ws in gateway.app[SOCKETS]), timeout=20)
        peak = max(peak, process.memory_info().rss)
        received = [await _drain(s) for s in clients]  # the clients come back and read
    closes = []
    for data in received:
        frames = _frames(data)
        seqs = [int(m.group(1)) for op, f in frames if op == 1
                for m in [re.match(rb'\{"seq":(\d+),', f)] if m]  # fmt: skip
        close = [f for op, f in frames if op == 8]
        assert close, "no close frame"
        code, reason = struct.unpack(">H", close[0][:2])[0], close[0][2:].decode()
        closes.append(code)
        assert code == CLOSE_TOO_SLOW, (code, reason)
        if seqs:  # resuming after the last event received loses nothing
            assert reason == f"too slow: reconnect with after={seqs[-1]}"
    assert len(closes) == 100
    grew_mb = (peak - baseline) / 2**20
    print(f"\nstalled clients: 100 closed with {CLOSE_TOO_SLOW}; RSS grew {grew_mb:.1f} MiB")
    # Bounded: 100 x (256 KiB follower buffer + 64 KiB socket) ~ 32 MiB of buffers; RSS
    # grew 53-76 MiB alone and up to 123 MiB late in a full run (the store and the
    # allocator share the process). Unbounded, each client would hold all ~2.4 MB on
    # top of that: 240+ MiB more.
    assert grew_mb < 180, grew_mb
