"""Pseudonymisation of patient identifiers at the first stage that sees them.

Stay numbers are replaced by a keyed hash (HMAC-SHA256 with a site secret, the "salt"),
as French PMSI practice requires before analysis. The salt lives outside ``results/`` so
that shared outputs cannot be reversed by hashing candidate stay numbers.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

DEFAULT_SALT_FILE = Path(".secrets/pseudonym.salt")
PSEUDONYM_HEX_CHARS = 16


def load_or_create_salt(path: str | os.PathLike = DEFAULT_SALT_FILE) -> bytes:
    """Read the site salt, creating a random one (mode 0600) on first use."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    salt = path.read_text().strip()
    if len(salt) < 16:
        raise ValueError(f"{path}: salt shorter than 16 characters; use a long random secret")
    return salt.encode()


def pseudonymise(identifier: str, salt: bytes) -> str:
    """Stable pseudonym for ``identifier``: same salt and input give the same output."""
    digest = hmac.new(salt, identifier.strip().encode(), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX_CHARS]
