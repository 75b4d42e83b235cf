"""Remote GPU providers: their profiles, the registry's events and endpoints.

Events (stored, folded by the advisor into its provider registry):

    provider.upserted     ProviderUpserted: a provider profile created or replaced
    provider.removed      ProviderRemoved

Request/reply endpoints (``nats.micro``, service ``gpuroute-advisor``) are the
``PROVIDERS_*_SUBJECT`` constants below, each with its request and reply type.
Every type here is lenient (an older reader skips newer fields), requests too:
they are messages between services. A profile a person types (an HTTP body, the
seed file) is decoded as :data:`ProviderProfileBody`, its strict form
(``schemas.strict.strict``), where an unknown field at any level is an error.

Units: GB (10^9 bytes) for VRAM offers, USD, seconds where a name says ``_s``.

Every field a person types is bounded (``Name``: ``limits.MAX_NAME`` characters,
``Text``: ``limits.MAX_TEXT``, lists: ``MAX_GPUS`` offers, ``MAX_AUTH_FIELDS``
names), so a profile always fits an event with room to spare; a longer one
is a 400 naming the field and the limit.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from schemas.envelope import event_type
from schemas.limits import MAX_NAME, MAX_TEXT
from schemas.strict import strict
from schemas.subjects import command

# -- subjects ------------------------------------------------------------------

PROVIDERS_LIST_SUBJECT = command(
    "gpuroute.providers.list",
    "ProviderListQuery -> ProviderList (optionally of one kind).",
    server="advisor",
    clients=("gateway", "scheduler"),
    request="ProviderListQuery",
    reply="ProviderList",
)
PROVIDERS_GET_SUBJECT = command(
    "gpuroute.providers.get",
    "ProviderRef -> ProviderProfile (404 when unknown).",
    server="advisor",
    clients=("gateway",),
    request="ProviderRef",
    reply="ProviderProfile",
)
PROVIDERS_PUT_SUBJECT = command(
    "gpuroute.providers.put",
    "ProviderPut -> ProviderChanged; publishes provider.upserted (409 if create and it exists).",
    server="advisor",
    clients=("gateway",),
    request="ProviderPut",
    reply="ProviderChanged",
)
PROVIDERS_DELETE_SUBJECT = command(
    "gpuroute.providers.delete",
    "ProviderRef -> ProviderChanged; publishes provider.removed (404 when unknown).",
    server="advisor",
    clients=("gateway",),
    request="ProviderRef",
    reply="ProviderChanged",
)
PROVIDERS_STATS_SUBJECT = command(
    "gpuroute.providers.stats",
    "ProvidersQuery -> ProviderStats.",
    server="advisor",
    clients=("gateway",),
    request="ProvidersQuery",
    reply="ProviderStats",
)

# Every number is bounded to a finite, generous range, so no input can make an
# estimate inf or nan (JSON's 1e309 decodes to inf; TOML can say nan and inf).
MAX_VRAM_GB = 4096.0
MAX_PRICE_USD = 10_000.0
"""Per hour or per second: far above any GPU's list price, still finite."""
MAX_SECONDS = 86_400.0
MIN_SPEED = 0.001
"""Speeds divide run times: 1000x slower than the reference GPU at worst."""
MIN_INCREMENT_S = 0.001
"""A billing increment divides billed time: 0 (exact) or at least this."""
Price = Annotated[float, msgspec.Meta(ge=0, le=MAX_PRICE_USD)]
Speed = Annotated[float, msgspec.Meta(ge=MIN_SPEED, le=100)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
MAX_GPUS = 64
"""GPU offers in one profile."""
MAX_AUTH_FIELDS = 32


# -- profiles ------------------------------------------------------------------

ProviderKind = Literal[
    "runpod_pod", "runpod_serverless", "hf_endpoint", "replicate", "modal", "local_gpu"
]
PROVIDER_KINDS: tuple[str, ...] = get_args(ProviderKind)
PriceUnit = Literal["hour", "second"]
RESERVED_IDS = frozenset({"local", "cpu", "remote", "wait", "stats", "gpu"})
"""Target names and the literal routes under ``/api/providers/`` (``stats``,
``gpu``): a provider cannot take one of these ids (a test checks the routes)."""
ProviderId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class GpuOffer(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU type a provider rents. ``relative_speed``: 1.0 = the reference GPU."""

    gpu: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    vram_gb: Annotated[float, msgspec.Meta(gt=0, le=MAX_VRAM_GB)]
    price_usd: Price
    unit: PriceUnit = "hour"
    relative_speed: Speed = 1.0

    @property
    def hourly_usd(self) -> float:
        return self.price_usd * 3600 if self.unit == "second" else self.price_usd


class PriceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """When and where the prices were read. ``date`` is a real YYYY-MM-DD date."""

    date: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    note: Text = ""

    def __post_init__(self) -> None:
        try:
            datetime.date.fromisoformat(self.date)
        except ValueError:
            raise ValueError(f"`date` {self.date!r} is not a real date (YYYY-MM-DD)") from None


class HardwareProfile(msgspec.Struct, frozen=True, kw_only=True):
    """How the provider runs a job.

    ``throughput_factor`` scales every GPU's ``relative_speed`` (network, image
    pull, runtime overhead); ``cold_start_s`` is added to each job and billed
    when ``bills_cold_start``; billed time is rounded up to a multiple of
    ``billing_increment_s`` (per-minute billing: 60; 0 = exact; else >= 0.001 s).
    """

    throughput_factor: Speed = 1.0
    cold_start_s: Seconds = 0.0
    bills_cold_start: bool = True
    billing_increment_s: Seconds = 0.0

    def __post_init__(self) -> None:
        if 0 < self.billing_increment_s < MIN_INCREMENT_S:
            raise ValueError(
                f"`billing_increment_s` must be 0 (exact) or >= {MIN_INCREMENT_S:g} s,"
                f" got {self.billing_increment_s:g}"
            )


class ProviderProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Where a job can run remotely; prices per GPU with their snapshot's date and source."""

    id: ProviderId
    kind: ProviderKind
    gpus: Annotated[tuple[GpuOffer, ...], msgspec.Meta(min_length=1, max_length=MAX_GPUS)]
    price_snapshot: PriceSnapshot
    name: Name = ""
    auth_fields: Annotated[tuple[Name, ...], msgspec.Meta(max_length=MAX_AUTH_FIELDS)] = ()
    base_url: Text = ""
    region: Name = ""
    hardware: HardwareProfile = HardwareProfile()
    transfer_usd_per_gb: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0
    enabled: bool = True
    notes: Text = ""

    def __post_init__(self) -> None:
        if self.id in RESERVED_IDS:
            raise ValueError(f"`id` {self.id!r} is reserved; pick another id")


ProviderProfileBody = strict(ProviderProfile)
"""A profile as a client or the seed file writes it: every level is strict."""


# -- events, requests, replies -------------------------------------------------


class ProviderUpserted(msgspec.Struct, frozen=True, kw_only=True):
    """Create or replace a provider. ``origin``: ``seed`` (first start) or ``api``."""

    profile: ProviderProfile
    origin: Name = "api"


class ProviderRemoved(msgspec.Struct, frozen=True, kw_only=True):
    id: Name
    reason: Text = ""


class ProvidersQuery(msgspec.Struct, frozen=True, kw_only=True):
    pass


class ProviderListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/providers?kind=modal``: only the providers of that kind."""

    kind: ProviderKind | None = None


class ProviderRef(msgspec.Struct, frozen=True, kw_only=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ProviderPut(msgspec.Struct, frozen=True, kw_only=True):
    """Upsert a profile; with ``create`` it must not exist yet."""

    profile: ProviderProfile
    create: bool = False


class ProviderList(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    providers: list[ProviderProfile]


class ProviderChanged(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to a put or delete. ``applied``: the advisor folded the event back
    from the store before replying (false: published, not yet stored)."""

    id: str
    event_id: str
    version: int
    applied: bool
    profile: ProviderProfile | None = None


class ProviderStats(msgspec.Struct, frozen=True, kw_only=True):
    """The registry's stats: the reply of ``GET /api/providers/stats`` and the
    ``registry`` of a debug cost preview (the advisor builds both in one place).

    The first four come from the registry alone. The rest are the service's:
    ``seeded``; ``storage_path`` (``storage``, its older name), the event store
    holding the registry's events, None when the store did not answer;
    ``persisted``, the registry is rebuilt from stored events (the store
    answered); ``position``, the store position folded. They are left out (UNSET)
    where stats are computed without the service (a pure cost preview, a replay).
    """

    total: int
    enabled: int
    by_kind: dict[str, int]
    version: int
    seeded: bool | UnsetType = UNSET
    storage: str | UnsetType | None = UNSET
    persisted: bool | UnsetType = UNSET
    position: int | UnsetType = UNSET
    storage_path: str | UnsetType | None = UNSET


ProviderUpsertedEvent = event_type(
    "provider.upserted",
    ProviderUpserted,
    "A provider profile was created or replaced.",
    publishers=("advisor",),
    readers=("advisor",),
)
ProviderRemovedEvent = event_type(
    "provider.removed",
    ProviderRemoved,
    "A provider was removed from the registry.",
    publishers=("advisor",),
    readers=("advisor",),
)
