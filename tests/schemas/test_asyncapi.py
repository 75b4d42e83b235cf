"""The subject registry is complete and its AsyncAPI 3.0 document is valid.

The document is validated against the official AsyncAPI 3.0.0 JSON Schema of
the npm package ``@asyncapi/specs``, installed on first use into a cache
folder (``GPUROUTE_TEST_CACHE``, default ``~/.cache/gpuroute-tests``) with
``npm install``; never copied by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

import schemas
from schemas.asyncapi import asyncapi_document, message_types
from schemas.subjects import SERVICES, USERS, registry
from services import cli

SPECS_VERSION = "6.11.1"


@pytest.fixture(scope="session")
def asyncapi_schema() -> dict[str, Any]:
    cache = Path(os.environ.get("GPUROUTE_TEST_CACHE", Path.home() / ".cache/gpuroute-tests"))
    folder = cache / f"asyncapi-specs-{SPECS_VERSION}"
    if not (folder / SCHEMA).is_file():
        _install(folder)
    spec: dict[str, Any] = json.loads((folder / SCHEMA).read_text())
    return spec


SCHEMA = "node_modules/@asyncapi/specs/schemas/3.0.0.json"


def _install(folder: Path) -> None:
    """``npm install`` into a private folder renamed to ``folder`` when complete:
    runs side by side (two checkouts, pytest-xdist workers) never read a
    half-written package, and the one that loses the rename uses the winner's."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed once to install @asyncapi/specs (the AsyncAPI schema)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(private),
                   f"@asyncapi/specs@{SPECS_VERSION}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not (private / SCHEMA).is_file():
            pytest.fail(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
        if folder.is_dir() and not (folder / SCHEMA).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # an install cut short before
        with contextlib.suppress(OSError):  # another run got there first
            private.rename(folder)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local $ref: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref} does not resolve"
        node = node[part]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _pointer(document, node["$ref"])
    return node


def test_document_is_valid_asyncapi_3(asyncapi_schema: dict[str, Any]) -> None:
    document = asyncapi_document()
    validator = jsonschema.Draft7Validator(asyncapi_schema)
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in validator.iter_errors(document)]  # fmt: skip
    assert errors == []
    assert document["asyncapi"] == "3.0.0"


def test_the_validation_catches_a_broken_document(asyncapi_schema: dict[str, Any]) -> None:
    document = asyncapi_document()
    next(iter(document["operations"].values()))["action"] = "publish"  # 2.x wording
    assert not jsonschema.Draft7Validator(asyncapi_schema).is_valid(document)


def test_every_ref_resolves() -> None:
    document = asyncapi_document()
    refs = _refs(document)
    assert len(refs) > 100
    for ref in refs:
        _pointer(document, ref)


def test_every_subject_has_a_channel_with_its_payload() -> None:
    document = asyncapi_document()
    addresses = {c["address"] for c in document["channels"].values()}
    for row in registry():
        want = row.name.replace(">", "{type}" if row.kind == "stored" else "{subject}")
        assert want in addresses, row.name
    event = document["components"]["messages"]["flags.changed"]
    schema = _pointer(document, event["payload"]["$ref"])
    assert schema["properties"]["type"]["enum"] == ["flags.changed"]
    assert "data" in schema["required"]
    advise = document["operations"]["gateway.send.gpuroute.advisor.advise"]
    reply = _pointer(document, advise["reply"]["messages"][0]["$ref"])
    assert _pointer(document, reply["payload"]["$ref"])["title"] == "Decision"


def test_every_subject_has_a_publisher_and_every_command_a_server_and_types() -> None:
    for row in registry():
        assert row.publishers, f"{row.name}: no publisher in the registry"
        assert set(row.publishers) <= set(USERS), row.name
        assert set(row.readers) <= set(USERS), row.name
        if row.kind == "command":
            assert len(row.readers) == 1 and row.readers[0] in SERVICES, row.name
            request, reply = message_types(row)
            assert isinstance(request, type) and isinstance(reply, type), row.name


def test_operations_say_who_sends_and_receives() -> None:
    operations = asyncapi_document()["operations"]
    assert operations["advisor.send.flags.changed"]["action"] == "send"
    assert operations["adapters.receive.flags.changed"]["action"] == "receive"
    assert operations["modder.receive.stored"]["action"] == "receive"
    assert "modder.send.flags.changed" not in operations
    assert operations["store.receive.gpuroute.store.read"]["reply"]


def test_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema", "--asyncapi"]) == 0
    printed = msgspec.json.decode(capsys.readouterr().out)
    assert printed == msgspec.json.decode(msgspec.json.encode(asyncapi_document()))
    assert schemas.registry()  # the package import registered every subject
