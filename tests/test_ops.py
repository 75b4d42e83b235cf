"""What an operator deploys is valid: the sample config and the NATS configs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.runtime.config import Config, load_config
from services.runtime.natsserver import find_binary

OPS = Path(__file__).resolve().parent.parent / "ops"


def test_sample_config_loads_and_matches_the_embedded_defaults():
    assert load_config(OPS / "gpuroute.sample.toml") == Config()


@pytest.mark.parametrize(
    "name", ["single.conf", "cluster-1.conf", "cluster-2.conf", "cluster-3.conf"]
)
def test_nats_configs_are_valid_for_nats_server(name):
    r = subprocess.run([str(find_binary()), "-t", "-c", str(OPS / "nats" / name)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "is valid" in r.stderr + r.stdout


def test_systemd_units_run_the_installed_command():
    unit = (OPS / "systemd" / "gpuroute@.service").read_text()
    assert "gpuroute serve %i" in unit and "KillSignal=SIGTERM" in unit
