"""One home for config sections: every ``[section]`` of the config file is a
Struct defined in ``schemas/`` and ``services/runtime/config.py`` only
aggregates them, so a section is found (and documented) in one place."""

from __future__ import annotations

import inspect

import msgspec
import msgspec.inspect as mi

import services.runtime.config as runtime_config
from services.runtime.config import Config


def test_every_section_is_defined_in_schemas() -> None:
    sections = {
        f.encode_name: info.type.cls
        for f, info in zip(
            msgspec.structs.fields(Config),
            mi.type_info(Config).fields,  # type: ignore[attr-defined]
            strict=True,
        )
        if isinstance(info.type, mi.StructType)
    }
    assert {"nats", "http", "advisor", "gateway", "adapters"} <= set(sections)
    elsewhere = {name: cls.__module__ for name, cls in sections.items()
                 if not cls.__module__.startswith("schemas.")}  # fmt: skip
    assert elsewhere == {}


def test_the_runtime_config_defines_no_section_of_its_own() -> None:
    own = [
        name
        for name, obj in vars(runtime_config).items()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == runtime_config.__name__
    ]
    assert own == ["Config"]
