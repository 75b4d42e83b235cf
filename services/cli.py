"""The ``gpuroute`` command: up, serve, tail, replay, schema, creds, doctor,
and the job commands submit, jobs, job, cancel (services/scheduler/client.py).

This module is the composition root: the only place that knows every
service and every projection by name. Nothing prints a traceback:

- a bad option or option value (``--http-port 70000``, ``--log-level LOUD``)
  is one line naming the option, exit 2 (argparse's convention), before
  anything starts;
- errors we expect (a bad value inside a config file, a busy port, an
  unreachable NATS) are one line, exit 1.

``tail`` and ``serve`` find NATS by ``--nats-url``, else the URL a running
``gpuroute up`` wrote to ``<data-dir>/nats.url``, else ``DEFAULT_NATS_URL``;
an unreachable one is reported within ``CONNECT_DEADLINE_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from schemas.subjects import MODDER, USERS
from services.runtime.config import Config, bearer_token, load_config
from services.runtime.credentials import (
    Credentials,
    authorization_conf,
    ensure_credentials,
    find_credentials,
    load_credentials,
)
from services.runtime.errors import GpurouteError
from services.runtime.logs import get_logger, setup_logging
from services.runtime.runner import NATS_URL_FILE
from services.runtime.service import VERSION

# name -> "module:Class"; `up` starts them in this order (the store first: it
# creates the streams; the gateway last: it serves what the others answer).
SERVICES: dict[str, str] = {
    "store": "services.store.service:StoreService",
    "adapters": "services.adapters.service:AdaptersService",
    "telemetry": "services.telemetry.service:TelemetryService",
    "advisor": "services.advisor.service:AdvisorService",
    "budget": "services.budget.service:BudgetService",
    "scheduler": "services.scheduler.service:SchedulerService",
    "cloud": "services.cloud.service:CloudService",
    "gateway": "services.gateway.service:GatewayService",
}

PROJECTIONS: dict[str, str] = {
    "jobs": "services.scheduler.table:JobTableProjection",
    "providers": "services.advisor.projection:ProviderRegistryProjection",
    "advisor": "services.advisor.projection:AdvisorProjection",
    "adapters": "services.adapters.projection:AdaptersProjection",
    "budget": "services.budget.fold:BudgetProjection",
    "cloud": "services.cloud.ledger:LedgerProjection",
}

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATA_DIR = ".gpuroute"
CONNECT_DEADLINE_S = 2.0
"""How long ``tail`` and ``serve`` try to reach NATS before saying they cannot."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the one line naming the problem (exit 2);
    ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _position(text: str) -> int:
    """A global position: an integer >= 0 (argparse turns the error into usage + exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 0-65535 (0: any free), got {value}")
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def nats_url(flag: str | None, data_dir: Path | str) -> str:
    """The NATS URL to use: ``flag``, else the one ``gpuroute up`` wrote to
    ``<data_dir>/nats.url`` (absent, unreadable or empty: skipped), else the default."""
    if flag:
        return flag
    try:
        written = (Path(data_dir) / NATS_URL_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        written = ""
    return written or DEFAULT_NATS_URL


def _common(p: argparse.ArgumentParser, *, embedded: bool) -> None:
    p.add_argument("--config", help="TOML config file (embedded defaults when absent)")
    p.add_argument("--data-dir", help="where events.db, logs and JetStream live (./.gpuroute)")
    p.add_argument(
        "--nats-url",
        help="use this NATS server"
        + (
            " instead of starting the embedded one"
            if embedded
            else f" (default: the URL in <data-dir>/{NATS_URL_FILE}, else {DEFAULT_NATS_URL})"
        ),
    )
    if embedded:
        p.add_argument("--nats-port", type=_port, help="embedded server port (4222; 0 = any free)")
    p.add_argument("--http-host", help="gateway address (127.0.0.1)")
    p.add_argument("--http-port", type=_port, help="gateway port (8000; 0 = any free)")
    p.add_argument("--log-level", type=_log_level, help=", ".join(LOG_LEVELS) + " (INFO)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpuroute",
        description="Route GPU jobs to the local GPU, the CPU or a rented cloud GPU; "
        "every decision is an event on NATS, stored in SQLite.",
    )
    parser.add_argument("--version", action="version", version=f"gpuroute {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the embedded NATS server and every service")
    _common(up, embedded=True)

    serve = sub.add_parser("serve", help="run one service alone against a NATS server")
    serve.add_argument("name", choices=sorted(SERVICES), help="the service to run")
    _common(serve, embedded=False)
    serve.add_argument(
        "--creds",
        metavar="FILE",
        help="log in to NATS with this credentials file (default: [nats] creds, else "
        "<data-dir>/credentials/NAME.toml when `gpuroute up` made it, else no login)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_port,
        help="serve this service's own Prometheus metrics at http://HTTP-HOST:PORT/metrics "
        "(0 = any free port; the URL is printed)",
    )

    tail = sub.add_parser("tail", help="print events as JSON lines: stored after N, then live")
    tail.add_argument(
        "patterns",
        nargs="*",
        default=[">"],
        metavar="PATTERN",
        help="subject patterns with NATS wildcards (default: every event)",
    )
    tail.add_argument(
        "--after", type=_position, help="first print stored events after this position"
    )
    tail.add_argument(
        "--nats-url",
        help=f"default: the URL in <data-dir>/{NATS_URL_FILE}, else {DEFAULT_NATS_URL}",
    )
    tail.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"where a running `gpuroute up` wrote {NATS_URL_FILE} ({DEFAULT_DATA_DIR})",
    )
    tail.add_argument(
        "--creds",
        metavar="FILE",
        help="log in to NATS with this credentials file (default: the modder's of "
        "<data-dir>, when `gpuroute up` made it)",
    )

    replay = sub.add_parser("replay", help="rebuild a projection from an event log, without NATS")
    replay.add_argument("--db", required=True, type=Path, help="path of an events.db")
    replay.add_argument("--until-seq", type=_position, help="stop after this position")
    replay.add_argument("--projection", default="jobs", choices=sorted(PROJECTIONS))
    replay.add_argument(
        "--what-if",
        type=Path,
        metavar="FILE",
        help="instead: re-run every recorded advisor decision with the thresholds and "
        "prices of FILE (format of ops/advisor.toml) and print what changes",
    )

    schema = sub.add_parser("schema", help="print the JSON Schema of every event type")
    schema.add_argument(
        "--subjects", action="store_true", help="print the subject registry instead"
    )
    schema.add_argument(
        "--asyncapi",
        action="store_true",
        help="print the AsyncAPI 3.0 document of every subject instead",
    )
    schema.add_argument(
        "--openapi", action="store_true", help="print the gateway's OpenAPI 3.1 document instead"
    )

    doctor = sub.add_parser(
        "doctor",
        help="check NATS, the store, every service, GPU, disk, model files; "
        "exit 1 when a check fails",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--config", help="TOML config file ([ops]: model files, workers)")
    doctor.add_argument("--data-dir", help="the data directory of `gpuroute up` (./.gpuroute)")
    doctor.add_argument(
        "--nats-url",
        help=f"default: the URL in <data-dir>/{NATS_URL_FILE}, else {DEFAULT_NATS_URL}",
    )
    doctor.add_argument(
        "--creds",
        metavar="FILE",
        help="log in with this credentials file (default: the gateway's of <data-dir>)",
    )

    creds = sub.add_parser(
        "creds", help="print a NATS user's login (URL with user:password) for a data dir"
    )
    creds.add_argument(
        "user", nargs="?", choices=USERS, help="modder: reads events, publishes nothing"
    )
    creds.add_argument(
        "--nats-conf",
        action="store_true",
        help="instead: make every user's credentials in --data-dir (kept if there) and "
        "print nats-server's authorization block for them (ops/nats/)",
    )
    creds.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"the data directory of `gpuroute up` ({DEFAULT_DATA_DIR})",
    )
    from services.scheduler.client import add_commands

    add_commands(sub)
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        args.config,
        data_dir=args.data_dir,
        log_level=args.log_level,
        nats__url=args.nats_url,
        nats__port=getattr(args, "nats_port", None),
        http__host=args.http_host,
        http__port=args.http_port,
        nats__creds=getattr(args, "creds", None),
    )


GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic collector of a service process (Python's default is 700, 10, 10). A
service allocates a few hundred containers per event it handles; with the
default, collections of the older generations, which walk every live object
(a job table, jobs in flight), were ~22% of the scheduler's CPU in
``bench/lifecycle.py`` and ~2% with these (docs/scheduler.md)."""


