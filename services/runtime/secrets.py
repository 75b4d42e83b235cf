"""Provider secrets: a TOML file, overridden by environment variables.

One file serves every service that calls a provider (the adapters service for
serverless jobs, the cloud service for RunPod pods: both read
``adapters.secrets_file``), so its shape is defined here, once: a table the adapters
do not use is still no typo for the cloud service, and the reverse. The file (path set
in config; ``ops/secrets.sample.toml`` shows its shape, the real one is git-ignored)
has one table per provider::

    [runpod]       api_key = "..."
    [huggingface]  api_key = "..."
    [replicate]    api_token = "..."
    [modal]        token_id = "..."   token_secret = "..."

Precedence for each key, first non-empty value wins:

1. ``GPUROUTE_<PROVIDER>_<KEY>`` (e.g. ``GPUROUTE_RUNPOD_API_KEY``, ``GPUROUTE_MODAL_TOKEN_ID``);
2. the provider's usual variable: ``RUNPOD_API_KEY``, ``HF_TOKEN``, ``REPLICATE_API_TOKEN``,
   ``MODAL_TOKEN_ID`` / ``MODAL_TOKEN_SECRET``;
3. the secrets file.

A missing file is not an error (every provider then runs dry). A file that is not valid
TOML, a value that is not a non-empty string, an unknown table or an unknown key raises
``SecretsFileError`` naming the file and the key: a typo must not silently leave an
provider dry. Values are held in ``Secret``, whose ``repr``/``str`` is ``***``; only the
HTTP layer (http.py) calls ``reveal()``, to build a request header.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .provider_errors import SecretsFileError

# provider -> the keys it needs to go live, in the order a user should read them.
REQUIRED_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "runpod": ("api_key",),
    "huggingface": ("api_key",),
    "replicate": ("api_token",),
    "modal": ("token_id", "token_secret"),
}

# The providers' own SDKs read these; we accept them after our GPUROUTE_* names.
_USUAL_ENV: Final[Mapping[tuple[str, str], str]] = {
    ("runpod", "api_key"): "RUNPOD_API_KEY",
    ("huggingface", "api_key"): "HF_TOKEN",
    ("replicate", "api_token"): "REPLICATE_API_TOKEN",
    ("modal", "token_id"): "MODAL_TOKEN_ID",
    ("modal", "token_secret"): "MODAL_TOKEN_SECRET",
}


def env_names(provider: str, key: str) -> tuple[str, ...]:
    """Environment variables read for ``provider.key``, highest precedence first."""
    ours = f"GPUROUTE_{provider.upper()}_{key.upper()}"
    usual = _USUAL_ENV.get((provider, key))
    return (ours, usual) if usual else (ours,)


class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain value; call only where it goes straight into a request header."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values cannot be pickled")


class SecretStore:
    """Resolved secrets and where each came from (``env:NAME`` or ``file:PATH``)."""

    def __init__(self, values: Mapping[tuple[str, str], tuple[Secret, str]]) -> None:
        self._values = dict(values)

    @classmethod
    def empty(cls) -> SecretStore:
        return cls({})

    def get(self, provider: str, key: str) -> Secret | None:
        found = self._values.get((provider, key))
        return found[0] if found else None

    def source(self, provider: str, key: str) -> str | None:
        """Where ``provider.key`` came from, e.g. ``env:HF_TOKEN``; never the value."""
        found = self._values.get((provider, key))
        return found[1] if found else None

    def missing(self, provider: str) -> list[str]:
        """Dotted names (``modal.token_secret``) of the keys ``provider`` still lacks."""
        return [
            f"{provider}.{key}"
            for key in REQUIRED_KEYS.get(provider, ())
            if (provider, key) not in self._values
        ]

    def all_values(self) -> list[Secret]:
        """Every secret held, so the HTTP layer can redact them from provider text."""
        return [secret for secret, _ in self._values.values()]

    def scrub(self, data: bytes) -> bytes:
        """``data`` (UTF-8 or JSON bytes) with every held secret, raw or JSON-escaped,
        replaced by ``***``: the last guard before bytes leave a service."""
        for secret, _ in self._values.values():
            value = secret.reveal()
            for form in {value.encode(), json.dumps(value)[1:-1].encode()}:
                if form:
                    data = data.replace(form, b"***")
        return data

    def __repr__(self) -> str:
        held = sorted(f"{p}.{k}" for p, k in self._values)
        return f"SecretStore(held={held})"


def load_secrets(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> SecretStore:
    """Read the secrets file at ``path`` (if any), then apply environment overrides.

    ``environ`` defaults to ``os.environ``; tests pass their own mapping.
    Raises ``SecretsFileError`` for an unreadable or malformed file.
    """
    env = os.environ if environ is None else environ
    from_file = _read_file(Path(path)) if path is not None else {}
    values: dict[tuple[str, str], tuple[Secret, str]] = {}
    for provider, keys in REQUIRED_KEYS.items():
        for key in keys:
            found = _from_env(provider, key, env)
            if found is None and (provider, key) in from_file:
                found = from_file[(provider, key)]
            if found is not None:
                values[(provider, key)] = found
    return SecretStore(values)


def _from_env(provider: str, key: str, env: Mapping[str, str]) -> tuple[Secret, str] | None:
    for name in env_names(provider, key):
        value = env.get(name, "").strip()
        if value:
            return Secret(value), f"env:{name}"
    return None


def _read_file(path: Path) -> dict[tuple[str, str], tuple[Secret, str]]:
    shown = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SecretsFileError(shown, "", f"cannot read the file ({e.strerror})") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SecretsFileError(shown, "", "the file is not UTF-8 text") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message names line and column, never the values around them.
        raise SecretsFileError(shown, _key_near(text, str(e)), f"not valid TOML ({e})") from e
    return _validate(shown, doc)


def _key_near(text: str, message: str) -> str:
    """The dotted key on the line a TOML error points at, so the error can name it."""
    match = re.search(r"line (\d+)", message)
    if match is None:
        return ""
    table = ""
    lines = text.splitlines()
    lineno = int(match.group(1))
    for line in lines[: max(lineno - 1, 0)]:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            table = stripped.strip("[]").strip()
    if lineno > len(lines) or "=" not in lines[lineno - 1]:
        return table
    key = lines[lineno - 1].split("=", 1)[0].strip()
    return f"{table}.{key}" if table else key


def _validate(shown: str, doc: dict[str, object]) -> dict[tuple[str, str], tuple[Secret, str]]:
    values: dict[tuple[str, str], tuple[Secret, str]] = {}
    for provider, table in doc.items():
        if provider not in REQUIRED_KEYS:
            known = ", ".join(sorted(REQUIRED_KEYS))
            raise SecretsFileError(shown, provider, f"unknown provider table (known: {known})")
        if not isinstance(table, dict):
            raise SecretsFileError(shown, provider, f"expected a table [{provider}]")
        for key, value in table.items():
            dotted = f"{provider}.{key}"
            if key not in REQUIRED_KEYS[provider]:
                known = ", ".join(f"{provider}.{k}" for k in REQUIRED_KEYS[provider])
                raise SecretsFileError(shown, dotted, f"unknown key (known: {known})")
            if not isinstance(value, str):
                kind = type(value).__name__
                raise SecretsFileError(shown, dotted, f"expected a string, got {kind}")
            if value.strip():
                values[(provider, key)] = (Secret(value.strip()), f"file:{shown}")
    return values
