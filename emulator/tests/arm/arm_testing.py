"""Constants and the offline credential shared by the ARM tests."""

from __future__ import annotations

import time

from azure.core.credentials import AccessToken

SUBSCRIPTION = "6b0c1f55-3a1e-4c1f-9d55-0a6f1e2b3c4d"
RESOURCE_GROUP = "aml-emulator"
REGISTRY = "amlemulator"
SCOPES = ["https://management.azure.com/.default"]


class FixedToken:
    """The offline credential any azure-core client accepts: ``get_token`` -> AccessToken."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)
