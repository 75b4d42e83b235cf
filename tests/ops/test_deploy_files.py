"""What an operator deploys is valid: the sample config and the NATS configs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services import cli
from services.runtime.config import Config, load_config
from services.runtime.natsserver import find_binary

OPS = Path(__file__).resolve().parents[2] / "ops"
INCLUDE = 'include "auth.conf"'


def test_sample_config_loads_and_matches_the_embedded_defaults():
    assert load_config(OPS / "gpuroute.sample.toml") == Config()


@pytest.mark.parametrize(
    "name", ["single.conf", "cluster-1.conf", "cluster-2.conf", "cluster-3.conf"]
)
def test_nats_configs_are_valid_for_nats_server(name, tmp_path, capsys):
    """With the users' block `gpuroute creds --nats-conf` prints where the
    config includes it."""
    assert cli.main(["creds", "--nats-conf", "--data-dir", str(tmp_path / "data")]) == 0
    (tmp_path / "auth.conf").write_text(capsys.readouterr().out)
    text = (OPS / "nats" / name).read_text()
    assert INCLUDE in text
    conf = tmp_path / name
    conf.write_text(text)
    r = subprocess.run([str(find_binary()), "-t", "-c", str(conf)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "is valid" in r.stderr + r.stdout


def test_systemd_units_run_the_installed_command():
    unit = (OPS / "systemd" / "gpuroute@.service").read_text()
    assert "gpuroute serve %i" in unit and "KillSignal=SIGTERM" in unit
    assert "--creds /var/lib/gpuroute/.gpuroute/credentials/%i.toml" in unit
    assert "UMask=0077" in unit
