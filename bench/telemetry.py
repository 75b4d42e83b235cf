"""Telemetry events per hour on this machine: every reading (before) vs the deadband gate.

Takes real readings (NVML + psutil, as ``gpuroute serve telemetry`` does) every
``--interval`` seconds for ``--seconds``, passes each through the gate with the
``[telemetry]`` defaults (or ``--config``), and prints the events an hour and
the bytes a day each way, with why each gated sample was published. Before the
telemetry service, the advisor published every reading (360 an hour at 10 s).

    .venv/bin/python bench/telemetry.py --seconds 600
"""

from __future__ import annotations

import argparse
import collections
import time

import msgspec

from schemas import encode_event, make_event
from schemas.telemetry import TelemetrySample
from services.runtime.config import load_config
from services.runtime.ids import IdGenerator
from services.telemetry.deadband import Gate
from services.telemetry.sources import NvmlTelemetry


def _size(sample: TelemetrySample) -> int:
    """Bytes of the encoded event (the store keeps about this much per event)."""
    key = sample.node or ""
    event = make_event(sample, id=sample.sample_id, key=key, ts=sample.ts, source="telemetry")
    return len(encode_event(event))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, help="default: [telemetry] interval_s")
    parser.add_argument("--config", help="TOML config with a [telemetry] section")
    args = parser.parse_args()
    settings = load_config(args.config).telemetry
    interval = args.interval or settings.interval_s
    gate = Gate(settings.deadband, settings.keepalive_s)
    source, ids = NvmlTelemetry(), IdGenerator()
    node = settings.node_id()
    taken = published = 0
    bytes_all = bytes_published = 0
    why: collections.Counter[str] = collections.Counter()
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        sid = ids.new()
        sample = msgspec.structs.replace(source.sample(sid, time.time()), node=node)
        taken += 1
        bytes_all += _size(sample)
        now = time.monotonic()
        trigger = gate.trigger(sample, now)
        if trigger is not None:
            gate.published(sample, now)
            published += 1
            bytes_published += _size(msgspec.structs.replace(sample, trigger=trigger))
            why[trigger.split(":")[0]] += 1
        time.sleep(interval)
    source.close()
    hours = (time.monotonic() - start) / 3600
    print(f"node {node}: {taken} readings in {hours * 60:.1f} min, every {interval:g} s")
    print(f"GPUs: {sample.reason or len(sample.gpus)}")
    day = hours / 24
    before = f"{taken / hours:.0f} events/h, {bytes_all / day / 1e6:.2f} MB/day"
    print(f"before (every reading): {before}")
    print(
        f"after (deadband, keep-alive {settings.keepalive_s:g} s):"
        f" {published / hours:.1f} events/h, {bytes_published / day / 1e6:.3f} MB/day"
    )
    for reason, n in why.most_common():
        print(f"  {n:5d}  {reason}")


if __name__ == "__main__":
    main()
