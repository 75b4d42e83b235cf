"""Errors of the scheduler service.

    GpurouteError (services/runtime/errors.py)
    └── SchedulerError            root: catch this to catch everything below
        ├── BadPayload            (executors/payloads.py) a job's payload its executor
        │                         cannot run (msgspec's message with the JSON path,
        │                         a program off the allow-list, a workflow without
        │                         nodes): the attempt fails, never retried
        ├── ArtifactTooLarge      (executors/artifacts.py) an output past its size
        │                         bound; the partial file is removed
        └── CommandConfigError    (executors/command.py) ``[scheduler.command]``
                                  cannot work (a workdir outside the data
                                  directory): raised while the executors are
                                  built, so the service does not start

Each class lives beside the code that raises it. What goes wrong while a job
runs never escapes as an exception: an executor turns what it expects
(``BadPayload``, a provider's or ComfyUI's failure, a timeout) into a failed
``Outcome`` with its reason, and ``attempts.py`` turns anything else an
executor raises into a failed, retryable one, so a job always ends with an
event and the service goes on.
"""

from __future__ import annotations

from services.runtime.errors import GpurouteError


class SchedulerError(GpurouteError):
    """Root of the errors the scheduler raises."""
