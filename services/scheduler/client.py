"""``gpuroute submit | jobs | job | cancel``: the job commands, over the gateway's HTTP API.

Why HTTP and not NATS: it is the one door a person already has after
``gpuroute up`` (``http://127.0.0.1:8000``), it needs no NATS credentials
(under ``up`` every NATS user is a service with its own permissions; a CLI
user would need one of its own), and it takes the same bearer token
(``GPUROUTE_TOKEN``) as curl. The route table validates the body, so the CLI
sends what a person typed and prints the gateway's error verbatim.

Exit codes: 0 the job succeeded (or ``--detach``/a listing worked); 1 it
failed, was cancelled or is infeasible, or the gateway refused/was
unreachable (one line naming why); 2 a bad option (argparse).

Following a job polls ``GET /api/jobs/{id}`` every ``POLL_S``: a progress
bar on a terminal, one line per change otherwise; new output lines
(``last_line``) are printed as they appear (a fast program's lines between two
polls show only the last: ``gpuroute tail job.progress`` shows all).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from services.runtime.errors import GpurouteError

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_S = 0.2
TIMEOUT_S = 30.0
TERMINAL = ("succeeded", "failed", "cancelled", "infeasible")
STATES = ("submitted", "advised", "queued", "delayed", "running", "retrying", *TERMINAL)
BAR = 24


class Gateway:
    """The gateway's JSON API; every failure is a :class:`GpurouteError` of one line."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            raise GpurouteError(f"{method} {path}: {e.code} {_error_text(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise GpurouteError(f"cannot reach the gateway at {self.url}: {reason} "
                                "(is `gpuroute up` running? --url)") from None  # fmt: skip
        except ValueError as e:
            raise GpurouteError(f"{method} {path}: the answer is not JSON: {e}") from None


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        body = json.load(e)
        return str(body.get("error", body)) if isinstance(body, dict) else str(body)
    except (ValueError, OSError):
        return str(e.reason)


