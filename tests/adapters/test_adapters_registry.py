"""The registry: live only with secrets, settings and the flag; describe() says what is
missing; and, end to end, a known token never shows up in any output."""

from __future__ import annotations

import logging

import msgspec
import pytest

from services.adapters.contract import ProviderJob
from services.adapters.dryrun import DryRunAdapter
from services.adapters.errors import UnknownProviderError
from services.adapters.huggingface import HuggingFaceAdapter, HuggingFaceSettings
from services.adapters.modal import ModalSettings
from services.adapters.options import AdapterOptions
from services.adapters.registry import AdaptersSettings, build_registry
from services.adapters.replicate import ReplicateSettings
from services.adapters.runpod import RunPodAdapter, RunPodSettings
from services.runtime.provider_errors import ProviderError
from services.runtime.secrets import SecretStore, load_secrets
from tests.adapters.adapter_fakes import MODAL_ID, MODAL_SECRET, TOKEN, Fake, Scripted

ENV = {
    "RUNPOD_API_KEY": TOKEN,
    "HF_TOKEN": TOKEN,
    "REPLICATE_API_TOKEN": TOKEN,
    "MODAL_TOKEN_ID": MODAL_ID,
    "MODAL_TOKEN_SECRET": MODAL_SECRET,
}
JOB = ProviderJob(input={"prompt": "x"}, job_id="j1")


def _secrets() -> SecretStore:
    return load_secrets(None, environ=ENV)


def test_a_new_user_is_told_exactly_what_is_missing() -> None:
    registry = build_registry(AdaptersSettings(), SecretStore.empty())
    described = {d.provider: d for d in registry.describe()}
    assert list(described) == ["runpod", "huggingface", "replicate", "modal"]
    runpod = described["runpod"]
    assert runpod.mode == "dry_run"
    assert runpod.reasons == ["missing_token", "missing_setting", "flag_off"]
    assert runpod.required_secrets == runpod.missing_secrets == ["runpod.api_key"]
    assert runpod.env_vars == {"runpod.api_key": ["GPUROUTE_RUNPOD_API_KEY", "RUNPOD_API_KEY"]}
    assert runpod.missing_settings == ["runpod.endpoint_id"]
    assert runpod.hint == (
        "dry-run; to go live with RunPod: put runpod.api_key in a secrets file (named by "
        "adapters.secrets_file in the config) (or set GPUROUTE_RUNPOD_API_KEY or "
        "RUNPOD_API_KEY); set adapters.runpod.endpoint_id in the config; turn on "
        "features.enable_public_gpu_adapters (PUT /api/flags)"
    )
    modal = described["modal"]
    assert modal.missing_secrets == ["modal.token_id", "modal.token_secret"]
    assert modal.missing_settings == ["modal.base_url"]
    hf_missing = described["huggingface"].missing_settings
    assert hf_missing == ["huggingface.namespace", "huggingface.name"]
    for provider in described:
        adapter = registry.get(provider)
        assert isinstance(adapter, DryRunAdapter) and adapter.reason == "missing_token"


def _configured(base: str = "http://127.0.0.1:9") -> AdaptersSettings:
    return AdaptersSettings(
        runpod=RunPodSettings(endpoint_id="ep-test", base_url=f"{base}/v2"),
        huggingface=HuggingFaceSettings(namespace="acme", name="llm", management_url=f"{base}/v2"),
        replicate=ReplicateSettings(model="acme/sdxl", base_url=base),
        modal=ModalSettings(base_url=base),
    )


def test_with_everything_but_the_flag_nothing_is_live() -> None:
    registry = build_registry(_configured(), _secrets())
    for described in registry.describe():
        assert (described.mode, described.reasons) == ("dry_run", ["flag_off"])
        assert described.missing_secrets == [] and described.missing_settings == []
        assert described.hint.endswith(
            "turn on features.enable_public_gpu_adapters (PUT /api/flags)"
        )
    assert registry.describe()[0].secret_sources == {"runpod.api_key": "env:RUNPOD_API_KEY"}


async def test_flag_off_makes_no_live_call(
    runpod_settings: RunPodSettings, fake: Fake, http_options: AdapterOptions
) -> None:
    settings = AdaptersSettings(runpod=runpod_settings)
    async with build_registry(settings, _secrets(), options=http_options) as registry:
        adapter = registry.get("runpod")
        submitted = await adapter.submit(JOB)
        assert submitted.id is not None
        await adapter.poll(submitted.id)
        await adapter.cancel(submitted.id)
        await adapter.health()
    assert fake.requests == []
    assert submitted.dry_run and submitted.ok


