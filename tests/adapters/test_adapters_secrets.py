"""Secrets: the TOML file, environment precedence, clear errors, and no leaks."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from services.runtime.provider_errors import SecretsFileError
from services.runtime.secrets import REQUIRED_KEYS, Secret, env_names, load_secrets
from tests.adapters.adapter_fakes import TOKEN

FULL = f"""
[runpod]
api_key = "{TOKEN}-rp"
[huggingface]
api_key = "{TOKEN}-hf"
[replicate]
api_token = "{TOKEN}-rep"
[modal]
token_id = "wk-{TOKEN}"
token_secret = "ws-{TOKEN}"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(text)
    return path


def test_a_full_file_gives_every_key(tmp_path: Path) -> None:
    store = load_secrets(_write(tmp_path, FULL), environ={})
    for provider in ("runpod", "huggingface", "replicate", "modal"):
        assert store.missing(provider) == []
    secret = store.get("modal", "token_secret")
    assert secret is not None and secret.reveal() == f"ws-{TOKEN}"
    assert store.source("runpod", "api_key") == f"file:{tmp_path / 'secrets.toml'}"


def test_no_file_means_everything_is_missing(tmp_path: Path) -> None:
    store = load_secrets(tmp_path / "absent.toml", environ={})
    assert store.missing("modal") == ["modal.token_id", "modal.token_secret"]
    assert load_secrets(None, environ={}).get("runpod", "api_key") is None


def test_empty_values_count_as_missing(tmp_path: Path) -> None:
    store = load_secrets(_write(tmp_path, '[runpod]\napi_key = "  "\n'), environ={})
    assert store.missing("runpod") == ["runpod.api_key"]


def test_env_precedence_ours_then_usual_then_file(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    env = {
        "GPUROUTE_RUNPOD_API_KEY": "ours",
        "RUNPOD_API_KEY": "usual",
        "HF_TOKEN": "hf-usual",
        "REPLICATE_API_TOKEN": "",
        "MODAL_TOKEN_ID": "wk-env",
    }
    store = load_secrets(path, environ=env)

    def value(provider: str, key: str) -> str:
        found = store.get(provider, key)
        assert found is not None
        return found.reveal()

    assert value("runpod", "api_key") == "ours"
    assert store.source("runpod", "api_key") == "env:GPUROUTE_RUNPOD_API_KEY"
    assert value("huggingface", "api_key") == "hf-usual"
    assert store.source("huggingface", "api_key") == "env:HF_TOKEN"
    assert value("replicate", "api_token") == f"{TOKEN}-rep"  # empty env does not override
    assert value("modal", "token_id") == "wk-env"
    assert value("modal", "token_secret") == f"ws-{TOKEN}"


def test_env_names_are_documented() -> None:
    assert env_names("huggingface", "api_key") == ("GPUROUTE_HUGGINGFACE_API_KEY", "HF_TOKEN")
    assert env_names("modal", "token_secret") == (
        "GPUROUTE_MODAL_TOKEN_SECRET",
        "MODAL_TOKEN_SECRET",
    )


def test_invalid_toml_names_the_file_and_key_but_not_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, f'[runpod]\napi_key = "ok"\n[replicate]\napi_token = {TOKEN}\n')
    with pytest.raises(SecretsFileError) as caught:
        load_secrets(path, environ={})
    assert caught.value.path == str(path) and caught.value.key == "replicate.api_token"
    assert str(path) in str(caught.value) and "replicate.api_token" in str(caught.value)
    assert "line 4" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[runpod]\napi_key = 42\n", "runpod.api_key", "expected a string, got int"),
        ('[runpod]\napikey = "x"\n', "runpod.apikey", "unknown key (known: runpod.api_key)"),
        ('[lambda]\napi_key = "x"\n', "lambda", "unknown provider table"),
        ('runpod = "x"\n', "runpod", "expected a table [runpod]"),
    ],
)
def test_wrong_shapes_are_clear_errors(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SecretsFileError) as caught:
        load_secrets(path, environ={})
    assert caught.value.key == key
    assert words in str(caught.value) and str(path) in str(caught.value)
    assert str(caught.value).startswith("load_secrets: ")


def test_a_directory_is_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SecretsFileError, match="cannot read the file"):
        load_secrets(tmp_path, environ={})


def test_secret_never_shows_itself() -> None:
    secret = Secret(TOKEN)
    for shown in (
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        format(secret, ""),
        repr([secret]),
        repr({"k": secret}),
    ):
        assert TOKEN not in shown
    assert repr(secret) == "***"
    assert secret == Secret(TOKEN) and secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_store_repr_lists_keys_not_values(tmp_path: Path) -> None:
    store = load_secrets(_write(tmp_path, FULL), environ={})
    assert TOKEN not in repr(store)
    assert "runpod.api_key" in repr(store)


def test_the_sample_file_loads_and_names_every_key() -> None:
    sample = Path(__file__).resolve().parents[2] / "ops" / "secrets.sample.toml"
    assert repr(load_secrets(sample, environ={})) == "SecretStore(held=[])"
    text = sample.read_text()
    for provider, keys in REQUIRED_KEYS.items():
        assert f"[{provider}]" in text
        assert all(f'{key} = ""' in text for key in keys)
