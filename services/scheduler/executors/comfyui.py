"""The ``comfyui`` executor: a workflow run by a ComfyUI server over its HTTP API.

Follows ComfyUI's ``server.py`` and ``execution.py`` (Comfy-Org/ComfyUI at
002c3fb9a504255ccb3edb668c08b8f56e63d14a):

- ``POST /prompt`` ``{"prompt": <workflow in API format>, "client_id", "prompt_id"}``.
  The prompt id is ours, a UUID derived from the job id and attempt (ComfyUI
  requires canonical lowercase UUIDs), so a restarted scheduler knows it. A 400
  (``error``, ``node_errors``) is a failed, not retryable, outcome naming each
  node and its error; any other failure to submit is retryable.
- Progress from the websocket ``/ws?clientId=<client_id>``, opened before the
  submit so nothing is missed; one socket and client id per attempt (ComfyUI
  keeps one socket per client id). ``progress {value, max, prompt_id, node}``
  is a step; ``executing`` with ``node: null``, ``execution_error``,
  ``execution_interrupted`` and ``execution_success`` end the wait.
- ``GET /history/{prompt_id}`` is the final answer; ``{}`` means not finished.
  If the socket drops (or never opened) the executor polls it every ``poll_s``.
- Outputs: every ``{filename, subfolder, type}`` in the history's outputs is
  fetched with ``GET /view`` into ``run.workdir/artifacts`` (bounded in size
  and count by ``[scheduler.comfyui]``).
- Cancel touches only this job: ``POST /queue {"delete": [prompt_id]}`` unless
  the prompt is known to run, then ``POST /interrupt {"prompt_id": ...}``, which
  ComfyUI honours only while that very prompt runs (covering a prompt that
  started between the two). Never a global interrupt (``/interrupt`` with no id).
- Health: ``GET /system_stats`` (``devices[].vram_total``, ``vram_free``, bytes).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import msgspec

from schemas import limits
from schemas.scheduler_settings import ComfyUISettings

from . import artifacts
from .base import Artifact, Executor, Outcome, Progress, Run
from .payloads import BadPayload, convert

_NAMESPACE: Final = uuid.UUID("6a7c5d1e-2f3b-4c8d-9e0f-a1b2c3d4e5f6")
MAX_REPLY_BYTES: Final = 16 * 1024 * 1024
"""The largest ``/history`` or ``/prompt`` answer read (it echoes the workflow)."""
MAX_WS_BYTES: Final = 4 * 1024 * 1024
_ENDS: Final = frozenset({"execution_error", "execution_interrupted", "execution_success"})


class Node(msgspec.Struct, frozen=True, kw_only=True):
    class_type: str
    inputs: dict[str, Any] = {}


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    prompt: dict[str, Node]


class WsMessage(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    data: dict[str, Any] = {}


def prompt_id_for(run: Run) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{run.job_id}/{run.attempt}"))


def node_errors(body: Any) -> str:
    """ComfyUI's 400 answer as one sentence: the error, then each node and its errors."""
    if not isinstance(body, dict):
        return "ComfyUI refused the workflow"
    error = body.get("error")
    text = error.get("message", "") if isinstance(error, dict) else str(error or "")
    parts = [text or "ComfyUI refused the workflow"]
    nodes = body.get("node_errors")
    for node_id, info in nodes.items() if isinstance(nodes, dict) else ():
        info = info if isinstance(info, dict) else {}
        errs = [
            f"{e.get('message', '')}: {e.get('details', '')}".strip(": ")
            for e in info.get("errors", []) if isinstance(e, dict)
        ]  # fmt: skip
        parts.append(f"node {node_id} ({info.get('class_type', '?')}): {'; '.join(errs)}")
    return "; ".join(parts)[: limits.MAX_TEXT]