async def test_flag_on_goes_live(
    runpod_settings: RunPodSettings, fake: Fake, http_options: AdapterOptions
) -> None:
    settings = AdaptersSettings(runpod=runpod_settings)
    async with build_registry(
        settings, _secrets(), enable_public_gpu_adapters=True, options=http_options
    ) as registry:
        adapter = registry.get("runpod")
        assert isinstance(adapter, RunPodAdapter) and not adapter.dry_run
        submitted = await adapter.submit(JOB)
        assert (submitted.dry_run, submitted.id) == (False, "rp-1")
        assert registry.describe()[0].hint == "live: calls go to RunPod"
        assert isinstance(registry.get("modal"), DryRunAdapter)  # not configured


async def test_dry_run_setting_wins_even_without_tokens() -> None:
    settings = AdaptersSettings(replicate=ReplicateSettings(dry_run=True))
    registry = build_registry(settings, SecretStore.empty(), enable_public_gpu_adapters=True)
    adapter = registry.get("replicate")
    assert isinstance(adapter, DryRunAdapter) and adapter.reason == "dry_run_mode"
    assert (await adapter.submit(ProviderJob(input={}, seed=3))).id == "mock-replicate-3"
    described = {d.provider: d for d in registry.describe()}["replicate"]
    assert described.reasons[0] == "dry_run_mode"
    assert described.hint.startswith(
        "dry-run; to go live with Replicate: set adapters.replicate.dry_run = false"
    )


def test_unknown_provider() -> None:
    registry = build_registry(AdaptersSettings(), SecretStore.empty())
    with pytest.raises(UnknownProviderError, match="lambda get: unknown provider"):
        registry.get("lambda")


def test_settings_typos_are_errors_with_a_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"unknown field `endpointid`.*\$\.runpod"):
        msgspec.convert({"runpod": {"endpointid": "x"}}, AdaptersSettings)
    loaded = msgspec.convert({"modal": {"base_url": "https://x.modal.run"}}, AdaptersSettings)
    assert loaded.modal.base_url == "https://x.modal.run"


async def test_a_known_token_never_leaks_anywhere(
    runpod_server: object,
    replicate_server: object,
    hf_server: object,
    modal_server: object,
    runpod_settings: RunPodSettings,
    replicate_settings: ReplicateSettings,
    hf_settings: HuggingFaceSettings,
    modal_settings: ModalSettings,
    fake: Fake,
    http_options: AdapterOptions,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = AdaptersSettings(
        runpod=runpod_settings,
        replicate=replicate_settings,
        huggingface=hf_settings,
        modal=modal_settings,
    )
    outputs: list[str] = []
    async with build_registry(
        settings, _secrets(), enable_public_gpu_adapters=True, options=http_options
    ) as registry:
        outputs.append(msgspec.json.encode(registry.describe()).decode())
        outputs.append(repr(registry.describe()))
        for provider in registry.providers:
            adapter = registry.get(provider)
            outputs.append(repr(adapter))
            submitted = await adapter.submit(JOB)
            assert submitted.id is not None and not submitted.dry_run
            if isinstance(adapter, HuggingFaceAdapter):
                await adapter.wait(submitted.id)
            for result in (
                submitted,
                await adapter.poll(submitted.id),
                await adapter.poll(submitted.id),
                await adapter.cancel(submitted.id),
                await adapter.health(),
            ):
                outputs.append(msgspec.json.encode(result).decode())
                outputs.append(repr(result))
        # error paths, with providers that echo the credentials back
        echo = f"bad credentials: Bearer {TOKEN} / {MODAL_ID} / {MODAL_SECRET}"
        fake.plan("status", Scripted(401, {"error": echo}))
        fake.plan("result", Scripted(403, echo, raw=True))
        fake.plan("manage", Scripted(200, f'{{"leak": "{TOKEN}"', raw=True))
        for provider, remote_id in (("runpod", "rp-1"), ("modal", "fc-1")):
            with pytest.raises(ProviderError) as caught:
                await registry.get(provider).poll(remote_id)
            outputs += [str(caught.value), repr(caught.value), str(caught.value.to_dict())]
        with pytest.raises(ProviderError) as caught:
            await registry.get("huggingface").health()
        outputs += [str(caught.value), repr(caught.value)]
    outputs.append(caplog.text)
    outputs.append(repr(_secrets()))
    for text in outputs:
        for secret in (TOKEN, MODAL_ID, MODAL_SECRET):
            assert secret not in text
