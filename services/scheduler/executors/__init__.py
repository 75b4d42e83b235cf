"""The four executors behind one interface (``base.py``), built from ``[scheduler]``.

- ``synthetic.py``: waits, for demos and benchmarks (dry run)
- ``command.py``: a program with arguments from an allow-list, no shell
- ``comfyui.py``: a ComfyUI workflow over ComfyUI's HTTP API and websocket
- ``remote.py``: a provider job through the adapters service over NATS
- ``artifacts.py``: where and how every executor saves its outputs
- ``payloads.py``: a job's payload to an executor's typed form (:class:`BadPayload`)

Contract tests: ``tests/scheduler/executors/`` (one suite, one subclass per executor).
"""

from __future__ import annotations

from pathlib import Path

from schemas.scheduler_settings import SchedulerSettings

from .base import Artifact, Executor, Outcome, Progress, Run
from .comfyui import ComfyUIExecutor
from .command import CommandConfigError, CommandExecutor
from .payloads import BadPayload
from .remote import Caller, RemoteExecutor
from .synthetic import SyntheticExecutor

__all__ = [
    "Artifact", "BadPayload", "Caller", "ComfyUIExecutor", "CommandConfigError",
    "CommandExecutor", "Executor", "Outcome", "Progress", "RemoteExecutor", "Run",
    "SyntheticExecutor", "build_executors",
]  # fmt: skip


def build_executors(
    settings: SchedulerSettings, data_dir: Path, caller: Caller
) -> dict[str, Executor]:
    """Every executor by its name (the job's ``executor`` field). Raises
    :class:`CommandConfigError` when ``[scheduler.command] workdir`` leaves
    ``data_dir``. Nothing connects yet: ComfyUI's session opens on first use."""
    executors: list[Executor] = [
        SyntheticExecutor(settings.synthetic),
        CommandExecutor(settings.command, data_dir),
        ComfyUIExecutor(settings.comfyui),
        RemoteExecutor(settings.remote, caller),
    ]
    return {e.name: e for e in executors}
