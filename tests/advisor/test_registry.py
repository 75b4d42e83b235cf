from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from schemas.providers import (
    PROVIDER_KINDS,
    GpuOffer,
    PriceSnapshot,
    ProviderProfile,
    ProviderRemoved,
    ProviderUpserted,
)
from services.advisor.config import PriceOverride
from services.advisor.errors import AdvisorConfigError
from services.advisor.registry import (
    RegistryState,
    apply,
    fold,
    load_seed,
    parse_profile,
    seed_payloads,
    stats,
    with_price_overrides,
)


def profile(pid: str = "p1", kind: str = "modal", price: float = 1.0) -> ProviderProfile:
    return msgspec.convert(
        {
            "id": pid,
            "kind": kind,
            "gpus": [{"gpu": "L4", "vram_gb": 24, "price_usd": price}],
            "price_snapshot": {"date": "2026-11-01", "source": "https://example.test/pricing"},
        },
        ProviderProfile,
    )


def body(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "id": "p1",
        "kind": "modal",
        "gpus": [{"gpu": "L4", "vram_gb": 24, "price_usd": 0.8, "unit": "hour"}],
        "price_snapshot": {"date": "2026-11-01", "source": "https://example.test"},
    }
    doc.update(changes)
    return msgspec.json.encode({k: v for k, v in doc.items() if v is not None})


def test_seed_has_every_required_provider() -> None:
    seed = load_seed()
    kinds = {p.kind for p in seed}
    assert kinds == set(PROVIDER_KINDS)
    for p in seed:
        assert p.price_snapshot.source and p.price_snapshot.date.startswith("20")
        assert all(g.price_usd >= 0 and g.vram_gb > 0 for g in p.gpus)
    by_id = {p.id: p for p in seed}
    assert by_id["runpod-serverless"].gpus[0].unit == "second"
    assert by_id["hf-endpoints"].auth_fields == ("HF_TOKEN",)
    assert by_id["lan-box"].enabled is False


def test_apply_upsert_remove_and_version() -> None:
    s1 = apply(RegistryState(), ProviderUpserted(profile=profile("b")))
    s2 = apply(s1, ProviderUpserted(profile=profile("a")))
    assert list(s2.providers) == ["a", "b"] and s2.version == 2
    s3 = apply(s2, ProviderUpserted(profile=profile("a", price=2.0)))
    assert s3.providers["a"].gpus[0].price_usd == 2.0 and s3.version == 3
    s4 = apply(s3, ProviderRemoved(id="b"))
    assert list(s4.providers) == ["a"] and s4.version == 4
    assert apply(s4, ProviderRemoved(id="nope")) is s4
    assert s1.providers == {"b": profile("b")}  # earlier states are untouched


def test_rebuild_is_byte_identical() -> None:
    events: list[ProviderUpserted | ProviderRemoved] = [
        *seed_payloads(RegistryState(), load_seed()),
        ProviderUpserted(profile=profile("extra")),
        ProviderRemoved(id="replicate"),
    ]
    digests = {hashlib.sha256(msgspec.json.encode(fold(events))).hexdigest() for _ in range(3)}
    assert len(digests) == 1
    wire = [msgspec.json.decode(msgspec.json.encode(e), type=type(e)) for e in events]
    assert fold(wire) == fold(events)


def test_seeding_happens_once() -> None:
    seed = load_seed()
    first = seed_payloads(RegistryState(), seed)
    assert [p.origin for p in first] == ["seed"] * len(seed)
    state = fold(first)
    assert state.seeded and seed_payloads(state, seed) == []
    state = apply(state, ProviderRemoved(id="modal"))
    assert seed_payloads(state, seed) == []  # a removed provider stays removed
    partial = fold([ProviderUpserted(profile=profile("modal"))])
    assert [p.profile.id for p in seed_payloads(partial, seed)] == [
        p.id for p in seed if p.id != "modal"
    ]


