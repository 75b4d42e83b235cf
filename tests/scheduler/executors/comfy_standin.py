"""A local ComfyUI stand-in: the routes and messages of ComfyUI's ``server.py`` and
``execution.py`` (Comfy-Org/ComfyUI at 002c3fb9a504255ccb3edb668c08b8f56e63d14a)
that the comfyui executor uses, with a queue worker that "executes" node classes
of its own:

- ``Steps {steps}``: ``progress`` messages 1..steps
- ``Hold``: one ``progress`` message, then waits until interrupted or ``release()``
- ``Fail {message}``: ``execution_error`` (RuntimeError) at that node
- ``SaveImage {filename_prefix}``: an output ``<prefix>_00001_.png`` in history
- ``EmptyLatentImage {width, height, batch_size}``: nothing (states the size)
- any other class: refused at ``POST /prompt`` with ComfyUI's 400 (``node_errors``)

Like ComfyUI, messages go to the socket of the prompt's ``client_id``, history is
written before ``executing {node: null}``, ``/interrupt`` with a ``prompt_id``
interrupts only while that prompt runs, and ``/queue {"delete": [...]}`` removes
pending prompts. ``gate`` (an Event) holds the worker so prompts stay pending;
``calls`` records every cancel-related request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

KNOWN = {"Steps", "Hold", "Fail", "SaveImage", "EmptyLatentImage"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


class Interrupted(Exception):
    pass


class ComfyStandIn:
    def __init__(self) -> None:
        self.pending: list[tuple[str, dict[str, Any], str | None]] = []
        self.running: str | None = None
        self.history: dict[str, Any] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.calls: list[tuple[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._release = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/prompt", self.post_prompt)
        app.router.add_post("/queue", self.post_queue)
        app.router.add_post("/interrupt", self.post_interrupt)
        app.router.add_get("/history/{prompt_id}", self.get_history)
        app.router.add_get("/view", self.get_view)
        app.router.add_get("/system_stats", self.system_stats)
        app.router.add_get("/ws", self.websocket)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._worker = asyncio.create_task(self._work())

    async def _stop(self, app: web.Application) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for ws in list(self.sockets.values()):
            await ws.close()

    def release(self) -> None:
        self._release.set()

    async def drop_sockets(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()

    # --- routes -----------------------------------------------------------------

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt, prompt_id = body["prompt"], body.get("prompt_id")
        errors = {
            node_id: {
                "errors": [{"type": "invalid_node", "message": "Node class not found",
                            "details": node.get("class_type"), "extra_info": {}}],
                "dependent_outputs": [], "class_type": node.get("class_type"),
            }
            for node_id, node in prompt.items() if node.get("class_type") not in KNOWN
        }  # fmt: skip
        if errors:
            error = {"type": "prompt_outputs_failed_validation",
                     "message": "Prompt outputs failed validation", "details": "",
                     "extra_info": {}}  # fmt: skip
            return web.json_response({"error": error, "node_errors": errors}, status=400)
        self.pending.append((prompt_id, prompt, body.get("client_id")))
        self.wake.set()
        return web.json_response({"prompt_id": prompt_id, "number": len(self.history),
                                  "node_errors": {}})  # fmt: skip

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("queue", body))
        for prompt_id in body.get("delete", []):
            self.pending = [p for p in self.pending if p[0] != prompt_id]
        return web.Response()

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.calls.append(("interrupt", body))
        prompt_id = body.get("prompt_id")
        if not prompt_id or prompt_id == self.running:
            self._interrupt.set()
        return web.Response()

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def get_view(self, request: web.Request) -> web.Response:
        q = request.query
        data = self.files.get((q["filename"], q.get("subfolder", ""), q.get("type", "output")))
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    async def system_stats(self, request: web.Request) -> web.Response:
        device = {"name": "cuda:0 Stand-in", "type": "cuda", "index": 0,
                  "vram_total": 24 * 1024**3, "vram_free": 20 * 1024**3,
                  "torch_vram_total": 0, "torch_vram_free": 0}  # fmt: skip
        return web.json_response({"system": {"os": "posix", "comfyui_version": "stand-in"},
                                  "devices": [device]})  # fmt: skip

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        self.sockets[sid] = ws
        await ws.send_json(
            {
                "type": "status",
                "data": {
                    "status": {"exec_info": {"queue_remaining": len(self.pending)}},
                    "sid": sid,
                },
            }
        )
        async for _ in ws:
            pass
        if self.sockets.get(sid) is ws:
            del self.sockets[sid]
        return ws

    # --- the queue worker -----------------------------------------------------------

    async def _send(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(client_id or "")
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"type": kind, "data": data})

    async def _work(self) -> None:
        while True:
            await self.gate.wait()
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
                continue
            prompt_id, prompt, client = self.pending.pop(0)
            self.running = prompt_id
            self._interrupt.clear()
            self._release.clear()
            try:
                await self._execute(prompt_id, prompt, client)
            finally:
                self.running = None
            await self._send(client, "executing", {"node": None, "prompt_id": prompt_id})

    async def _execute(self, prompt_id: str, prompt: dict[str, Any], client: str | None) -> None:
        stamp = {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)}
        messages: list[list[Any]] = [["execution_start", stamp]]
        await self._send(client, "execution_start", stamp)
        outputs: dict[str, Any] = {}
        for node_id, node in prompt.items():
            await self._send(
                client,
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
            )
            try:
                output = await self._node(prompt_id, node_id, node, client)
            except Interrupted:
                data = {"prompt_id": prompt_id, "node_id": node_id,
                        "node_type": node["class_type"], "executed": list(outputs)}  # fmt: skip
                await self._end(prompt_id, client, messages, outputs, "execution_interrupted", data)
                return
            except RuntimeError as e:
                data = {"prompt_id": prompt_id, "node_id": node_id,
                        "node_type": node["class_type"], "executed": list(outputs),
                        "exception_message": str(e), "exception_type": "RuntimeError",
                        "traceback": [], "current_inputs": {}, "current_outputs": {}}  # fmt: skip
                await self._end(prompt_id, client, messages, outputs, "execution_error", data)
                return
            if output:
                outputs[node_id] = output
                await self._send(
                    client,
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": output,
                        "prompt_id": prompt_id,
                    },
                )
        await self._end(prompt_id, client, messages, outputs, "execution_success", stamp)

    async def _end(
        self,
        prompt_id: str,
        client: str | None,
        messages: list[list[Any]],
        outputs: dict[str, Any],
        kind: str,
        data: dict[str, Any],
    ) -> None:
        messages.append([kind, data])
        await self._send(client, kind, data)
        self.history[prompt_id] = {
            "prompt": [0, prompt_id, {}, {}, list(outputs)], "outputs": outputs,
            "status": {"status_str": "success" if kind == "execution_success" else "error",
                       "completed": kind == "execution_success", "messages": messages},
            "meta": {},
        }  # fmt: skip

    async def _node(
        self, prompt_id: str, node_id: str, node: dict[str, Any], client: str | None
    ) -> dict[str, Any] | None:
        inputs, kind = node.get("inputs", {}), node["class_type"]
        if kind == "Steps":
            for value in range(1, int(inputs.get("steps", 3)) + 1):
                await self._send(
                    client,
                    "progress",
                    {
                        "value": value,
                        "max": inputs.get("steps", 3),
                        "prompt_id": prompt_id,
                        "node": node_id,
                    },
                )
                await asyncio.sleep(0)
        elif kind == "Hold":
            await self._send(
                client, "progress", {"value": 0, "max": 1, "prompt_id": prompt_id, "node": node_id}
            )
            interrupt = asyncio.create_task(self._interrupt.wait())
            release = asyncio.create_task(self._release.wait())
            await asyncio.wait({interrupt, release}, return_when=asyncio.FIRST_COMPLETED)
            interrupt.cancel()
            release.cancel()
            if self._interrupt.is_set():
                raise Interrupted()
        elif kind == "Fail":
            raise RuntimeError(inputs.get("message", "node failed"))
        elif kind == "SaveImage":
            name = f"{inputs.get('filename_prefix', 'ComfyUI')}_00001_.png"
            subfolder = str(inputs.get("subfolder", ""))
            self.files[(name, subfolder, "output")] = PNG
            return {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        return None
