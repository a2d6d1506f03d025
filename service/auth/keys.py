"""`KeyRing`: the API keys a deployment accepts, read from a file, hashed at rest.

The file (a mounted Kubernetes Secret, or any file the operator writes) holds one key per
line, never the key itself but its SHA-256:

    # name        sha256 of the key (64 hex digits, shortened here)  scopes       per second
    coupon-app    3a7bd3e2360a3d29...                                  read         200
    tracker       9f86d081884c7d65...                                  write        1000
    ops           2c26b46b68ffc68f...                                  read,write,admin

Keys are random 32-byte tokens (`new_key`), so an unsalted SHA-256 is enough to make a leaked
file useless; several keys may share a name and scopes, which is how a key is rotated: add the
new one, move the clients, remove the old one. The file is re-read when it changes (checked at
most every `reload_s` seconds), so rotation needs no restart; a file that no longer parses
keeps the previous keys and logs why. The rate column is optional (no limit when absent).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from service.auth.scopes import SCOPES
from service.errors import InvalidInput

log = logging.getLogger(__name__)

KEY_PREFIX = "sck_"


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's name, what it may do, how often."""

    name: str
    scopes: frozenset[str]
    rate_per_s: float | None
    key_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key (shown once; only its hash is stored)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_line(name: str, key: str, scopes: frozenset[str], rate_per_s: float | None) -> str:
    """The file line for `key`."""
    rate = "" if rate_per_s is None else f"  {rate_per_s:g}"
    return f"{name}  {hash_key(key)}  {','.join(sorted(scopes))}{rate}\n"


def add_key(path: Path, name: str, scopes: frozenset[str], rate_per_s: float | None) -> str:
    """Make a key, append its line to the key file (mode 0600 when created), return the key.

    The line is checked by the same parser that reads the file, so a bad name or scope fails
    here rather than at the next reload."""
    key = new_key()
    line = key_line(name, key, scopes, rate_per_s)
    if len(line.split()) not in (3, 4) or not name.isprintable() or "#" in name:
        raise InvalidInput("name", "must be one word without '#'")
    parse(line)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line)
    return key


def parse(text: str) -> dict[str, Principal]:
    """Principals by key hash; InvalidInput naming the line for anything malformed."""
    out: dict[str, Principal] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (3, 4):
            raise InvalidInput(f"line {number}", "want: name sha256 scopes [per-second]")
        name, digest, scope_text = fields[:3]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInput(f"line {number}", "the second column must be a SHA-256 in hex")
        scopes = frozenset(s for s in scope_text.split(",") if s)
        if not scopes or not scopes <= SCOPES:
            raise InvalidInput(f"line {number}", f"scopes must be some of {sorted(SCOPES)}")
        rate = None
        if len(fields) == 4:
            try:
                rate = float(fields[3])
            except ValueError:
                raise InvalidInput(f"line {number}", "the rate must be a number") from None
            if not rate > 0:
                raise InvalidInput(f"line {number}", "the rate must be positive")
        out[digest] = Principal(name, scopes, rate, digest)
    return out


class KeyRing:
    """The accepted keys, from `path`, re-read when the file changes."""

    def __init__(self, path: Path, reload_s: float = 1.0) -> None:
        self.path = path
        self.reload_s = reload_s
        self._keys: dict[str, Principal] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except OSError as exc:
            if self._stamp is None:
                raise InvalidInput("api_keys_file", f"cannot read {self.path}: {exc}") from exc
            log.error(
                "api keys file unreadable; keeping the previous keys", extra={"reason": str(exc)}
            )
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            keys = parse(self.path.read_text())
        except InvalidInput as exc:
            if self._stamp is None:
                raise
            log.error(
                "api keys file invalid; keeping the previous keys", extra={"reason": str(exc)}
            )
            return
        self._keys, self._stamp = keys, stamp
        log.info("api keys loaded", extra={"keys": len(keys)})

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked >= self.reload_s:
            self._checked = now
            self._load()

    def authenticate(self, key: str) -> Principal | None:
        """The key's principal, or None for an unknown key."""
        self.refresh()
        return self._keys.get(hash_key(key))

    def __len__(self) -> int:
        return len(self._keys)
