"""Service tokens (AKS ``token_auth_enabled``): HS256 JWTs, one signing secret per service.

The shape follows ``Webservice.get_access_token()``: ``accessToken``, ``refreshAfter``,
``expiryOn`` (epoch seconds) and ``tokenType`` ``"Bearer"``. The client refreshes after
``refreshAfter``; the token itself stays valid a while longer (about 12 h in Azure ML), so a
client that refreshes late keeps working. The audience is the service name, so a token for one
service is refused by another; a service deleted and created again gets a new secret.
"""

from __future__ import annotations

import secrets
import uuid

import jwt

ALGORITHM = "HS256"
ISSUER = "aml-frontdoor"
DEFAULT_REFRESH_AFTER_S = 3600.0
DEFAULT_GRACE_S = 12 * 3600.0


class TokenIssuer:
    """Issues and checks tokens; ``now()`` is the epoch time (injectable for tests)."""

    def __init__(self, now, *, refresh_after_s: float = DEFAULT_REFRESH_AFTER_S,
                 grace_s: float = DEFAULT_GRACE_S) -> None:
        self._now = now
        self.refresh_after_s = refresh_after_s
        self.grace_s = grace_s
        self._secrets: dict[str, bytes] = {}

    def ensure_secret(self, service: str) -> None:
        self._secrets.setdefault(service, secrets.token_bytes(32))

    def set_secret(self, service: str, secret: bytes) -> None:
        self._secrets[service] = secret

    def forget(self, service: str) -> None:
        self._secrets.pop(service, None)

    def issue(self, service: str) -> dict:
        now = self._now()
        refresh_after = int(now + self.refresh_after_s)
        expiry = int(now + self.refresh_after_s + self.grace_s)
        claims = {"aud": service, "iss": ISSUER, "iat": int(now), "exp": expiry,
                  "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._secrets[service], algorithm=ALGORITHM)
        return {"accessToken": token, "refreshAfter": refresh_after, "expiryOn": expiry,
                "tokenType": "Bearer"}

    def check(self, service: str, token: str) -> str | None:
        """``None`` if the token is valid for ``service``, else the reason it is not."""
        secret = self._secrets.get(service)
        if secret is None:
            return "no token can be valid for this service"
        try:
            # pyjwt compares the HMAC with hmac.compare_digest; expiry is checked against our
            # own clock below so that tests can move time.
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=service,
                                issuer=ISSUER, options={"verify_exp": False, "verify_iat": False,
                                                        "require": ["exp", "aud", "iss"]})
        except jwt.InvalidTokenError:
            return "invalid token"
        if self._now() >= claims["exp"]:
            return "token expired"
        return None
