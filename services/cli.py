"""The ``gpuroute`` command: up, serve, tail, replay, schema.

This module is the composition root: the only place that knows every
service and every projection by name. Errors we expect (a busy port, a bad
config file, an unreachable NATS) print one line and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from services.runtime.config import Config, load_config
from services.runtime.errors import GpurouteError
from services.runtime.logs import setup_logging

# name -> "module:Class"; `up` starts them in this order (the store first: it
# creates the streams; the gateway last: it serves what the others answer).
SERVICES: dict[str, str] = {
    "store": "services.store.service:StoreService",
    "adapters": "services.adapters.service:AdaptersService",
    "advisor": "services.advisor.service:AdvisorService",
    "gateway": "services.gateway.service:GatewayService",
}

PROJECTIONS: dict[str, str] = {
    "jobs": "services.store.jobtable:JobTableProjection",
    "providers": "services.advisor.projection:ProviderRegistryProjection",
}

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


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


def _common(p: argparse.ArgumentParser, *, embedded: bool) -> None:
    p.add_argument("--config", help="TOML config file (embedded defaults when absent)")
    p.add_argument("--data-dir", help="where events.db, logs and JetStream live (./.gpuroute)")
    p.add_argument(
        "--nats-url",
        help="use this NATS server"
        + (
            " instead of starting the embedded one"
            if embedded
            else f" (default {DEFAULT_NATS_URL})"
        ),
    )
    if embedded:
        p.add_argument("--nats-port", type=int, help="embedded server port (4222; 0 = any free)")
    p.add_argument("--http-host", help="gateway address (127.0.0.1)")
    p.add_argument("--http-port", type=int, help="gateway port (8000; 0 = any free)")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpuroute",
        description="Route GPU jobs to the local GPU, the CPU or a rented cloud GPU; "
        "every decision is an event on NATS, stored in SQLite.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the embedded NATS server and every service")
    _common(up, embedded=True)

    serve = sub.add_parser("serve", help="run one service alone against a NATS server")
    serve.add_argument("name", choices=sorted(SERVICES), help="the service to run")
    _common(serve, embedded=False)

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
    tail.add_argument("--nats-url", default=DEFAULT_NATS_URL)

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
    )


async def _serve(config: Config, names: Sequence[str]) -> None:
    from services.runtime.runner import run

    await run(config, [(n, _load(SERVICES[n])) for n in names])


async def _tail(url: str, patterns: list[str], after: int | None) -> None:
    from services.runtime.bus import Bus
    from services.runtime.follow import follow

    bus = await Bus.connect(url, source="tail")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("up", "serve"):
            config = _config(args)
            if args.command == "serve" and config.nats.url is None:
                config.nats.url = DEFAULT_NATS_URL
            setup_logging(config.log_level, config.data_path / "gpuroute.log")
            names = list(SERVICES) if args.command == "up" else [args.name]
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_serve(config, names))
        elif args.command == "tail":
            setup_logging("WARNING")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_tail(args.nats_url, args.patterns, args.after))
        elif args.command == "replay":
            _replay(args)
        elif args.command == "schema":
            _schema(args)
    except GpurouteError as e:
        print(f"gpuroute: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
