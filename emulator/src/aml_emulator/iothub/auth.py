"""Shared access signatures as IoT Hub issues and checks them.

Two kinds, both ``SharedAccessSignature sr=<uri>&sig=<b64 HMAC>&se=<expiry>[&skn=<policy>]``:

- **service** tokens (``skn`` present) sign ``quote_plus(host)`` with a shared access
  policy's key (azure-iot-hub ``sastoken.py``);
- **device/module** tokens (no ``skn``) sign ``quote(host/devices/<id>[/modules/<mid>], safe='')``
  with the device's or module's own key (azure-iot-device ``common/auth/sastoken.py``).

The HMAC key is the base64-decoded key text; the message is ``<uri> + "\\n" + <expiry>``.
A token is valid when its resource URI covers what is accessed, it has not expired, and the
signature matches the primary or the secondary key (compared in constant time).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from typing import Callable, Iterable

import attrs

PREFIX = "SharedAccessSignature "


class SasError(Exception):
    """A token that is malformed, expired or wrongly signed; ``str()`` says which."""


@attrs.frozen
class SasToken:
    """A parsed token (``repr`` hides the signature)."""

    resource_uri: str
    signature: str = attrs.field(repr=False)
    expiry: int
    key_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> "SasToken":
        if not text.startswith(PREFIX):
            raise SasError("the token does not start with 'SharedAccessSignature '")
        fields: dict[str, str] = {}
        for part in text[len(PREFIX):].split("&"):
            key, sep, value = part.partition("=")
            if not sep:
                raise SasError(f"the token field {key[:20]!r} has no value")
            fields[key.strip()] = urllib.parse.unquote_plus(value)
        try:
            expiry = int(fields["se"])
            return cls(resource_uri=fields["sr"], signature=fields["sig"], expiry=expiry, key_name=fields.get("skn"))
        except KeyError as missing:
            raise SasError(f"the token lacks the {missing.args[0]!r} field") from None
        except ValueError:
            raise SasError("the token's expiry 'se' is not an integer") from None


def new_key() -> str:
    """A fresh 32-byte base64 key, as the hub generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: str, resource_uri_encoded: str, expiry: int) -> str:
    message = f"{resource_uri_encoded}\n{expiry}".encode()
    digest = hmac.new(base64.b64decode(key), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def service_token(host: str, policy: str, key: str, ttl: int = 3600) -> str:
    """A service token exactly as azure-iot-hub builds one."""
    expiry = int(time.time() + ttl)
    uri = urllib.parse.quote_plus(host)
    sig = urllib.parse.quote(sign(key, uri, expiry))
    return f"{PREFIX}sr={uri}&sig={sig}&se={expiry}&skn={policy}"


def device_token(uri: str, key: str, ttl: int = 3600) -> str:
    """A device or module token exactly as azure-iot-device builds one."""
    expiry = int(time.time() + ttl)
    encoded = urllib.parse.quote(uri, safe="")
    return f"{PREFIX}sr={encoded}&sig={urllib.parse.quote(sign(key, encoded, expiry), safe='')}&se={expiry}"


def verify(token: SasToken, *, keys: Iterable[str], clock: Callable[[], float] = time.time) -> None:
    """Check ``token``'s expiry and signature against each of ``keys``; raise :class:`SasError`."""
    if token.expiry < clock():
        raise SasError("the token has expired")
    presented = token.signature.encode()
    matched = False
    for encoded_uri in {urllib.parse.quote(token.resource_uri, safe=""), urllib.parse.quote_plus(token.resource_uri)}:
        for key in keys:
            if key:
                expected = sign(key, encoded_uri, token.expiry).encode()
                matched |= hmac.compare_digest(presented, expected)
    if not matched:
        raise SasError("the signature does not match any key")


def covers(resource_uri: str, target: str) -> bool:
    """Whether a token for ``resource_uri`` may access ``target`` (both ``host[/path]``)."""
    granted = resource_uri.lower().rstrip("/")
    wanted = target.lower().rstrip("/")
    return wanted == granted or wanted.startswith(granted + "/")
