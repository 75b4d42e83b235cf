"""A small client of the budget service for other programs (no gateway needed).

    client = await BudgetClient.connect("nats://127.0.0.1:4222", owner="painter")
    await client.on_evict(unload)                 # unload(event: AssetEvicted)
    await client.register("sdxl-base", 6900, kind="checkpoint", device="vram")
    await client.touch("sdxl-base")               # each time it is used (LRU order)
    await client.mark("scene loaded", category="render", metadata={"scene": "intro"})
    with client.profile("hydrate_scene", category="render", metadata={"scene": "intro"}):
        ...                                       # also `async with`, and as a decorator
    await client.close()                          # sends what is still queued

Everything goes over NATS request/reply to ``gpuroute.budget.*``; a refusal
raises :class:`~services.runtime.errors.ServiceCallError` with the service's
code (400 bad input, 404 unknown id, 409, 503 still loading) and sentence.

``on_evict`` subscribes to ``asset.evicted`` (core NATS) and calls the handler
for the assets this client's ``owner`` registered (``all_owners=True``: every
asset). While the client is disconnected it misses evictions; on reconnect,
``register`` the assets it still holds again.

``profile`` measures wall time (``time.perf_counter``) and the memory the code
added: from ``tracemalloc`` when the program is tracing (Python allocations
only, exact, slow to trace), else the process's RSS (everything the process
maps, so concurrent work counts too; page-granular; one ``/proc`` read per
edge). The span says which in ``memory_source``. A span is sent in the
background from the synchronous ``with`` (inside a running event loop), and
awaited with ``async with``; :meth:`BudgetClient.flush` waits for the
background ones.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import psutil
from nats.aio.msg import Msg

from schemas import budget as b
from schemas import decode_event
from schemas.budget import AssetEvicted, AssetView, JobAnswer
from schemas.subjects import BUDGET_CLIENT
from services.runtime.bus import Bus
from services.runtime.credentials import Credentials
from services.runtime.logs import get_logger

log = get_logger("budget.client")
F = TypeVar("F", bound=Callable[..., Any])
EvictHandler = Callable[[AssetEvicted], Awaitable[None] | None]


class BudgetClient:
    def __init__(self, bus: Bus, owner: str | None = None, timeout: float = 5.0) -> None:
        self.bus = bus
        self.owner = owner
        self.timeout = timeout
        self._pending: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        owner: str | None = None,
        timeout: float = 5.0,
        credentials: Credentials | None = None,
    ) -> BudgetClient:
        """``credentials``: the ``budget-client`` login of a server that requires
        one (``gpuroute up``: ``find_credentials(data_dir, "budget-client")``)."""
        bus = await Bus.connect(url, source=owner or BUDGET_CLIENT, credentials=credentials)
        return cls(bus, owner, timeout)

    async def close(self) -> None:
        await self.flush()
        for sub in self._subs:
            await sub.unsubscribe()
        await self.bus.close()

    async def _call(self, subject: str, body: Any, reply: type[Any]) -> Any:
        return await self.bus.call(subject, body, reply, timeout=self.timeout)

    # -- assets ----------------------------------------------------------------

    async def register(
        self,
        asset_id: str,
        size_mb: int,
        *,
        kind: str = "asset",
        device: str = "vram",
        metadata: dict[str, Any] | None = None,
    ) -> AssetView:
        body = {"asset_id": asset_id, "size_mb": size_mb, "kind": kind, "device": device,
                "metadata": metadata or {}, "owner": self.owner}  # fmt: skip
        answer: b.AssetAnswer = await self._call(b.ASSET_REGISTER, body, b.AssetAnswer)
        return answer.asset

    async def touch(self, asset_id: str) -> AssetView:
        answer: b.AssetAnswer = await self._call(
            b.ASSET_TOUCH, {"asset_id": asset_id}, b.AssetAnswer
        )
        return answer.asset

    async def on_evict(self, handler: EvictHandler, *, all_owners: bool = False) -> None:
        """Call ``handler`` (sync or async) with each ``asset.evicted`` of this
        owner's assets. A handler that raises is logged; the next still runs."""

        async def received(msg: Msg) -> None:
            try:
                event = decode_event(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                log.warning("malformed asset.evicted skipped", extra={"fields": {"error": str(e)}})
                return
            data = event.payload
            if not isinstance(data, AssetEvicted):
                return
            if not all_owners and data.owner != self.owner:
                return
            try:
                result = handler(data)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("unload handler failed", extra={"fields": {"asset": data.asset_id}})

        self._subs.append(await self.bus.nc.subscribe("asset.evicted", cb=received))
        await self.bus.flush()

    # -- jobs (what a scheduler calls) -----------------------------------------

    async def register_job(
        self, job_id: str, *, job_type: str = "job", cpu_percent: float = 0,
        ram_mb: int = 0, vram_mb: int = 0,
    ) -> JobAnswer:  # fmt: skip
        perf = {"cpu_percent": cpu_percent, "ram_mb": ram_mb, "vram_mb": vram_mb}
        body = {"job_id": job_id, "job_type": job_type, "perf": perf}
        answer: JobAnswer = await self._call(b.REGISTER, body, JobAnswer)
        return answer

    async def start_job(self, job_id: str) -> JobAnswer:
        answer: JobAnswer = await self._call(b.START, {"job_id": job_id}, JobAnswer)
        return answer

    async def finish_job(self, job_id: str, status: str = "complete") -> JobAnswer:
        body = {"job_id": job_id, "status": status}
        answer: JobAnswer = await self._call(b.FINISH, body, JobAnswer)
        return answer

    # -- profiler ----------------------------------------------------------------

    async def mark(
        self, name: str, *, category: str = "default", metadata: dict[str, Any] | None = None
    ) -> int:
        body = {"name": name, "category": category, "metadata": metadata or {}}
        answer: b.Recorded = await self._call(b.MARK, body, b.Recorded)
        return answer.n

    def profile(
        self, name: str, *, category: str = "default", metadata: dict[str, Any] | None = None
    ) -> Profile:
        """Time a block (``with``/``async with``) or every call of a function (decorator)."""
        return Profile(self, name, category, metadata or {})

    async def send_span(self, span: b.ProfilerSpan) -> int:
        answer: b.Recorded = await self._call(b.SPAN, span, b.Recorded)
        return answer.n

    def _send_later(self, span: b.ProfilerSpan) -> None:
        task = asyncio.get_running_loop().create_task(self.send_span(span))
        self._pending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("span not recorded", extra={"fields": {"error": str(task.exception())}})

    async def flush(self) -> None:
        """Wait until every span sent in the background was answered."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _memory() -> tuple[int, str]:
    if tracemalloc.is_tracing():
        return tracemalloc.get_traced_memory()[0], "tracemalloc"
    return int(psutil.Process().memory_info().rss), "rss"


class Profile:
    """One timed block; see :meth:`BudgetClient.profile`."""

    def __init__(
        self, client: BudgetClient, name: str, category: str, metadata: dict[str, Any]
    ) -> None:
        self.client = client
        self.name, self.category, self.metadata = name, category, metadata
        self._t0 = 0.0
        self._mem0 = 0
        self.span: b.ProfilerSpan | None = None

    def __enter__(self) -> Profile:
        self._mem0, _ = _memory()
        self._t0 = time.perf_counter()
        return self

    def _end(self) -> b.ProfilerSpan:
        wall = time.perf_counter() - self._t0
        mem, source = _memory()
        self.span = b.ProfilerSpan(name=self.name, category=self.category, wall_ms=wall * 1000,
                           memory_delta_kb=(mem - self._mem0) // 1024,
                           memory_source=source,  # type: ignore[arg-type]
                           metadata=self.metadata)  # fmt: skip
        return self.span

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client._send_later(self._end())

    async def __aenter__(self) -> Profile:
        return self.__enter__()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.send_span(self._end())

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                async with self.client.profile(self.name, category=self.category,
                                               metadata=self.metadata):  # fmt: skip
                    return await fn(*args, **kwargs)

            return timed_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.client.profile(self.name, category=self.category, metadata=self.metadata):
                return fn(*args, **kwargs)

        return timed  # type: ignore[return-value]
