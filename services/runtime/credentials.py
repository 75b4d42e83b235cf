"""NATS credentials: one user and password per service, and the modder's.

``gpuroute up`` (the embedded server) keeps them in ``<data-dir>/credentials/``
(0700), one TOML file per user (0600), created on first start with random
passwords from :mod:`secrets` and kept afterwards; the server's
``authorization`` block (``nats/auth.conf``, 0600) is written again on every
start from those passwords and the registry's permissions, so a new subject
takes effect with a restart. ``gpuroute serve NAME --creds FILE`` and
``[nats] creds`` take such a file for a server run elsewhere
(``ops/nats/``). No credentials anywhere means no authentication: a bare
``nats-server`` keeps working.

A file::

    user = "modder"
    password = "..."
    inbox_prefix = "_INBOX.modder"
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec

from schemas.subjects import USERS
from services.runtime.datadir import private_dir, write_private
from services.runtime.errors import ConfigError
from services.runtime.permissions import authorization, inbox_prefix

CREDENTIALS_DIR = "credentials"
AUTH_CONF = "auth.conf"


class Credentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user: str
    password: str
    inbox_prefix: str = "_INBOX"

    def url(self, server: str) -> str:
        """``server`` (``nats://host:port``) with this user and password in it."""
        parts = urlsplit(server)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{self.user}:{self.password}@{host}"))

    def toml(self) -> str:
        """The file's text (JSON strings are valid TOML strings)."""
        fields = msgspec.structs.asdict(self)
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())

    def __repr__(self) -> str:  # never a password in a log line or traceback
        return f"Credentials(user={self.user!r}, password='***')"


def credentials_path(data_dir: Path, user: str) -> Path:
    return Path(data_dir) / CREDENTIALS_DIR / f"{user}.toml"


def load_credentials(path: Path | str) -> Credentials:
    """Read one user's credentials; a :class:`ConfigError` naming the file and
    the problem when it is missing, unreadable or not of this shape."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), f"cannot read credentials: {e.strerror}") from e
    try:
        return msgspec.toml.decode(raw, type=Credentials)
    except msgspec.ValidationError as e:
        raise ConfigError(str(p), f"not a credentials file: {e}") from e
    except msgspec.DecodeError as e:
        raise ConfigError(str(p), f"not valid TOML: {e}") from e


def find_credentials(data_dir: Path, user: str) -> Credentials | None:
    """``user``'s credentials in ``data_dir`` when ``gpuroute up`` made them there."""
    path = credentials_path(data_dir, user)
    return load_credentials(path) if path.is_file() else None


def ensure_credentials(data_dir: Path, users: Iterable[str] = USERS) -> dict[str, Credentials]:
    """Every user's credentials in ``data_dir``, creating missing ones (random
    passwords, files 0600 in a 0700 folder). Existing files keep their password."""
    folder = private_dir(private_dir(Path(data_dir)) / CREDENTIALS_DIR)
    found: dict[str, Credentials] = {}
    for user in users:
        path = folder / f"{user}.toml"
        if path.is_file():
            path.chmod(0o600)
            found[user] = load_credentials(path)
            continue
        creds = Credentials(
            user=user, password=secrets.token_urlsafe(24), inbox_prefix=inbox_prefix(user)
        )
        write_private(path, creds.toml())
        found[user] = creds
    return found


def authorization_conf(creds: Iterable[Credentials]) -> str:
    """nats-server's ``authorization`` block for ``creds``."""
    return authorization({c.user: c.password for c in creds})


def write_server_conf(folder: Path, creds: Iterable[Credentials]) -> Path:
    """Write :func:`authorization_conf` to ``<folder>/auth.conf`` (0600) and
    return its path."""
    path = private_dir(folder) / AUTH_CONF
    write_private(path, authorization_conf(creds))
    return path
