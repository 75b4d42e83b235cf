"""The provider registry: profiles of where a job can run remotely, as a pure fold.

``apply(state, payload)`` folds ``provider.upserted`` / ``provider.removed``
payloads into a :class:`RegistryState`; no clock, no I/O, so rebuilding from the
same log gives the same state, byte for byte. ``version`` counts the events that
changed the state; a decision records it.

Profiles travel in events as lenient Structs; HTTP bodies and the seed file
decode through the strict ``*Body`` twins (an unknown field is an error).
Validation is msgspec's: an unknown kind, a negative price or a missing id
fails naming the field (``Expected `float` >= 0.0 - at `$.gpus[0].price_usd```).

Prices are per GPU, per hour or per second as the provider publishes them,
each profile with the date and source of its price snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec

from services.advisor.config import PriceOverride
from services.advisor.errors import ConfigError

ProviderKind = Literal[
    "runpod_pod", "runpod_serverless", "hf_endpoint", "replicate", "modal", "local_gpu"
]
PROVIDER_KINDS: tuple[str, ...] = get_args(ProviderKind)
PriceUnit = Literal["hour", "second"]
# Targets the advisor names itself; a provider cannot take one of these ids.
RESERVED_IDS = frozenset({"local", "cpu", "remote", "wait"})
ProviderId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
SEED_FILE = "providers.toml"


class GpuOffer(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU type a provider rents. ``relative_speed``: 1.0 = the reference GPU."""

    gpu: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    vram_gb: Annotated[float, msgspec.Meta(gt=0, le=4096)]
    price_usd: Annotated[float, msgspec.Meta(ge=0)]
    unit: PriceUnit = "hour"
    relative_speed: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0

    @property
    def hourly_usd(self) -> float:
        return self.price_usd * 3600 if self.unit == "second" else self.price_usd


class PriceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """When and where the prices were read. ``date`` is YYYY-MM-DD."""

    date: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    source: Annotated[str, msgspec.Meta(min_length=1)]
    note: str = ""


class HardwareProfile(msgspec.Struct, frozen=True, kw_only=True):
    """How the provider runs a job.

    ``throughput_factor`` scales every GPU's ``relative_speed`` (network, image
    pull, runtime overhead); ``cold_start_s`` is added to each job and billed
    when ``bills_cold_start``; billed time is rounded up to a multiple of
    ``billing_increment_s`` (per-minute billing: 60; 0 = exact).
    """

    throughput_factor: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0
    cold_start_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    bills_cold_start: bool = True
    billing_increment_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class ProviderProfile(msgspec.Struct, frozen=True, kw_only=True):
    id: ProviderId
    kind: ProviderKind
    gpus: Annotated[tuple[GpuOffer, ...], msgspec.Meta(min_length=1)]
    price_snapshot: PriceSnapshot
    name: str = ""
    auth_fields: tuple[str, ...] = ()
    base_url: str = ""
    region: str = ""
    hardware: HardwareProfile = HardwareProfile()
    transfer_usd_per_gb: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    enabled: bool = True
    notes: str = ""

    def __post_init__(self) -> None:
        if self.id in RESERVED_IDS:
            raise ValueError(f"`id` {self.id!r} is reserved for a target name; pick another id")