class ComfyUIExecutor(Executor):
    name = "comfyui"

    def __init__(self, settings: ComfyUISettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            t = self.settings.request_timeout_s
            timeout = aiohttp.ClientTimeout(total=None, connect=t, sock_connect=t, sock_read=t)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self._http().request(method, self.base + path, json=body) as resp:
            raw = await resp.content.read(MAX_REPLY_BYTES + 1)
            if not raw.strip():
                return resp.status, None
            try:
                value = limits.decode_any(raw, max_bytes=MAX_REPLY_BYTES, what=f"ComfyUI {path}")
            except msgspec.DecodeError as e:
                if resp.status >= 400:
                    return resp.status, None
                raise aiohttp.ClientPayloadError(str(e)) from None
            return resp.status, value

    async def health(self) -> dict[str, Any]:
        try:
            status, body = await self._json("GET", "/system_stats")
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return {"ok": False, "url": self.base, "error": f"{type(e).__name__}: {e}"}
        devices = body.get("devices", []) if isinstance(body, dict) else []
        return {
            "ok": status == 200, "url": self.base,
            "devices": [
                {k: d.get(k) for k in ("name", "type", "vram_total", "vram_free")}
                for d in devices if isinstance(d, dict)
            ],
        }  # fmt: skip

    async def run(self, run: Run, progress: Progress) -> Outcome:
        try:
            workflow = convert({"prompt": run.payload}, Workflow, "comfyui").prompt
            if not workflow:
                raise BadPayload("comfyui payload: the workflow has no nodes")
        except BadPayload as e:
            return Outcome("failed", str(e))
        prompt_id = prompt_id_for(run)
        client_id = f"gpuroute-{prompt_id}"
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            try:
                ws = await self._http().ws_connect(
                    f"{self.base}/ws?clientId={client_id}", max_msg_size=MAX_WS_BYTES,
                    heartbeat=self.settings.request_timeout_s,
                )  # fmt: skip
            except (aiohttp.ClientError, OSError, TimeoutError):
                ws = None  # the history poll still finds the answer
            body = {"prompt": run.payload, "client_id": client_id, "prompt_id": prompt_id}
            status, answer = await self._json("POST", "/prompt", body)
            if status == 400:
                return Outcome("failed", node_errors(answer), remote_id=prompt_id,
                               details={"node_errors": _bounded(answer)})  # fmt: skip
            if status != 200:
                return Outcome("failed", f"ComfyUI /prompt answered {status}", retryable=True)
            await progress.remote(prompt_id)
            watch = _Watch(prompt_id)
            try:
                entry = await self._wait(ws, watch, progress)
            except BaseException:
                await asyncio.shield(self._cancel(watch))
                raise
            return await self._finish(run, prompt_id, entry)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            return Outcome("failed", f"ComfyUI at {self.base}: {type(e).__name__}: {e}",
                           retryable=True, remote_id=prompt_id)  # fmt: skip
        finally:
            if ws is not None:
                await ws.close()

    async def _wait(
        self, ws: aiohttp.ClientWebSocketResponse | None, watch: _Watch, progress: Progress
    ) -> dict[str, Any]:
        """Follow the socket until it says the prompt ended (or drops), then the
        history until it holds the prompt."""
        while ws is not None and not watch.ended:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                await watch.on_text(msg.data, progress)
            elif msg.type != aiohttp.WSMsgType.BINARY:  # closed, closing, error
                break  # the socket dropped: the history has the answer
        while True:
            status, body = await self._json("GET", f"/history/{watch.prompt_id}")
            entry = body.get(watch.prompt_id) if status == 200 and isinstance(body, dict) else None
            if isinstance(entry, dict):
                return entry
            await asyncio.sleep(self.settings.poll_s)

    async def _cancel(self, watch: _Watch) -> None:
        try:
            if not watch.running:
                await self._json("POST", "/queue", {"delete": [watch.prompt_id]})
            await self._json("POST", "/interrupt", {"prompt_id": watch.prompt_id})
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass  # best effort: the attempt ends cancelled whatever ComfyUI answers

    async def _finish(self, run: Run, prompt_id: str, entry: dict[str, Any]) -> Outcome:
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        assert isinstance(status, dict)
        if status.get("status_str") == "error" or status.get("completed") is False:
            return Outcome("failed", _history_error(status.get("messages")), remote_id=prompt_id)
        saved = await self._fetch_outputs(run, entry.get("outputs"))
        return Outcome("succeeded", artifacts=saved, remote_id=prompt_id)

    async def _fetch_outputs(self, run: Run, outputs: Any) -> tuple[Artifact, ...]:
        files = [
            item for node in (outputs.values() if isinstance(outputs, dict) else ())
            if isinstance(node, dict) for items in node.values() if isinstance(items, list)
            for item in items if isinstance(item, dict) and isinstance(item.get("filename"), str)
        ]  # fmt: skip
        taken: set[str] = set()
        saved = []
        for item in files[: self.settings.max_artifacts]:
            params = {"filename": item["filename"], "subfolder": str(item.get("subfolder", "")),
                      "type": str(item.get("type", "output"))}  # fmt: skip
            async with self._http().get(self.base + "/view", params=params) as resp:
                resp.raise_for_status()
                name = artifacts.safe_name(item["filename"], taken)
                saved.append(await artifacts.save_stream(
                    run, name, _chunks(resp), limit=self.settings.max_artifact_bytes,
                    content_type=resp.content_type,
                ))  # fmt: skip
        return tuple(saved)


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in resp.content.iter_chunked(1 << 16):
        yield chunk


class _Watch:
    """What the socket told about one prompt: running yet, ended yet."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.running = False
        self.ended = False

    async def on_text(self, text: str, progress: Progress) -> None:
        try:
            msg = limits.decode(limits.decoder_for(WsMessage), text, max_bytes=MAX_WS_BYTES,
                                what="ComfyUI websocket message")  # fmt: skip
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # a message we cannot read tells nothing about our prompt
        if msg.data.get("prompt_id") != self.prompt_id:
            return  # status broadcasts, other clients' prompts
        if msg.type in ("execution_start", "executing", "progress", "executed"):
            self.running = True
        if msg.type == "progress":
            value, maximum = msg.data.get("value"), msg.data.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float):
                node = msg.data.get("node")
                await progress.step(float(value), float(maximum), str(node) if node else None)
        elif (msg.type == "executing" and msg.data.get("node") is None) or msg.type in _ENDS:
            self.ended = True


def _history_error(messages: Any) -> str:
    """The reason a history entry gives for a failed prompt (ComfyUI's
    ``status.messages``: ``[[event, data], ...]``)."""
    for item in messages if isinstance(messages, list) else ():
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        event, data = item
        if event == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type', 'error')}: "
                    f"{data.get('exception_message', '')}".strip())[: limits.MAX_TEXT]  # fmt: skip
        if event == "execution_interrupted":
            return f"interrupted at node {data.get('node_id')} ({data.get('node_type')})"
    return "ComfyUI reports the prompt failed"


def _bounded(value: Any) -> Any:
    raw = msgspec.json.encode(value)
    return value if len(raw) <= 8192 else {"truncated": raw[:8192].decode("utf-8", "replace")}
