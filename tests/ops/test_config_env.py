"""Every config key from the environment: GPUROUTE_<SECTION>_<KEY>, with
defaults < file < environment < flags, and a bad value one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main
from services.runtime.config import ConfigError, env_name, load_config, settings


def test_every_key_has_its_own_variable() -> None:
    keys = [key for key, _ in settings()]
    names = [env_name(k) for k in keys]
    assert len(set(names)) == len(names) > 100
    assert env_name("nats.url") == "GPUROUTE_NATS_URL"
    assert env_name("adapters.runpod.dry_run") == "GPUROUTE_ADAPTERS_RUNPOD_DRY_RUN"


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[http]\nport = 8100\nhost = "127.0.0.2"\n[nats]\nurl = "nats://file:1"\n')
    env = {"GPUROUTE_HTTP_PORT": "8200", "GPUROUTE_NATS_URL": "nats://env:1",
           "GPUROUTE_OPS_MODEL_ROOTS": '["/srv/models"]', "GPUROUTE_HEARTBEAT_S": "2.5",
           "GPUROUTE_ADAPTERS_RUNPOD_DRY_RUN": "true", "GPUROUTE_LOG_LEVEL": ""}  # fmt: skip
    config = load_config(toml, environ=env, nats__url="nats://flag:1")
    assert config.http.port == 8200  # env over file
    assert config.http.host == "127.0.0.2"  # file over default
    assert config.nats.url == "nats://flag:1"  # flag over env
    assert config.ops.model_roots == ["/srv/models"]
    assert config.heartbeat_s == 2.5 and config.adapters.runpod.dry_run is True
    assert config.log_level == "INFO"  # empty: unset
    assert load_config(environ={}).http.port == 8000


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("GPUROUTE_HTTP_PORT", "eighty", "Expected `int`"),
        ("GPUROUTE_HTTP_PORT", "70000", "<= 65535"),
        ("GPUROUTE_OPS_MODEL_ROOTS", "[/srv", "JSON is malformed"),
        ("GPUROUTE_HTTP_PROT", "8000", "names no setting"),
        ("GPUROUTE_GATEWAY_TOKEN", "short-secret", "length >= 16"),
    ],
)
def test_bad_variable_is_one_error_naming_it(var: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(environ={var: value})
    assert str(e.value).startswith(f"{var}: ") and says in str(e.value)
    assert value not in str(e.value)  # a value may be a secret: never echoed


def test_provider_secrets_and_token_are_not_settings() -> None:
    env = {"GPUROUTE_TOKEN": "x" * 20, "GPUROUTE_RUNPOD_API_KEY": "k", "GPUROUTE_HF_TOKEN": "t"}
    assert load_config(environ=env).gateway.token is None


def test_cli_says_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("GPUROUTE_NATS_PORT", "-1")
    assert main(["serve", "store", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpuroute: error: GPUROUTE_NATS_PORT: bad value")
