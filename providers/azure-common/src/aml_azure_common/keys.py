"""Service keys: what ``get_keys()`` returns and the scoring endpoint checks."""

from __future__ import annotations

import secrets

#: bytes of randomness in a key (32 url-safe characters, as Azure ML's keys)
KEY_BYTES = 24


def new_service_key() -> str:
    """A fresh random key (url-safe, safe in an ``Authorization: Bearer`` header)."""
    return secrets.token_urlsafe(KEY_BYTES)
