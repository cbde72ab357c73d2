"""Admin keys, derived from a per-instance secret.

A full key is ``syncline-admin|<name>|<hex HMAC-SHA256(secret, name)>``; a scoped
one is ``syncline-admin|<name>|<scopes>|<hex HMAC-SHA256(secret, name|scopes)>``,
so any number can be issued (one per operator or CI job) without storing them.
One key is revoked by listing its name in a revocation file (``RevocationList``);
all are revoked together by replacing the secret. Scopes:

- ``deploy``: push new versions of the app;
- ``read``: call internal queries (read data the public functions do not expose);
- ``run``: call any internal function, mutations and actions too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from syncline._errors import ConfigError

#: File, in the data directory, holding the instance secret.
INSTANCE_SECRET_FILENAME = "instance_secret"
#: File, in the data directory, naming revoked admin keys (one name per line).
REVOKED_KEYS_FILENAME = "revoked_admin_keys"
#: Length of the instance secret in bytes.
INSTANCE_SECRET_BYTES = 32
_PREFIX = "syncline-admin"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGEST_HEX_CHARS = 2 * hashlib.sha256().digest_size
SCOPES = frozenset({"deploy", "read", "run"})


def load_or_create_instance_secret(data_dir: Path) -> bytes:
    """The instance secret in ``data_dir``, created (mode 0o600) if missing.

    Creation is atomic: concurrent callers all end up with the same secret.
    """
    path = data_dir / INSTANCE_SECRET_FILENAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        _create_secret_file(path)
    secret = path.read_bytes()
    if len(secret) != INSTANCE_SECRET_BYTES:
        raise ConfigError(
            f"{path}: must hold exactly {INSTANCE_SECRET_BYTES} bytes, found {len(secret)}"
        )
    return secret


def _create_secret_file(path: Path) -> None:
    # Write a private temporary file, then link it into place: readers never
    # see a partial secret, and a concurrent creator's secret wins intact.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(secrets.token_bytes(INSTANCE_SECRET_BYTES))
            file.flush()
            os.fsync(file.fileno())
        # If another process created it first, theirs is the secret.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class RevocationList:
    """The names of revoked admin keys, one per line in a file (``#`` starts a
    comment). Read again whenever the file changes, so a revocation takes effect
    without a restart (a Kubernetes ConfigMap mounted as a file works too)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._names: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        if self.path is None:
            return frozenset()
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._names = None, frozenset()
            return self._names
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            lines = self.path.read_text(errors="replace").splitlines()
            self._names = frozenset(
                name for line in lines if (name := line.split("#", 1)[0].strip())
            )
            self._stamp = stamp
        return self._names

    def revoke(self, name: str) -> None:
        """Add ``name`` to the file (made, mode 0o600, if missing)."""
        if self.path is None:
            raise ConfigError("no revocation file is configured")
        if not _NAME.fullmatch(name):
            raise ConfigError(f"admin key name {name!r} is not a valid key name")
        if name in self.names():
            return
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as file:
            file.write(f"{name}\n")


class AdminKeys:
    """Issues and verifies admin keys for one instance secret."""

    def __init__(self, secret: bytes, revoked: RevocationList | None = None) -> None:
        """``revoked``: keys whose names it lists no longer verify."""
        if len(secret) < INSTANCE_SECRET_BYTES:
            raise ConfigError(f"admin key secret must be at least {INSTANCE_SECRET_BYTES} bytes")
        self._secret = secret
        self._revoked = revoked or RevocationList(None)

    def issue(self, name: str = "default", scopes: Iterable[str] | None = None) -> str:
        """A new admin key labelled ``name`` (``[A-Za-z0-9_-]{1,64}``), allowed
        everything, or only ``scopes`` (a non-empty subset of SCOPES)."""
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"admin key name {name!r} must be 1-64 characters of A-Z, a-z, 0-9, '_', '-'"
            )
        if scopes is None:
            return f"{_PREFIX}|{name}|{self._digest(name)}"
        wanted = frozenset(scopes)
        if not wanted or not wanted <= SCOPES:
            raise ConfigError(
                f"admin key scopes must be a non-empty subset of {', '.join(sorted(SCOPES))}, "
                f"got {', '.join(sorted(wanted)) or 'none'}"
            )
        listed = ",".join(sorted(wanted))
        return f"{_PREFIX}|{name}|{listed}|{self._digest(f'{name}|{listed}')}"

    def scopes(self, key: str) -> frozenset[str] | None:
        """What ``key`` may do (SCOPES for a full key); None if this secret did not
        issue it. Never raises."""
        if not isinstance(key, str) or not key.isascii():
            return None
        parts = key.split("|")
        if len(parts) == 3:
            prefix, name, digest = parts
            signed, allowed = name, SCOPES
        elif len(parts) == 4:
            prefix, name, listed, digest = parts
            allowed = frozenset(listed.split(","))
            if not allowed <= SCOPES or listed != ",".join(sorted(allowed)):
                return None
            signed = f"{name}|{listed}"
        else:
            return None
        if prefix != _PREFIX or not _NAME.fullmatch(name) or len(digest) != _DIGEST_HEX_CHARS:
            return None
        if not hmac.compare_digest(self._digest(signed), digest):
            return None
        return None if name in self._revoked.names() else allowed

    def verify(self, key: str) -> bool:
        """Whether ``key`` was issued from this secret; never raises."""
        return self.scopes(key) is not None

    def _digest(self, name: str) -> str:
        return hmac.new(self._secret, name.encode("ascii"), hashlib.sha256).hexdigest()
