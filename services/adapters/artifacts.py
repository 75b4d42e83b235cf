"""Inline outputs saved as files: ``<data-dir>/artifacts/<provider>/<job>/<name>``.

Providers answer some outputs inline instead of as URLs: RunPod workers put base64
images in ``output`` (``data:image/png;base64,...`` URIs, ``{"type": "base64", "data":
..., "filename": ...}`` as worker-comfyui does, or bare base64 of an image), an HF
endpoint or a Modal app may answer raw image bytes. Left in ``output`` they would be
lost (a poll reply must fit one NATS message) or never listed as artifacts, so
:func:`collect` saves each one and puts its path where the data was.

Rules: at most ``max_bytes`` per file (a larger one is left out and named in the
notes); names are sanitised to ``[A-Za-z0-9._-]`` (no path can escape the job's
folder); folders are 0700 and files 0600, written to a temporary name and renamed, so
a reader never sees half a file. Saving the same bytes again (a second poll of a
finished job) rewrites nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from schemas.adapters import SavedArtifact

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*;base64,", re.ASCII)
MIN_BARE_BASE64: Final = 512
"""A bare string shorter than this is never taken for base64 image data."""
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_NAME_CHARS: Final = 100


def safe_name(name: str, fallback: str = "output") -> str:
    """``name`` reduced to a file name that stays in its folder: its last path part,
    only ``[A-Za-z0-9._-]``, no leading dot, at most 100 characters."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", last).lstrip(".")[:_NAME_CHARS]
    return cleaned or fallback


def sniff(data: bytes) -> str | None:
    """The image type of ``data`` from its first bytes, or None."""
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def extension(content_type: str) -> str:
    guessed = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
    return ".jpg" if guessed == ".jpe" else guessed


class ArtifactStore:
    """Where one adapters service saves inline outputs; ``root`` is created on first use."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def save(
        self, provider: str, job: str, name: str, data: bytes, content_type: str
    ) -> SavedArtifact:
        """Write ``data`` (callers check ``max_bytes`` first) and describe the file."""
        job_folder = _UNSAFE.sub("_", job).lstrip(".")[:_NAME_CHARS] or "job"
        folder = self.root / safe_name(provider) / job_folder
        for part in (self.root, self.root / safe_name(provider), folder):
            part.mkdir(mode=0o700, exist_ok=True)
        path = folder / safe_name(name)
        digest = hashlib.sha256(data).hexdigest()
        if not (path.is_file() and path.stat().st_size == len(data)
                and hashlib.sha256(path.read_bytes()).hexdigest() == digest):  # fmt: skip
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, path)
        return SavedArtifact(
            path=str(path.resolve()), size=len(data), content_type=content_type, sha256=digest
        )


@dataclass
class Collected:
    """``output`` with inline data replaced by file paths; what was saved; notes for
    the poll's logs (left-out data, over the limit or unreadable)."""

    output: Any
    saved: list[SavedArtifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [item.path for item in self.saved]


def collect(store: ArtifactStore | None, provider: str, job: str, output: Any) -> Collected:
    """Save every inline output found in ``output`` (see the module docstring).
    Without a store (adapters used on their own) the output is returned untouched."""
    found = Collected(output=output)
    if store is not None:
        found.output = _walk(store, provider, job, output, found, "output")
    return found


def save_bytes(
    store: ArtifactStore | None, provider: str, job: str, data: bytes, content_type: str
) -> Collected:
    """A raw (non-JSON) answer body: saved whole as ``output<ext>``; ``output`` then
    describes it (content type, size, and the path when saved)."""
    described: dict[str, Any] = {"content_type": content_type, "bytes": len(data)}
    found = Collected(output=described)
    if store is None:
        return found
    path = _save(store, provider, job, "output" + extension(content_type), data,
                 content_type, found)  # fmt: skip
    if path is not None:
        described["path"] = path
    return found


def _walk(store: ArtifactStore, provider: str, job: str, item: Any, found: Collected,
          name: str) -> Any:  # fmt: skip
    if isinstance(item, dict):
        if item.get("type") == "base64" and isinstance(item.get("data"), str):
            label = item.get("filename") if isinstance(item.get("filename"), str) else name
            path = _inline(store, provider, job, str(label), item["data"], None, found)
            if path is not None:
                return {**{k: v for k, v in item.items() if k != "data"}, "path": path}
            return {k: v for k, v in item.items() if k != "data"}
        return {key: _walk(store, provider, job, value, found, f"{name}-{key}")
                for key, value in item.items()}  # fmt: skip
    if isinstance(item, list):
        return [_walk(store, provider, job, value, found, f"{name}-{i}")
                for i, value in enumerate(item)]  # fmt: skip
    if isinstance(item, str):
        match = _DATA_URI.match(item)
        if match:
            path = _inline(store, provider, job, name, item[match.end():],
                           match.group("type"), found)  # fmt: skip
            return path if path is not None else "(inline data left out; see logs)"
        if len(item) >= MIN_BARE_BASE64 and _looks_like_image(item):
            path = _inline(store, provider, job, name, item, None, found)
            return path if path is not None else "(inline data left out; see logs)"
    return item


def _looks_like_image(text: str) -> bool:
    try:
        head = base64.b64decode(text[:64], validate=True)
    except (binascii.Error, ValueError):
        return False
    return sniff(head) is not None


def _inline(store: ArtifactStore, provider: str, job: str, name: str, text: str,
            content_type: str | None, found: Collected) -> str | None:  # fmt: skip
    estimated = len(text) * 3 // 4
    if estimated > store.max_bytes + 2:
        found.notes.append(
            f"inline output {name!r} of about {estimated} bytes left out: over the "
            f"artifact limit of {store.max_bytes} bytes (adapters.artifact_max_bytes)"
        )
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        found.notes.append(f"inline output {name!r} left out: not valid base64")
        return None
    kind = content_type or sniff(data) or "application/octet-stream"
    base = safe_name(name)
    if not Path(base).suffix:
        base += extension(kind)
    return _save(store, provider, job, base, data, kind, found)


def _save(store: ArtifactStore, provider: str, job: str, name: str, data: bytes,
          content_type: str, found: Collected) -> str | None:  # fmt: skip
    if len(data) > store.max_bytes:
        found.notes.append(
            f"output {name!r} of {len(data)} bytes left out: over the artifact limit of "
            f"{store.max_bytes} bytes (adapters.artifact_max_bytes)"
        )
        return None
    try:
        saved = store.save(provider, job, name, data, content_type)
    except OSError as e:
        found.notes.append(f"output {name!r} could not be saved: {e.strerror or e}")
        return None
    found.saved.append(saved)
    return saved.path
