"""Credentials the providers hand to Azure SDK clients, without the core importing Azure.

:class:`StaticTokenCredential` implements azure-core's ``TokenCredential`` protocol
(``get_token(*scopes, claims=None, tenant_id=None, **kwargs)``) for a token known in advance:
the emulator's static ARM token, or a token a CI job obtained elsewhere. Real Azure profiles
without a token use ``azure-identity`` instead; choosing between the two is the provider's
job, driven by :attr:`aml_core.profiles.CloudProfile.arm_token`.
"""

from __future__ import annotations

import time
from collections import namedtuple
from typing import Any

#: Same fields and order as ``azure.core.credentials.AccessToken`` (itself a namedtuple),
#: which is all azure-core's bearer-token policy reads; the core imports no Azure SDK.
LocalAccessToken = namedtuple("LocalAccessToken", ["token", "expires_on"])


class StaticTokenCredential:
    """A ``TokenCredential`` that always returns the same bearer token.

    :param token: the bearer token (never shown by ``repr``/``str``).
    :param expires_in: seconds from each ``get_token`` call to the reported expiry. Keep it
        above 300: azure-core refreshes tokens that expire within five minutes, on every call.
    """

    __slots__ = ("_token", "expires_in")

    def __init__(self, token: str, expires_in: int = 3600) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("StaticTokenCredential needs a non-empty token string")
        if expires_in <= 0:
            raise ValueError("expires_in must be a positive number of seconds")
        self._token = token
        self.expires_in = int(expires_in)

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Return an ``AccessToken(token, expires_on)`` valid for ``expires_in`` seconds.

        ``scopes``, ``claims`` and ``tenant_id`` are accepted for protocol compatibility; a
        static token cannot be re-scoped.
        """
        return LocalAccessToken(self._token, int(time.time()) + self.expires_in)

    def close(self) -> None:
        """Nothing to release (present because azure-core clients may call it)."""

    def __repr__(self) -> str:
        return f"StaticTokenCredential(token='***', expires_in={self.expires_in})"

    __str__ = __repr__
