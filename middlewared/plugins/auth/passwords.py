"""Password hashes: scrypt from the standard library (memory-hard), in a self-describing string."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 16 MiB of memory and ~0.2 s per hash here: expensive for a guesser, cheap enough for a login.
N, R, P = 2 ** 14, 8, 1
PREFIX = "$scrypt$"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    """A new salted scrypt hash: ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=64 * 1024 * 1024)
    return f"{PREFIX}ln={N.bit_length() - 1},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether password matches a stored hash; a missing or malformed hash never matches."""
    if not stored or not stored.startswith(PREFIX):
        # Spend the same time as a real check so that unknown users are not told apart by timing.
        hash_password(password)
        return False
    try:
        params, salt, digest = stored[len(PREFIX):].split("$")
        values = dict(item.split("=") for item in params.split(","))
        n, r, p = 2 ** int(values["ln"]), int(values["r"]), int(values["p"])
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=n, r=r, p=p,
                                maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, expected)