def add_commands(sub: Any) -> None:
    """The four subcommands on ``gpuroute``'s subparsers."""
    submit = sub.add_parser(
        "submit", help="submit a job and follow it until it ends",
        usage="gpuroute submit [SPEC.json | --workflow FILE | -- CMD ARGS] [options]",
        epilog="-- CMD ARGS: a program to run with the command executor (on its allow-list)",
    )  # fmt: skip
    submit.add_argument(
        "spec",
        nargs="?",
        type=Path,
        metavar="SPEC.json",
        help="the job as POST /api/jobs takes it (JobSpec + executor, payload)",
    )
    submit.add_argument(
        "--workflow",
        type=Path,
        metavar="FILE",
        help="a ComfyUI workflow in API format (executor comfyui)",
    )
    submit.add_argument("--executor", choices=("comfyui", "command", "remote", "synthetic"))
    submit.add_argument("--payload", metavar="JSON", help="the executor's payload, as JSON")
    submit.add_argument("--kind", help="job kind (image, video, llm, audio, ...)")
    submit.add_argument("--idempotency-key", metavar="KEY")
    submit.add_argument("--detach", action="store_true", help="print the decision and return")
    jobs = sub.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--state", choices=STATES)
    jobs.add_argument("--limit", type=int, default=50)
    job = sub.add_parser("job", help="one job with its decision, budget and history (JSON)")
    job.add_argument("id")
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id")
    for p in (submit, jobs, job, cancel):
        p.add_argument("--url", default=os.environ.get("GPUROUTE_URL", DEFAULT_URL),
                       help=f"the gateway ({DEFAULT_URL}; GPUROUTE_URL); token from "
                            "GPUROUTE_TOKEN")  # fmt: skip


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``submit ... -- CMD ARGS``: the options before ``--`` and the command after
    (argparse would hand the command's first word to ``SPEC.json``)."""
    if argv[:1] == ["submit"] and "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    gateway = Gateway(args.url, os.environ.get("GPUROUTE_TOKEN") or None)
    if args.command == "submit":
        return submit(gateway, submit_body(args), detach=args.detach, out=out)
    if args.command == "jobs":
        query = f"?limit={args.limit}" + (f"&state={args.state}" if args.state else "")
        page = gateway.call("GET", "/api/jobs" + query)
        for view in page["jobs"]:
            out.write(_row(view) + "\n")
        if page.get("more"):
            out.write(f"... more: --limit above {args.limit}\n")
        return 0
    if args.command == "job":
        view = gateway.call("GET", f"/api/jobs/{_quoted(args.id)}")
        out.write(json.dumps(view, indent=2, sort_keys=True) + "\n")
        return 0
    view = gateway.call("POST", f"/api/jobs/{_quoted(args.id)}/cancel")
    out.write(f"job {view['job_id']}: {view['state']}\n")
    return 0


def _quoted(job_id: str) -> str:
    return urllib.parse.quote(job_id, safe="")


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise GpurouteError(f"{what} is not JSON: {e}") from None


def _read(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GpurouteError(f"cannot read {what} {path}: {e}") from None
    return _json(text, f"{what} {path}")


def submit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /api/jobs body from SPEC.json, --workflow or -- CMD ARGS and the flags."""
    argv: list[str] = getattr(args, "argv", [])
    sources = [s for s in (args.spec, args.workflow, argv) if s]
    if len(sources) > 1:
        raise GpurouteError("submit: give one of SPEC.json, --workflow FILE or -- CMD ARGS")
    body: dict[str, Any] = {}
    if args.spec is not None:
        body = _read(args.spec, "job spec")
        if not isinstance(body, dict):
            raise GpurouteError(f"job spec {args.spec}: expected a JSON object")
    elif args.workflow is not None:
        workflow = _read(args.workflow, "workflow")
        body = {"executor": "comfyui", "payload": workflow, **workflow_spec(workflow)}
    elif argv:
        body = {"executor": "command", "payload": argv}
    if args.executor:
        body["executor"] = args.executor
    if args.payload is not None:
        body["payload"] = _json(args.payload, "--payload")
    if args.kind:
        body["kind"] = args.kind
    elif args.spec is None:  # a bare command or synthetic job is no 1024x1024 image
        body.setdefault("kind", "image" if body.get("executor") == "comfyui" else "other")
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    return body


def workflow_spec(workflow: Any) -> dict[str, int]:
    """The sizes a ComfyUI API-format workflow states, as JobSpec fields, so the
    advisor decides on the image it renders, not on the default 1024x1024 (which
    waits for a GPU on a machine without one): ``width``/``height``/``batch``
    from the first node (by id) whose inputs give an integer width and height
    (``EmptyLatentImage``), ``steps`` the most any node asks for (``KSampler``).
    Anything else in the workflow is the executor's to check."""
    if not isinstance(workflow, dict):
        return {}
    nodes = [n.get("inputs") for _, n in sorted(workflow.items()) if isinstance(n, dict)]
    inputs = [i for i in nodes if isinstance(i, dict)]

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    spec: dict[str, int] = {}
    sized = next((i for i in inputs if whole(i.get("width")) and whole(i.get("height"))), None)
    if sized is not None:
        spec.update(width=sized["width"], height=sized["height"])
        if whole(sized.get("batch_size")):
            spec["batch"] = sized["batch_size"]
    steps = [i["steps"] for i in inputs if whole(i.get("steps"))]
    if steps:
        spec["steps"] = max(steps)
    return spec


def submit(gateway: Gateway, body: dict[str, Any], *, detach: bool, out: TextIO) -> int:
    answer = gateway.call("POST", "/api/jobs", body)
    job_id = answer["job_id"]
    out.write(decision_text(answer) + "\n")
    out.flush()
    if detach:
        return 0
    started = time.monotonic()
    view = follow(gateway, job_id, out)
    took = time.monotonic() - started
    out.write(f"job {job_id} {view['state']} in {took:.1f}s" + _ending(view) + "\n")
    return 0 if view["state"] == "succeeded" else 1


def decision_text(answer: dict[str, Any]) -> str:
    lines = [f"job {answer['job_id']}" + ("" if answer.get("created", True) else
                                          " (already submitted with this key)")]  # fmt: skip
    decision = answer.get("decision")
    if decision:
        where = decision["target"] + (f" ({decision['provider']})" if decision.get("provider")
                                      else "")  # fmt: skip
        lines.append(f"  decision: {where}, rule {decision['rule']}: {decision['reason']}")
    else:
        lines.append("  decision: not yet (the advisor has not answered)")
    budget = answer.get("budget")
    if budget:
        reason = f": {budget['reason']}" if budget.get("reason") else ""
        lines.append(f"  budget: {budget['state']} ({budget['code']}){reason}")
    return "\n".join(lines)


def follow(gateway: Gateway, job_id: str, out: TextIO) -> dict[str, Any]:
    """Poll the job until it ends, drawing its progress; the last view."""
    tty = out.isatty()
    shown: tuple[Any, ...] = ()
    line: str | None = None
    while True:
        view = gateway.call("GET", f"/api/jobs/{_quoted(job_id)}")
        if view.get("last_line") not in (None, line):
            line = view["last_line"]
            out.write(("\r\x1b[K" if tty else "") + f"  | {line}\n")
        now = (view["state"], view.get("progress"), view.get("attempts"))
        if now != shown or tty:
            shown = now
            out.write(("\r\x1b[K" if tty else "") + progress_text(view) + ("" if tty else "\n"))
        out.flush()
        if view["state"] in TERMINAL:
            if tty:
                out.write("\n")
            return dict(view)
        time.sleep(POLL_S)


def progress_text(view: dict[str, Any]) -> str:
    fraction = view.get("progress")
    filled = round((fraction or 0.0) * BAR)
    percent = "  -" if fraction is None else f"{fraction * 100:3.0f}"
    attempt = f" attempt {view['attempts']}" if view.get("attempts", 0) > 1 else ""
    return f"  [{'#' * filled}{'.' * (BAR - filled)}] {percent}% {view['state']}{attempt}"


def _ending(view: dict[str, Any]) -> str:
    parts = [f"attempt {view.get('attempts', 0)}"]
    if view.get("dry_run"):
        parts.append("dry_run")
    if view.get("artifacts"):
        parts.append("artifacts: " + ", ".join(view["artifacts"]))
    if view.get("error"):
        parts.append(f"{view.get('error_code') or 'error'}: {view['error']}")
    return " (" + "; ".join(parts) + ")"


def _row(view: dict[str, Any]) -> str:
    decision = view.get("decision") or {}
    progress = view.get("progress")
    shown = "" if progress is None else f"{progress * 100:.0f}%"
    return (f"{view['job_id']:28} {view['state']:10} {view.get('executor') or '-':9} "
            f"{decision.get('target', '-'):8} {shown:>4}")  # fmt: skip