def test_stats() -> None:
    st = stats(fold(seed_payloads(RegistryState(), load_seed())))
    assert st.total == 6 and st.enabled == 5 and st.version == 6
    assert st.by_kind["runpod_pod"] == 1 and sum(st.by_kind.values()) == 6
    assert stats(RegistryState()).by_kind == dict.fromkeys(PROVIDER_KINDS, 0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body(id=None), "Object missing required field `id`"),
        (body(kind="aws"), "Invalid enum value 'aws' - at `$.kind`"),
        (
            body(gpus=[{"gpu": "L4", "vram_gb": 24, "price_usd": -1}]),
            "Expected `float` >= 0.0 - at `$.gpus[0].price_usd`",
        ),
        (body(gpus=[]), "at `$.gpus`"),
        (body(id="Bad Id"), "at `$.id`"),
        (body(id="local"), "`id` 'local' is reserved"),
        (body(price_snapshot={"date": "Nov 2026", "source": "x"}), "at `$.price_snapshot.date`"),
        (body(colour="red"), "Object contains unknown field `colour`"),
        (
            body(gpus=[{"gpu": "L4", "vram_gb": 24, "price_usd": 1, "vram": 1}]),
            "Object contains unknown field `vram` - at `$.gpus[0]`",
        ),
    ],
)
def test_bad_profile_names_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as exc:
        parse_profile(raw)
    assert message in str(exc.value)


def test_parsed_profile_is_the_event_form() -> None:
    p = parse_profile(body())
    assert type(p) is ProviderProfile and type(p.gpus[0]) is GpuOffer
    assert p.gpus[0].hourly_usd == 0.8
    per_second = GpuOffer(gpu="x", vram_gb=1, price_usd=0.0002, unit="second")
    assert per_second.hourly_usd == pytest.approx(0.72)


def test_event_payloads_skip_unknown_fields() -> None:
    raw = msgspec.json.encode(ProviderUpserted(profile=profile()))
    raw = raw.replace(b'"enabled":true', b'"enabled":true,"future_field":1')
    assert msgspec.json.decode(raw, type=ProviderUpserted).profile == profile()


def test_bad_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(
        '[[providers]]\nid = "x"\nkind = "modal"\n'
        'price_snapshot = { date = "2026-01-01", source = "s" }\n'
        'gpus = [{ gpu = "T4", vram_gb = 16, price_usd = -0.1 }]\n'
    )
    with pytest.raises(AdvisorConfigError) as exc:
        load_seed(path)
    assert (
        str(exc.value) == f"{path}: Expected `float` >= 0.0 - at `$.providers[0].gpus[0].price_usd`"
    )
    path.write_text(
        '[[providers]]\nid = "x"\nkind = "modal"\n'
        'price_snapshot = { date = "2026-01-01", source = "s" }\n'
        'gpus = [{ gpu = "T4", vram_gb = 16, price_usd = 0.1 }]\n'
    )
    path.write_text(path.read_text() * 2)
    with pytest.raises(AdvisorConfigError, match="duplicate provider id 'x'"):
        load_seed(path)


def test_price_overrides() -> None:
    state = fold([ProviderUpserted(profile=profile("a", price=1.0))])
    doubled = with_price_overrides(state, (PriceOverride(provider="a", multiplier=2.0),))
    assert doubled.providers["a"].gpus[0].price_usd == 2.0
    assert doubled.version == state.version
    per_s = with_price_overrides(
        state, (PriceOverride(provider="a", gpu="L4", price_usd=0.001, unit="second"),)
    )
    assert per_s.providers["a"].gpus[0].hourly_usd == pytest.approx(3.6)
    other_gpu = (PriceOverride(provider="a", gpu="H100", multiplier=9.0),)
    assert with_price_overrides(state, other_gpu) == state
    assert with_price_overrides(state, (PriceOverride(provider="zz", multiplier=9.0),)) == state
    assert state.providers["a"].gpus[0].price_usd == 1.0
    assert PriceSnapshot(date="2026-01-01", source="s").note == ""


def test_any_failure_to_decode_a_profile_is_a_decode_error() -> None:
    deep = body().replace(b'"kind"', b'"x":' + b"[" * 3000 + b"]" * 3000 + b',"kind"', 1)
    assert deep.count(b"[") > 3000
    for raw in (deep, b'{"id":"\xff"}'):
        with pytest.raises(msgspec.DecodeError):
            parse_profile(raw)
