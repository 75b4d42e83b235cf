from __future__ import annotations

from pathlib import Path

import pytest

from services.advisor.config import (
    DEFAULT_CONFIG,
    AdvisorConfig,
    config_digest,
    load_config,
    parse_config,
)
from services.advisor.errors import AdvisorConfigError

OPS_FILE = Path(__file__).resolve().parents[2] / "ops" / "advisor.toml"


def test_embedded_default_is_the_python_default() -> None:
    assert load_config(None) == AdvisorConfig()
    assert DEFAULT_CONFIG.rules.remote.queue_saturated_at == 8


def test_ops_sample_equals_the_embedded_default() -> None:
    assert load_config(OPS_FILE) == DEFAULT_CONFIG


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[rules.cpu]\nmax_megapixels = 2.0\n")
    config = load_config(path)
    assert config.rules.cpu.max_megapixels == 2.0
    assert config.rules.cpu.max_minutes == DEFAULT_CONFIG.rules.cpu.max_minutes
    assert config.vram == DEFAULT_CONFIG.vram


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[rules.local_gpu]\nheadroom_gb = -1\n",
            "Expected `float` >= 0.0 - at `$.rules.local_gpu.headroom_gb`",
        ),
        ("[rules.remote]\nqueue_saturated_at = 0\n", "at `$.rules.remote.queue_saturated_at`"),
        ("[rules]\nlocal = true\n", "Object contains unknown field `local` - at `$.rules`"),
        ('[rules.cpu]\nallowed_kinds = ["3d"]\n', "at `$.rules.cpu.allowed_kinds[0]`"),
        (
            '[[price_overrides]]\nprovider = "modal"\n',
            "set exactly one of `price_usd` or `multiplier`",
        ),
        ("[pricing\n", "(at line 1, column"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(AdvisorConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)
    assert exc.value.path == str(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(AdvisorConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_digest_is_stable_and_sensitive() -> None:
    assert config_digest(AdvisorConfig()) == config_digest(DEFAULT_CONFIG)
    changed = parse_config("[rules.remote]\nqueue_saturated_at = 3\n")
    assert config_digest(changed) != config_digest(DEFAULT_CONFIG)


def test_rule_numbers_agree_in_code_docs_and_the_ops_file() -> None:
    """docs/advisor.md numbered the rules 1-5 while the code and ops/advisor.toml
    said 0-4 (rule 0: the preferred target; rule 4 always closes)."""
    import re
    from typing import get_args

    import services.advisor.rules
    from schemas.advisor import RuleName

    root = OPS_FILE.parents[1]
    code = dict(enumerate(get_args(RuleName)))
    docstring = services.advisor.rules.__doc__ or ""
    in_code = {int(n): r for n, r in re.findall(r"(?m)^(\d)\. ``(\w+)``", docstring)}
    docs = (root / "docs" / "advisor.md").read_text()
    in_docs = {int(n): r for n, r in re.findall(r"(?m)^(\d)\. `(\w+)`", docs)}
    in_ops = {int(n): r for n, r in re.findall(r"Rule (\d) \(`(\w+)`\)", OPS_FILE.read_text())}
    assert in_code == code and in_docs == code
    assert in_ops == code  # every rule named once in the ops file, with its number