async def _serve(
    config: Config, names: Sequence[str], connect_deadline: float,
    metrics_port: int | None = None, loop: str = "asyncio",
) -> None:  # fmt: skip
    from services.runtime.runner import run

    get_logger("runner").debug("event loop", extra={"fields": {"loop": loop}})
    factories = [(n, _load(SERVICES[n])) for n in names]
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # what is loaded by now (modules, config) lives as long as the process
    await run(config, factories, connect_deadline=connect_deadline, metrics_port=metrics_port)


async def _tail(
    url: str, patterns: list[str], after: int | None, creds: Credentials | None
) -> None:
    from services.runtime.bus import Bus
    from services.runtime.follow import follow

    bus = await Bus.connect(
        url, source="tail", connect_deadline=CONNECT_DEADLINE_S, credentials=creds
    )
    try:
        async for item in follow(bus, patterns, after):
            sys.stdout.write(item.decode() + "\n")
            sys.stdout.flush()
    finally:
        await bus.close()


def _replay(args: argparse.Namespace) -> None:
    from services.runtime.projection import Projector, canonical
    from services.store.eventlog import iter_events

    if args.what_if is not None:
        from services.advisor.replay import what_if_text

        sys.stdout.write(what_if_text(iter_events(args.db, args.until_seq), args.what_if))
        return
    projection = _load(PROJECTIONS[args.projection])()
    projector = Projector(projection)
    projector.fold_raw(iter_events(args.db, args.until_seq, projection.type_prefix))
    snapshot = projector.snapshot()
    sys.stdout.write(msgspec.json.format(canonical(snapshot), indent=2).decode() + "\n")
    sys.stdout.write(f"sha256 {projector.hash()}\n")


