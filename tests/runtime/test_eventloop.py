"""The services' event loop: uvloop unless GPUROUTE_LOOP=asyncio; a bad value
is an error naming the variable, said before anything starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime import eventloop
from services.runtime.errors import ConfigError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_unless_asyncio_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.LOOP_ENV, raising=False)
    assert eventloop.loop_name() == "uvloop"  # a dependency here
    assert eventloop.run(_loop_module()).startswith("uvloop")
    monkeypatch.setenv(eventloop.LOOP_ENV, " AsyncIO ")
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_loop_module()).startswith("asyncio")


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.LOOP_ENV, "Trio")
    with pytest.raises(ConfigError) as e:
        eventloop.loop_name()
    assert str(e.value) == "GPUROUTE_LOOP: 'Trio': expected one of uvloop, asyncio"


def test_uvloop_that_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    monkeypatch.delenv(eventloop.LOOP_ENV, raising=False)
    assert eventloop.loop_name() == "asyncio"  # the default falls back
    monkeypatch.setenv(eventloop.LOOP_ENV, "uvloop")
    with pytest.raises(ConfigError, match="GPUROUTE_LOOP: 'uvloop', but it does not load here"):
        eventloop.loop_name()


def test_serve_refuses_a_bad_loop_before_starting(tmp_path: Path) -> None:
    gpuroute = Path(sys.executable).parent / "gpuroute"
    done = subprocess.run(
        [str(gpuroute), "serve", "store", "--data-dir", str(tmp_path / "data")],
        env={"PATH": "/usr/bin:/bin", "GPUROUTE_LOOP": "fast"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "GPUROUTE_LOOP: 'fast': expected one of uvloop, asyncio" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started
