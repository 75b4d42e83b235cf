"""The adapters service and the gateway, run in-process in front of the four fake
provider servers (``adapter_fakes.py``), as the service tests and the CLI tests use them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas import encode_event
from schemas.adapter_settings import (
    AdaptersSettings,
    HuggingFaceSettings,
    ModalSettings,
    ReplicateSettings,
    RetryPolicy,
    RunPodSettings,
)
from schemas.flags import ENABLE_PUBLIC_GPU_ADAPTERS, FlagsChanged
from services.adapters.service import AdaptersService
from services.gateway.service import GatewayService
from services.runtime.bus import Bus
from services.runtime.config import Config
from services.runtime.secrets import REQUIRED_KEYS, env_names
from tests.adapters.adapter_fakes import (
    MODAL_ID,
    MODAL_SECRET,
    TOKEN,
    Fake,
    hf_app,
    modal_app,
    replicate_app,
    runpod_app,
)
from tests.support import EventWatch, watch_stored

APPS: dict[str, Callable[[Fake], web.Application]] = {
    "runpod": runpod_app,
    "huggingface": hf_app,
    "replicate": replicate_app,
    "modal": modal_app,
}
SECRETS = (TOKEN, MODAL_ID, MODAL_SECRET)
ENV_NAMES = [name for p, keys in REQUIRED_KEYS.items() for k in keys for name in env_names(p, k)]
SECRETS_TOML = f"""[runpod]
api_key = "{TOKEN}"
[huggingface]
api_key = "{TOKEN}"
[replicate]
api_token = "{TOKEN}"
[modal]
token_id = "{MODAL_ID}"
token_secret = "{MODAL_SECRET}"
"""
FAST_RETRY = RetryPolicy(
    max_attempts=2, base_delay_s=0.01, max_delay_s=0.02, max_retry_after_s=0.05
)


@dataclass
class Provider:
    fake: Fake
    server: TestServer

    def url(self, path: str = "") -> str:
        return str(self.server.make_url(path)).rstrip("/")


async def start_providers(aiohttp_server: Callable[..., Any]) -> dict[str, Provider]:
    providers = {}
    for name, app in APPS.items():
        fake = Fake()
        providers[name] = Provider(fake, await aiohttp_server(app(fake)))
    return providers


def live_settings(providers: dict[str, Provider], secrets_file: Path | None) -> AdaptersSettings:
    """Every provider configured against its fake, short timeouts, fast retries."""
    return AdaptersSettings(
        secrets_file=str(secrets_file) if secrets_file else None,
        runpod=RunPodSettings(
            endpoint_id="ep-test", base_url=providers["runpod"].url("/v2"), timeout_s=2.0
        ),
        huggingface=HuggingFaceSettings(
            namespace="acme",
            name="llm",
            management_url=providers["huggingface"].url("/v2"),
            timeout_s=2.0,
            inference_timeout_s=2.0,
            scale_up_max_attempts=3,
        ),
        replicate=ReplicateSettings(
            model="acme/sdxl", base_url=providers["replicate"].url(), timeout_s=2.0
        ),
        modal=ModalSettings(base_url=providers["modal"].url(), timeout_s=2.0),
        retry=FAST_RETRY,
    )


def write_secrets(directory: Path) -> Path:
    path = directory / "secrets.toml"
    path.write_text(SECRETS_TOML)
    return path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.raw)


class Stack:
    """A running adapters service + gateway; ``replies`` keeps every HTTP reply."""

    def __init__(
        self,
        bus: Bus,
        adapters: AdaptersService,
        gateway: GatewayService,
        session: aiohttp.ClientSession,
        watching: contextlib.AsyncExitStack,
        stored: EventWatch,
    ) -> None:
        self.bus, self.adapters, self.gateway, self.session = bus, adapters, gateway, session
        self.watching, self.stored = watching, stored
        self.replies: list[Reply] = []

    async def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else msgspec.json.encode(body))
        async with self.session.request(method, self.gateway.url + path, data=data) as r:
            reply = Reply(r.status, dict(r.headers), await r.read())
        self.replies.append(reply)
        return reply

    async def submit(self, provider: str, job: dict[str, Any]) -> Reply:
        return await self.request("POST", "/api/providers/gpu/submit",
                                  {"provider": provider, "job": job})  # fmt: skip

    async def poll(self, provider: str, remote_id: str) -> Reply:
        return await self.request("GET", f"/api/providers/gpu/poll/{remote_id}?provider={provider}")

    async def poll_until_terminal(self, provider: str, remote_id: str) -> list[Reply]:
        replies = []
        for _ in range(50):
            reply = await self.poll(provider, remote_id)
            replies.append(reply)
            if reply.status != 200 or reply.json["status"] in ("done", "failed", "cancelled"):
                return replies
        raise AssertionError(f"{provider} job {remote_id} never finished")

    async def set_flag(self, on: bool) -> None:
        flags = self.bus.event(FlagsChanged(flags={ENABLE_PUBLIC_GPU_ADAPTERS: on}), key="flags")
        assert await self.adapters.follower.publish_and_wait([flags], 10)
        assert self.adapters.live_calls_enabled is on

    async def events(self, count: int, prefix: str = "adapter.") -> list[dict[str, Any]]:
        """The stored events of type ``prefix``* (as JSON objects), once there
        are at least ``count``."""
        pattern = prefix + ">" if prefix.endswith(".") else prefix
        found = await self.stored.count(count, pattern)
        return [msgspec.json.decode(encode_event(e)) for e in found]


async def start_stack(config: Config, settings: AdaptersSettings, bus: Bus) -> Stack:
    config.adapters = settings
    url = config.nats.url or ""
    watching = contextlib.AsyncExitStack()
    stored = await watching.enter_async_context(watch_stored(bus))
    adapters = AdaptersService(await Bus.connect(url, source="adapters"), config)
    await adapters.start()
    gateway = GatewayService(await Bus.connect(url, source="gateway"), config)
    await gateway.start()
    return Stack(bus, adapters, gateway, aiohttp.ClientSession(), watching, stored)


async def stop_stack(stack: Stack) -> None:
    await stack.session.close()
    await stack.watching.aclose()
    for service in (stack.gateway, stack.adapters):
        await service.stop()
        await service.bus.close()