def _schema(args: argparse.Namespace) -> None:
    import schemas

    if args.openapi:
        from services.gateway.openapi import document as openapi_document
        from services.gateway.routes import TABLE

        encoded = msgspec.json.encode(openapi_document(TABLE))
        sys.stdout.write(msgspec.json.format(encoded, indent=2).decode() + "\n")
        return
    if args.asyncapi:
        from schemas.asyncapi import asyncapi_document

        document = msgspec.json.encode(asyncapi_document())
        sys.stdout.write(msgspec.json.format(document, indent=2).decode() + "\n")
        return
    if args.subjects:
        for s in schemas.registry():
            sys.stdout.write(
                f"{s.name:32} {'stored ' if s.stored else 'live   '} {s.description}\n"
            )
        return
    sys.stdout.write(
        msgspec.json.format(msgspec.json.encode(schemas.events_json_schema()), indent=2).decode()
        + "\n"
    )


def _doctor(args: argparse.Namespace) -> int:
    """Every check of services/ops; 1 when one fails (the report says which)."""
    from services.ops.connect import doctor
    from services.ops.report import render_text

    config = load_config(args.config, data_dir=args.data_dir)
    url = nats_url(args.nats_url or config.nats.url, config.data_path)
    creds = (
        load_credentials(args.creds)
        if args.creds
        else find_credentials(config.data_path, "gateway")
    )
    expected = list(dict.fromkeys([*SERVICES, *config.gateway.expect_services]))
    report = asyncio.run(doctor(config, url, creds, expected))
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return 0 if report.ok else 1


def _creds(args: argparse.Namespace) -> None:
    """The URL (with the user's password) and inbox prefix of ``args.user``."""
    data_dir = Path(args.data_dir)
    if args.nats_conf:
        sys.stdout.write(authorization_conf(ensure_credentials(data_dir).values()))
        return
    if args.user is None:
        raise GpurouteError("creds: name a user, or pass --nats-conf")
    found = find_credentials(data_dir, args.user)
    if found is None:
        raise GpurouteError(
            f"no credentials for {args.user} in {data_dir}: run `gpuroute up` there first"
        )
    sys.stdout.write(found.url(nats_url(None, data_dir)) + "\n")
    sys.stdout.write(f"inbox prefix: {found.inbox_prefix}\n")


def _needs_token(config: Config) -> bool:
    """A gateway bound beyond loopback without a token would let anyone drive it."""
    from services.gateway.guard import is_loopback

    return not is_loopback(config.http.host) and bearer_token(config.gateway) is None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM before the runner installs its own handlers (while parsing, importing a
    # service, or connecting) is a clean stop too, like Ctrl-C: exit 0, no traceback
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    from services.scheduler.client import split_command

    argv, command = split_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    args.argv = command
    try:
        if args.command in ("up", "serve"):
            from services.runtime import eventloop

            loop = eventloop.loop_name()  # a bad GPUROUTE_LOOP is said before anything starts
            config = _config(args)
            if args.command == "serve":
                config.nats.url = nats_url(config.nats.url, config.data_path)
            gateway = args.command == "up" or args.name == "gateway"
            if gateway and _needs_token(config):  # before anything is created
                print(
                    f"gpuroute: error: --http-host {config.http.host} is not a loopback "
                    "address: set [gateway] token or GPUROUTE_TOKEN first",
                    file=sys.stderr,
                )
                return 2
            setup_logging(config.log_level, config.data_path / "gpuroute.log")
            names = list(SERVICES) if args.command == "up" else [args.name]
            if args.command == "up":  # /health then requires each service it starts
                expect = config.gateway.expect_services
                config.gateway.expect_services = list(dict.fromkeys([*names, *expect]))
            # serve: an unreachable NATS is said within CONNECT_DEADLINE_S, not 10 s
            deadline = CONNECT_DEADLINE_S if args.command == "serve" else 10.0
            with contextlib.suppress(KeyboardInterrupt):
                metrics_port = getattr(args, "metrics_port", None)
                eventloop.run(_serve(config, names, deadline, metrics_port, loop), loop)
        elif args.command == "tail":
            setup_logging("WARNING")
            url = nats_url(args.nats_url, args.data_dir)
            tail_creds = (
                load_credentials(args.creds)
                if args.creds
                else find_credentials(Path(args.data_dir), MODDER)
            )
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_tail(url, args.patterns, args.after, tail_creds))
        elif args.command == "replay":
            _replay(args)
        elif args.command == "schema":
            _schema(args)
        elif args.command == "doctor":
            setup_logging("WARNING")
            return _doctor(args)
        elif args.command == "creds":
            _creds(args)
        elif args.command in ("submit", "jobs", "job", "cancel"):
            from services.scheduler.client import run as run_job_command

            return run_job_command(args)
    except GpurouteError as e:
        print(f"gpuroute: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        pass
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM in a command that is not a service
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
