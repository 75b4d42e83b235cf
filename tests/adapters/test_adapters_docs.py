"""docs/adapters.md and ops/gpuroute.sample.toml name every [adapters] setting (issue 8:
the base URL settings were undocumented), and the sample's values are valid."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from schemas.adapter_settings import AdaptersSettings

ROOT = Path(__file__).resolve().parents[2]


def _settings() -> list[tuple[str, str]]:
    """(table, field) for every setting of the [adapters] section and its tables."""
    found = []
    for field in msgspec.structs.fields(AdaptersSettings):
        if isinstance(field.default_factory, type) and issubclass(
            field.default_factory, msgspec.Struct
        ):
            found += [(field.name, f.name) for f in msgspec.structs.fields(field.default_factory)]
        else:
            found.append(("", field.name))
    return found


def _sample_adapters_part() -> str:
    """From ``[adapters]`` up to the next section that is not an adapters one
    (commented or not): other sections follow it in the sample."""
    text = (ROOT / "ops" / "gpuroute.sample.toml").read_text()
    part = text[text.index("[adapters]") :]
    end = re.search(r"^(# )?\[(?!adapters)", part, re.M)
    return part[: end.start()] if end else part


def test_every_setting_is_in_the_docs_and_the_sample() -> None:
    docs = (ROOT / "docs" / "adapters.md").read_text()
    sample = _sample_adapters_part()
    for table, name in _settings():
        assert re.search(rf"\b{name}\b", docs), f"docs/adapters.md lacks {table}.{name}"
        assert re.search(rf"^# {name} = ", sample, re.M), f"sample lacks {table}.{name}"
    for url in ("runpod.base_url", "huggingface.management_url", "replicate.base_url",
                "modal.base_url"):  # fmt: skip
        assert f"`{url}`" in docs


def test_the_sample_settings_uncommented_are_the_defaults() -> None:
    lines = []
    for line in _sample_adapters_part().splitlines():
        body = line[2:] if line.startswith("# ") else line
        if re.match(r"^(\[adapters[.\w]*\]|\w+ = )", body):
            lines.append(body.split("  #")[0])
    section = msgspec.toml.decode("\n".join(lines).encode(), type=dict[str, AdaptersSettings])
    expected = AdaptersSettings(secrets_file="ops/secrets.toml")  # the one example value
    assert section["adapters"] == expected
