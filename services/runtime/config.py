"""Configuration: embedded defaults, an optional TOML file, the environment,
then CLI flags (each wins over the one before).

The file is strict: an unknown key or a wrong type is a :class:`ConfigError`
naming the file and the path of the bad field. Every key is also
``GPUROUTE_<SECTION>_<KEY>`` in the environment (:func:`env_name`); a bad
value, or a ``GPUROUTE_<SECTION>_`` variable that names no key, is a
:class:`ConfigError` naming the variable. Later issues add sections as
nested Structs with defaults, so an old file stays valid.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi

from schemas.adapter_settings import AdaptersSettings
from schemas.advisor_settings import AdvisorSettings
from schemas.budget import BudgetSettings
from schemas.cloud_settings import LEGACY_ENV, CloudSettings
from schemas.gateway_settings import MIN_TOKEN, TOKEN_ENV, GatewaySettings, HttpSettings
from schemas.nats_settings import NatsSettings
from schemas.ops_settings import OpsSettings
from schemas.scheduler_settings import SchedulerSettings
from schemas.telemetry_settings import TelemetrySettings
from services.runtime.errors import ConfigError

LogLevel = Annotated[str, msgspec.Meta(pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")]
"""A logging level name, any case (the CLI's ``--log-level`` takes the same names)."""


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ".gpuroute"
    log_level: LogLevel = "INFO"
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    """[nats]: the server to use or the embedded one to start (schemas/nats_settings.py)."""
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    """[http]: the gateway's bind address (schemas/gateway_settings.py)."""
    advisor: AdvisorSettings = msgspec.field(default_factory=AdvisorSettings)
    """[advisor]: the advisor's files and ready timeout (schemas/advisor_settings.py)."""
    adapters: AdaptersSettings = msgspec.field(default_factory=AdaptersSettings)
    """[adapters]: secrets file and provider settings (schemas/adapter_settings.py,
    docs/adapters.md)."""
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    """[gateway]: health, timeouts, hosts, origins, token (schemas/gateway_settings.py,
    docs/gateway.md)."""
    telemetry: TelemetrySettings = msgspec.field(default_factory=TelemetrySettings)
    """[telemetry]: node id, sampling interval, keep-alive and deadbands
    (schemas/telemetry_settings.py, docs/telemetry.md)."""
    budget: BudgetSettings = msgspec.field(default_factory=BudgetSettings)
    """[budget]: the limits of a first start, profiler periods (schemas/budget.py,
    docs/perf.md)."""
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    """[scheduler]: executors, concurrency, leases, retries (schemas/scheduler_settings.py,
    docs/scheduler.md)."""
    ops: OpsSettings = msgspec.field(default_factory=OpsSettings)
    """[ops]: model files and roots, worker endpoints, thresholds of ``gpuroute
    doctor`` (schemas/ops_settings.py, docs/runbook.md)."""
    cloud: CloudSettings = msgspec.field(default_factory=CloudSettings)
    """[cloud]: pods, serverless, autoscaling, the daily cap (schemas/cloud_settings.py,
    docs/cloud.md); also the legacy variables of ``LEGACY_ENV``."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def events_db(self) -> Path:
        return self.data_path / "events.db"


def bearer_token(gateway: GatewaySettings, environ: Mapping[str, str] | None = None) -> str | None:
    """``GPUROUTE_TOKEN`` of ``environ`` (default: ``os.environ``) when set and not
    empty, else ``gateway.token``; a :class:`ConfigError` when the environment's
    is shorter than ``MIN_TOKEN`` (the value itself is never echoed)."""
    env = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if env and len(env) < MIN_TOKEN:
        raise ConfigError(TOKEN_ENV, f"a token needs at least {MIN_TOKEN} characters")
    return env or gateway.token


ENV_PREFIX = "GPUROUTE_"


def env_name(key: str) -> str:
    """The environment variable of a dotted config key: ``nats.url`` -> ``GPUROUTE_NATS_URL``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def settings(cls: type[msgspec.Struct] = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf key of ``cls`` (dotted) with its msgspec type (constraints included)."""
    hints = msgspec.structs.fields(cls)
    for f, info in zip(hints, mi.type_info(cls).fields, strict=True):  # type: ignore[attr-defined]
        if isinstance(info.type, mi.StructType):
            yield from settings(info.type.cls, prefix + f.encode_name + ".")
        else:
            yield prefix + f.encode_name, f.type


def _env_value(var: str, raw: str, kind: Any) -> Any:
    """``raw`` as a value of ``kind``: text as is for a str field, JSON for a
    list, else the text converted (``8000``, ``true``, ``1.5``)."""
    info = mi.type_info(kind)
    kinds = info.types if isinstance(info, mi.UnionType) else (info,)
    try:
        if any(isinstance(k, mi.StrType) for k in kinds):
            value: Any = raw
        elif any(isinstance(k, (mi.ListType, mi.DictType)) for k in kinds):
            value = msgspec.json.decode(raw)
        else:
            return msgspec.convert(raw, kind, strict=False)
        return msgspec.convert(value, kind)
    except msgspec.MsgspecError as e:
        raise ConfigError(var, f"bad value: {e}") from None  # the value may be a secret


@functools.cache
def _kinds() -> dict[str, Any]:
    """``settings()`` as a dict, computed once per process: the types never
    change at run time and walking them costs ~0.1 s (msgspec.inspect), which
    every ``load_config`` (each test, each service start) paid twice.
    Callers must not mutate it."""
    return dict(settings())


@functools.cache
def _env_names() -> tuple[dict[str, tuple[str, Any]], tuple[str, ...]]:
    """Each key's variable -> (key, type), and each section's variable prefix."""
    known = {env_name(key): (key, kind) for key, kind in _kinds().items()}
    sections = tuple(env_name(f.encode_name) + "_" for f in msgspec.structs.fields(Config)
                     if isinstance(mi.type_info(f.type), mi.StructType))  # fmt: skip
    return known, sections


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The config keys set in ``environ`` (``GPUROUTE_<SECTION>_<KEY>``), validated.

    An empty variable counts as unset. Other ``GPUROUTE_`` variables
    (``GPUROUTE_TOKEN``, provider secrets) are left alone, except one under a
    section's prefix that names no key: a typo."""
    known, sections = _env_names()
    out: dict[str, Any] = {}
    for var, raw in sorted(environ.items()):
        if not raw:
            continue
        if var in known:
            key, kind = known[var]
            out[key] = _env_value(var, raw, kind)
        elif any(var.startswith(s) for s in sections):
            raise ConfigError(var, "names no setting (docs/configuration.md lists each "
                              "key's variable)")  # fmt: skip
    return out


def legacy_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``[cloud]`` keys set by the variables existing deployments use
    (``schemas.cloud_settings.LEGACY_ENV``: ``CLOUD_IDLE_TIMEOUT`` in ms, ...),
    validated like the rest; a bad value is a :class:`ConfigError` naming it."""
    kinds = _kinds()
    out: dict[str, Any] = {}
    for var, (name, factor) in LEGACY_ENV.items():
        raw = environ.get(var)
        if not raw:
            continue
        key = "cloud." + name
        if factor != 1:  # another unit: the number first, then the key's bounds
            raw = repr(_env_value(var, raw, float) * factor)
        out[key] = _env_value(var, raw, kinds[key])
    return out


def _set(struct: Any, dotted: str, value: Any) -> Any:
    """A copy of ``struct`` with ``dotted`` set (sections may be frozen Structs)."""
    head, _, rest = dotted.partition(".")
    if rest:
        value = _set(getattr(struct, head), rest, value)
    return msgspec.structs.replace(struct, **{head: value})


def load_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:  # fmt: skip
    """Load defaults, then ``path`` (TOML) if given, then the ``GPUROUTE_``
    variables of ``environ`` (default: ``os.environ``), then non-None ``overrides``.

    Overrides use dotted names with ``__``: ``nats__port=0``, ``data_dir=...``.
    """
    config = Config()
    if path is not None:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ConfigError(str(p), f"cannot read: {e.strerror}") from e
        try:
            config = msgspec.toml.decode(raw, type=Config)
        except msgspec.ValidationError as e:
            raise ConfigError(str(p), str(e)) from e
        except msgspec.DecodeError as e:
            raise ConfigError(str(p), f"not valid TOML: {e}") from e
    environ = os.environ if environ is None else environ
    for key, value in {**legacy_overrides(environ), **env_overrides(environ)}.items():
        config = _set(config, key, value)
    for name, value in overrides.items():
        if value is not None:
            config = _set(config, name.replace("__", "."), value)
    return config
