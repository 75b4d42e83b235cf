"""The provider registry: profiles of where a job can run remotely, as a pure fold.

``apply(state, payload)`` folds ``provider.upserted`` / ``provider.removed``
payloads into a :class:`RegistryState`; no clock, no I/O, so rebuilding from the
same log gives the same state, byte for byte. ``version`` counts the events that
changed the state; a decision records it.

The profile and event types live in ``schemas/providers.py``. Profiles travel
in events as lenient Structs; HTTP bodies and the seed file decode through the
strict ``*Body`` twins (an unknown field is an error).
Validation is msgspec's: an unknown kind, a negative price or a missing id
fails naming the field (``Expected `float` >= 0.0 - at `$.gpus[0].price_usd```).

Prices are per GPU, per hour or per second as the provider publishes them,
each profile with the date and source of its price snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import msgspec

from schemas import limits
from schemas.providers import (
    PROVIDER_KINDS,
    GpuOffer,
    ProviderProfile,
    ProviderProfileBody,
    ProviderRemoved,
    ProviderStats,
    ProviderUpserted,
)
from schemas.strict import lenient, strict
from services.advisor.config import PriceOverride
from services.advisor.errors import AdvisorConfigError

SEED_FILE = "providers.toml"


RegistryEvent = ProviderUpserted | ProviderRemoved


class RegistryState(msgspec.Struct, frozen=True, kw_only=True):
    """Providers by id (sorted by id), the version, and whether seeding happened."""

    version: int = 0
    providers: dict[str, ProviderProfile] = {}
    seeded: bool = False


def apply(state: RegistryState, payload: RegistryEvent) -> RegistryState:
    """Fold one registry event. Removing an unknown id changes nothing."""
    match payload:
        case ProviderUpserted(profile=profile, origin=origin):
            providers = dict(state.providers)
            providers[profile.id] = lenient(profile)
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


def stats(state: RegistryState) -> ProviderStats:
    by_kind = dict.fromkeys(PROVIDER_KINDS, 0)
    for p in state.providers.values():
        by_kind[p.kind] += 1
    return ProviderStats(
        total=len(state.providers),
        enabled=sum(p.enabled for p in state.providers.values()),
        by_kind=by_kind,
        version=state.version,
    )


_profile_decoder = msgspec.json.Decoder(ProviderProfileBody)


def parse_profile(raw: bytes | str) -> ProviderProfile:
    """Decode an HTTP body strictly; raises ``msgspec.ValidationError`` naming the field
    or ``msgspec.DecodeError`` (any other failure, see ``schemas.limits.decode``)."""
    return lenient(limits.decode(_profile_decoder, raw, what="provider profile"))


class _SeedFile(msgspec.Struct, frozen=True, kw_only=True):
    providers: tuple[ProviderProfile, ...] = ()


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
            raise AdvisorConfigError(path, f"cannot read: {e.strerror or e}") from e
    try:
        seed = msgspec.toml.decode(data, type=strict(_SeedFile))
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise AdvisorConfigError(source, str(e)) from e
    ids = [p.id for p in seed.providers]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise AdvisorConfigError(source, f"duplicate provider id {dupes[0]!r} - at `$.providers`")
    return tuple(lenient(p) for p in seed.providers)


def seed_payloads(
    state: RegistryState, profiles: tuple[ProviderProfile, ...]
) -> list[ProviderUpserted]:
    """What to publish on start so seeding happens once.

    Nothing once any seed event was folded (so a provider an operator removed
    stays removed); otherwise one upsert per profile whose id is not registered.
    Publish each with a deterministic event id (``service.seed_id``) so two replicas
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
