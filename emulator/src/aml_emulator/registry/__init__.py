"""An OCI distribution registry with Azure Container Registry style authentication.

::

    reg = RegistryService(state_dir=None, host="127.0.0.1", port=0, anonymous_pull=False)
    reg.start()
    reg.url              # "http://127.0.0.1:PORT"
    reg.login_server     # "127.0.0.1:PORT"
    reg.credentials.username, reg.credentials.passwords  # admin user, both passwords
    reg.credentials.regenerate("password")
    reg.reset()          # drop every repository (tests)
    reg.stop()

Clients authenticate as they do with ACR: Basic admin credentials directly, or the bearer
token flow (401 challenge -> ``/oauth2/token`` -> JWT with per-repository ``access``
claims). See :mod:`aml_emulator.registry.auth`. Storage is durable under ``state_dir``
(see :mod:`aml_emulator.registry.models`); with ``state_dir=None`` it lives in a temporary
directory removed by :meth:`RegistryService.stop`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import jwt
from aml_core.secure_files import private_dir

from aml_emulator._http import BackgroundServer
from aml_emulator.registry.app import RegistryApp
from aml_emulator.registry.auth import (
    Authenticator,
    Credentials,
    SecretStore,
    TokenService,
)
from aml_emulator.registry.exceptions import RegistryError, error
from aml_emulator.registry.models import Storage

__all__ = ["RegistryService", "Credentials", "RegistryError", "error"]

log = logging.getLogger("aml_emulator.registry")

AAD_ISSUER = "https://sts.windows.net/aml-emulator/"
AAD_AUDIENCE = "https://management.azure.com/"


class RegistryService:
    """One emulated container registry on a loopback port.

    :param state_dir: durable storage root; ``None`` uses a temporary directory.
    :param host: bind address; loopback by default, anything else is an explicit opt-in.
    :param port: TCP port; 0 picks a free one.
    :param anonymous_pull: let unauthenticated callers pull (never push).
    :param name: the registry name, which is also the admin username.
    :param token_ttl: lifetime of access tokens in seconds (ACR: 75 minutes; clients assume
        60 s when told nothing).
    :param upload_ttl: seconds of inactivity after which an upload session expires.
    :param max_uploads: concurrent upload sessions allowed before 429 TOOMANYREQUESTS.
    :param max_manifest_size: manifests above this many bytes get 413 (the spec asks for 4 MB).
    :param clock: time source for token and upload expiry (tests inject a fake one).
    :param aad_token_validator: ``f(access_token, tenant) -> identity | None`` used by
        ``/oauth2/exchange``. By default only tokens from :meth:`issue_aad_token` pass.
    :param fsync: fsync blobs before they become visible (durability); off only for throwaway
        benchmarks.
    """

    def __init__(self, state_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 anonymous_pull: bool = False, *, name: str = "amlemulator", token_ttl: int = 3600,
                 upload_ttl: float = 3600.0, max_uploads: int = 256,
                 max_manifest_size: int = 4 * 1024 * 1024, clock: Callable[[], float] = time.time,
                 aad_token_validator: Callable[[str, str | None], str | None] | None = None,
                 fsync: bool = True) -> None:
        if token_ttl < 1:
            raise ValueError("token_ttl must be at least 1 second")
        if max_manifest_size < 4 * 1024 * 1024:
            raise ValueError("max_manifest_size below 4 MiB breaks the distribution spec's minimum")
        self._owns_state = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else \
            Path(tempfile.mkdtemp(prefix="aml-registry-"))
        private_dir(self.state_dir)  # it holds the admin passwords and the token signing keys
        self.host = host
        self.port = port
        self.anonymous_pull = anonymous_pull
        self.name = name
        self.token_ttl = token_ttl
        self.max_manifest_size = max_manifest_size
        self.clock = clock
        self.fsync = fsync
        self._aad_validator = aad_token_validator
        # Storage first: it refuses a state_dir written by a newer format before anything is written.
        self.storage = Storage(self.state_dir, upload_ttl=upload_ttl, max_uploads=max_uploads,
                               clock=clock)
        self._secrets = SecretStore(None if self._owns_state else self.state_dir / "secrets.json")
        self.credentials = Credentials(name, self._secrets.passwords, on_change=self._save_secrets)
        self._save_secrets()
        self._server: BackgroundServer | None = None
        self.tokens: TokenService | None = None
        self.authenticator: Authenticator | None = None

    def _save_secrets(self) -> None:
        self._secrets.save(self.credentials.passwords)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "RegistryService":
        if self._server is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.storage.reopen()
        server = self._bind()
        self._server = server
        self.tokens = TokenService(self.login_server, issuer=f"{self.name}.emulator",
                                   secret=self._secrets.signing_key, token_ttl=self.token_ttl,
                                   clock=self.clock)
        self.authenticator = Authenticator(self.credentials, self.tokens,
                                           anonymous_pull=self.anonymous_pull)
        server.start()
        log.info("registry %s listening on %s", self.name, self.url)
        return self

    # Image references name the registry's host:port, so with a state dir the port survives a
    # restart (when it is still free): pods and workspaces made before it keep pulling.
    def _bind(self) -> BackgroundServer:
        endpoint = self.state_dir / "endpoint.json"
        port = self.port
        if not port and endpoint.exists():
            try:
                port = int(json.loads(endpoint.read_text())["port"])
            except (ValueError, KeyError, TypeError):
                port = 0
        try:
            server = BackgroundServer(RegistryApp(self), host=self.host, port=port, name="aml-registry")
        except OSError:
            if port == self.port:
                raise
            log.warning("registry port %s is taken; image references to it will not resolve", port)
            server = BackgroundServer(RegistryApp(self), host=self.host, port=self.port, name="aml-registry")
        endpoint.write_text(json.dumps({"port": server.port}))
        return server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._owns_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def reset(self) -> None:
        """Remove every repository, blob and upload session (credentials stay)."""
        self.storage.reset()

    def __enter__(self) -> "RegistryService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------

    @property
    def _bound(self) -> BackgroundServer:
        if self._server is None:
            raise RuntimeError("the registry is not running: call start() first")
        return self._server

    @property
    def url(self) -> str:
        return self._bound.url

    @property
    def login_server(self) -> str:
        server = self._bound
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"{host}:{server.port}"

    # -- AAD exchange ---------------------------------------------------------------------

    def issue_aad_token(self, subject: str = "emulator-user", tenant: str = "emulator-tenant",
                        ttl: int = 3600) -> str:
        """An AAD-like access token that this registry's ``/oauth2/exchange`` accepts.

        Real AAD tokens cannot be checked offline; this stands in for ``az account
        get-access-token`` in tests. Pass ``aad_token_validator`` to accept other tokens.
        """
        now = int(self.clock())
        return jwt.encode({"sub": subject, "tid": tenant, "iss": AAD_ISSUER, "aud": AAD_AUDIENCE,
                           "iat": now, "nbf": now - 5, "exp": now + ttl},
                          self._secrets.aad_key, algorithm="HS256")

    def validate_aad_token(self, token: str, tenant: str | None) -> str | None:
        """The identity an AAD access token stands for, or ``None`` if it is not accepted."""
        if self._aad_validator is not None:
            return self._aad_validator(token, tenant)
        try:
            claims = jwt.decode(token, self._secrets.aad_key, algorithms=["HS256"],
                                audience=AAD_AUDIENCE, issuer=AAD_ISSUER,
                                options={"verify_exp": False, "require": ["exp", "sub", "tid"]})
        except jwt.PyJWTError:
            return None
        if self.clock() >= claims["exp"]:
            return None
        if tenant and tenant != claims["tid"]:
            return None
        return str(claims["sub"])

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"RegistryService(name={self.name!r}, {where}, state_dir={str(self.state_dir)!r})"