class GpuOfferBody(GpuOffer, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PriceSnapshotBody(PriceSnapshot, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class HardwareProfileBody(HardwareProfile, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ProviderProfileBody(ProviderProfile, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A profile as a client or the seed file writes it: every level is strict."""

    gpus: Annotated[tuple[GpuOfferBody, ...], msgspec.Meta(min_length=1)]
    price_snapshot: PriceSnapshotBody
    hardware: HardwareProfileBody = HardwareProfileBody()


class ProviderUpserted(msgspec.Struct, frozen=True, kw_only=True, tag="provider.upserted"):
    """Create or replace a provider. ``origin``: ``seed`` (first start) or ``api``."""

    profile: ProviderProfile
    origin: str = "api"


class ProviderRemoved(msgspec.Struct, frozen=True, kw_only=True, tag="provider.removed"):
    id: str
    reason: str = ""


RegistryEvent = ProviderUpserted | ProviderRemoved


class RegistryState(msgspec.Struct, frozen=True, kw_only=True):
    """Providers by id (sorted by id), the version, and whether seeding happened."""

    version: int = 0
    providers: dict[str, ProviderProfile] = {}
    seeded: bool = False


class RegistryStats(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    enabled: int
    by_kind: dict[str, int]
    version: int


def apply(state: RegistryState, payload: RegistryEvent) -> RegistryState:
    """Fold one registry event. Removing an unknown id changes nothing."""
    match payload:
        case ProviderUpserted(profile=profile, origin=origin):
            providers = dict(state.providers)
            providers[profile.id] = _lenient(profile)
            return RegistryState(
                version=state.version + 1,
                providers=dict(sorted(providers.items())),
                seeded=state.seeded or origin == "seed",
            )
        case ProviderRemoved(id=provider_id):
            if provider_id not in state.providers:
                return state
            providers = {k: v for k, v in state.providers.items() if k != provider_id}
            return RegistryState(
                version=state.version + 1, providers=providers, seeded=state.seeded
            )
    raise TypeError(f"not a registry event: {type(payload).__name__}")


def fold(payloads: Iterable[RegistryEvent], state: RegistryState | None = None) -> RegistryState:
    """Fold many events, from ``state`` or from empty."""
    current = state if state is not None else RegistryState()
    for payload in payloads:
        current = apply(current, payload)
    return current


def stats(state: RegistryState) -> RegistryStats:
    by_kind = dict.fromkeys(PROVIDER_KINDS, 0)
    for p in state.providers.values():
        by_kind[p.kind] += 1
    return RegistryStats(
        total=len(state.providers),
        enabled=sum(p.enabled for p in state.providers.values()),
        by_kind=by_kind,
        version=state.version,
    )


_profile_decoder = msgspec.json.Decoder(ProviderProfileBody)


def parse_profile(raw: bytes | str) -> ProviderProfile:
    """Decode an HTTP body strictly; raises ``msgspec.ValidationError`` naming the field."""
    return _lenient(_profile_decoder.decode(raw))


def _lenient(profile: ProviderProfile) -> ProviderProfile:
    if type(profile) is ProviderProfile and all(type(g) is GpuOffer for g in profile.gpus):
        return profile
    return msgspec.convert(msgspec.to_builtins(profile), ProviderProfile)


class _SeedFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    providers: tuple[ProviderProfileBody, ...] = ()


def load_seed(path: Path | str | None = None) -> tuple[ProviderProfile, ...]:
    """Profiles from a seed TOML file; ``None`` reads the embedded ``providers.toml``."""
    if path is None:
        source = f"services/advisor/{SEED_FILE}"
        data = resources.files("services.advisor").joinpath(SEED_FILE).read_bytes()
    else:
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(path, f"cannot read: {e.strerror or e}") from e
    try:
        seed = msgspec.toml.decode(data, type=_SeedFile)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise ConfigError(source, str(e)) from e
    ids = [p.id for p in seed.providers]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(source, f"duplicate provider id {dupes[0]!r} - at `$.providers`")
    return tuple(_lenient(p) for p in seed.providers)


def seed_payloads(
    state: RegistryState, profiles: tuple[ProviderProfile, ...]
) -> list[ProviderUpserted]:
    """What to publish on start so seeding happens once.

    Nothing once any seed event was folded (so a provider an operator removed
    stays removed); otherwise one upsert per profile whose id is not registered.
    Publish each with a deterministic event id (``seed:<id>``) so two replicas
    starting together are deduplicated by JetStream.
    """
    if state.seeded:
        return []
    return [
        ProviderUpserted(profile=p, origin="seed") for p in profiles if p.id not in state.providers
    ]


def with_price_overrides(
    state: RegistryState, overrides: tuple[PriceOverride, ...]
) -> RegistryState:
    """The registry as priced by a config's ``price_overrides`` (version unchanged).

    An override naming an unregistered provider or GPU changes nothing.
    """
    if not overrides:
        return state
    providers = dict(state.providers)
    for o in overrides:
        profile = providers.get(o.provider)
        if profile is None:
            continue
        gpus = tuple(_override(g, o) if o.gpu in (None, g.gpu) else g for g in profile.gpus)
        providers[o.provider] = msgspec.structs.replace(profile, gpus=gpus)
    return msgspec.structs.replace(state, providers=providers)


def _override(offer: GpuOffer, o: PriceOverride) -> GpuOffer:
    if o.multiplier is not None:
        return msgspec.structs.replace(offer, price_usd=offer.price_usd * o.multiplier)
    assert o.price_usd is not None  # PriceOverride.__post_init__ guarantees one of the two
    return msgspec.structs.replace(offer, price_usd=o.price_usd, unit=o.unit)
