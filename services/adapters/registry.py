"""Which adapter each provider gets, and why: live or dry-run.

A provider goes live only when all of these hold; otherwise it gets a
``DryRunAdapter`` and no live call is ever made:

1. its ``dry_run`` setting is false                        (else reason ``dry_run_mode``)
2. every secret key it needs is present                   (else ``missing_token``)
3. every setting it needs is set (endpoint id, model, ...) (else ``missing_setting``)
4. ``enable_public_gpu_adapters`` is true (default false)  (else ``flag_off``)

``describe()`` lists, per provider, all the reasons that apply (not only the first),
the secret keys it needs and which are missing, the environment variables that can
supply them, where the present ones came from (never their values) and one sentence
saying what to do to go live.
"""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Final

from schemas.adapter_settings import AdaptersSettings
from schemas.adapters import PROVIDERS, DryRunReason, ProviderDescription
from services.runtime.secrets import REQUIRED_KEYS, Secret, SecretStore, env_names

from .contract import ProviderAdapter
from .dryrun import DryRunAdapter
from .errors import UnknownProviderError
from .huggingface import HuggingFaceAdapter
from .modal import ModalAdapter
from .options import AdapterOptions
from .replicate import ReplicateAdapter
from .runpod import RunPodAdapter

FLAG_NAME: Final = "features.enable_public_gpu_adapters"
_NAMES: Final = {
    "runpod": "RunPod",
    "huggingface": "Hugging Face",
    "replicate": "Replicate",
    "modal": "Modal",
}


def describe_provider(
    provider: str, settings: AdaptersSettings, secrets: SecretStore, enabled: bool
) -> ProviderDescription:
    """What ``provider`` needs, what it lacks, and whether it is live."""
    provider_settings = getattr(settings, provider)
    missing_secrets = secrets.missing(provider)
    missing_settings: list[str] = provider_settings.missing()
    reasons: list[DryRunReason] = []
    if provider_settings.dry_run:
        reasons.append("dry_run_mode")
    if missing_secrets:
        reasons.append("missing_token")
    if missing_settings:
        reasons.append("missing_setting")
    if not enabled:
        reasons.append("flag_off")
    keys = [f"{provider}.{key}" for key in REQUIRED_KEYS[provider]]
    env_vars = {
        f"{provider}.{key}": list(env_names(provider, key)) for key in REQUIRED_KEYS[provider]
    }
    sources = {
        f"{provider}.{key}": source
        for key in REQUIRED_KEYS[provider]
        if (source := secrets.source(provider, key)) is not None
    }
    return ProviderDescription(
        provider=provider,
        mode="dry_run" if reasons else "live",
        reasons=reasons,
        required_secrets=keys,
        missing_secrets=missing_secrets,
        secret_sources=sources,
        env_vars=env_vars,
        missing_settings=missing_settings,
        hint=_hint(provider, reasons, missing_secrets, missing_settings, settings.secrets_file),
    )


def _hint(
    provider: str,
    reasons: list[DryRunReason],
    secrets: list[str],
    settings: list[str],
    secrets_file: str | None,
) -> str:
    """One sentence a new user can act on. Settings are named as config keys under
    ``[adapters]``; the flag is changed by a ``flags.changed`` event (``PUT /api/flags``)."""
    name = _NAMES[provider]
    if not reasons:
        return f"live: calls go to {name}"
    steps = []
    if "dry_run_mode" in reasons:
        steps.append(f"set adapters.{provider}.dry_run = false in the config")
    where = secrets_file or "a secrets file (named by adapters.secrets_file in the config)"
    for dotted in secrets:
        _, key = dotted.split(".", 1)
        env = " or ".join(env_names(provider, key))
        steps.append(f"put {dotted} in {where} (or set {env})")
    for dotted in settings:
        steps.append(f"set adapters.{dotted} in the config")
    if "flag_off" in reasons:
        steps.append(f"turn on {FLAG_NAME} (PUT /api/flags)")
    return f"dry-run; to go live with {name}: " + "; ".join(steps)


def _choose(reasons: list[DryRunReason]) -> DryRunReason:
    """The reason that decides a dry-run adapter's answers (see ``dryrun.py``)."""
    for reason in ("dry_run_mode", "missing_token", "missing_setting", "flag_off"):
        if reason in reasons:
            return reason
    raise ValueError("a live provider has no dry-run reason")


class AdapterRegistry:
    """One adapter per provider, plus the description of each. Close it when done."""

    def __init__(
        self, adapters: dict[str, ProviderAdapter], descriptions: dict[str, ProviderDescription]
    ) -> None:
        self._adapters = adapters
        self._descriptions = descriptions

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._adapters)

    def get(self, provider: str) -> ProviderAdapter:
        """The adapter for ``provider``; ``UnknownProviderError`` if there is none."""
        adapter = self._adapters.get(provider)
        if adapter is None:
            known = ", ".join(self._adapters)
            raise UnknownProviderError(provider, "get", f"unknown provider (known: {known})")
        return adapter

    def describe(self) -> list[ProviderDescription]:
        return [self._descriptions[name] for name in self._adapters]

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()

    async def __aenter__(self) -> AdapterRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def build_registry(
    settings: AdaptersSettings,
    secrets: SecretStore,
    *,
    enable_public_gpu_adapters: bool = False,
    options: AdapterOptions | None = None,
) -> AdapterRegistry:
    """Adapters for every provider, live only where ``describe_provider`` says so.

    ``options`` carries the shared aiohttp session, RNG and sleep (tests pass seeded
    ones); its ``retry`` defaults to ``settings.retry``. Every secret in ``secrets`` is
    redacted from every adapter's provider text, not only that adapter's own.
    """
    http = options or AdapterOptions(retry=settings.retry)
    http = dataclasses.replace(http, redact=[*http.redact, *secrets.all_values()])
    adapters: dict[str, ProviderAdapter] = {}
    descriptions: dict[str, ProviderDescription] = {}
    for provider in PROVIDERS:
        found = describe_provider(provider, settings, secrets, enable_public_gpu_adapters)
        descriptions[provider] = found
        if found.reasons:
            adapters[provider] = DryRunAdapter(
                provider, _choose(found.reasons), missing_settings=found.missing_settings
            )
        else:
            adapters[provider] = _live(provider, settings, secrets, http)
    return AdapterRegistry(adapters, descriptions)


def _live(
    provider: str, settings: AdaptersSettings, secrets: SecretStore, http: AdapterOptions
) -> ProviderAdapter:
    def secret(key: str) -> Secret:
        found = secrets.get(provider, key)
        if found is None:  # describe_provider already checked; this guards a refactor
            raise UnknownProviderError(provider, "build", f"secret {provider}.{key} vanished")
        return found

    match provider:
        case "runpod":
            return RunPodAdapter(settings.runpod, api_key=secret("api_key"), options=http)
        case "huggingface":
            return HuggingFaceAdapter(settings.huggingface, api_key=secret("api_key"), options=http)
        case "replicate":
            return ReplicateAdapter(settings.replicate, api_token=secret("api_token"), options=http)
        case "modal":
            return ModalAdapter(
                settings.modal,
                token_id=secret("token_id"),
                token_secret=secret("token_secret"),
                options=http,
            )
    raise UnknownProviderError(provider, "build", "no live adapter for this provider")
