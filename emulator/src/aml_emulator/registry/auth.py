"""ACR-style authentication: admin credentials, bearer tokens with per-repository scopes.

What a request may do is an :class:`Access`: a set of ``(type, name, action)`` grants.
It comes from one of

- Basic admin credentials (``username`` = the registry name, either password): everything;
- Basic with the null GUID user and a refresh token as password (what ``docker login``
  does after ``az acr login``): everything the refresh token's identity may do;
- ``Bearer <access token>``: exactly the ``access`` claims of a token this registry issued
  for this login server, not expired;
- nothing: pull on every repository if anonymous pull is enabled, otherwise nothing.

Tokens are HS256 JWTs signed with a per-registry secret. Every secret comparison goes
through :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import jwt

NULL_GUID = "00000000-0000-0000-0000-000000000000"
PASSWORD_NAMES = ("password", "password2")
ALL_ACTIONS = frozenset({"pull", "push", "delete"})
REFRESH_TOKEN_TTL = 3 * 3600


def _new_password() -> str:
    # ACR passwords are 52 characters of base64-ish text; ours come from `secrets` too.
    return secrets.token_urlsafe(39)


class Credentials:
    """The admin user of a registry and its two passwords (either one works).

    ``repr`` never shows a password. Rotating one password (:meth:`regenerate`) stops the
    old value at once and leaves the other one working, so clients can rotate without downtime.
    """

    def __init__(self, username: str, passwords: dict[str, str] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.username = username
        self._passwords = dict(passwords) if passwords else {n: _new_password() for n in PASSWORD_NAMES}
        self._lock = threading.Lock()
        self._on_change = on_change

    @property
    def passwords(self) -> dict[str, str]:
        with self._lock:
            return dict(self._passwords)

    def regenerate(self, name: str) -> str:
        """Give password ``name`` (``"password"`` or ``"password2"``) a new value; return it."""
        if name not in PASSWORD_NAMES:
            raise ValueError(f"unknown password name {name!r}. Valid options are: "
                             f"{', '.join(PASSWORD_NAMES)}")
        value = _new_password()
        with self._lock:
            self._passwords[name] = value
        if self._on_change is not None:
            self._on_change()
        return value

    def check(self, username: str, password: str) -> bool:
        """True if ``username``/``password`` is the admin user with either current password."""
        with self._lock:
            candidates = list(self._passwords.values())
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        pass_ok = False
        for candidate in candidates:
            # Compare against every password so the time taken does not say which matched.
            pass_ok |= hmac.compare_digest(password.encode(), candidate.encode())
        return user_ok and pass_ok

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, passwords={{'password': '***', 'password2': '***'}})"

    __str__ = __repr__


@attrs.frozen
class Access:
    """What a caller may do: ``grants`` maps ``(type, name)`` to a set of actions.

    ``("repository", "*")`` stands for every repository (admin and anonymous pull).
    """

    grants: dict[tuple[str, str], frozenset[str]] = attrs.field(factory=dict)
    identity: str | None = None
    via_token: bool = False

    def allows(self, type_: str, name: str, action: str) -> bool:
        for key in ((type_, name), (type_, "*")):
            actions = self.grants.get(key)
            if actions and (action in actions or "*" in actions):
                return True
        return False

    def missing(self, type_: str, name: str, actions: Iterable[str]) -> list[str]:
        return [a for a in actions if not self.allows(type_, name, a)]

    def intersect(self, requested: list[tuple[str, str, list[str]]]) -> list[dict[str, Any]]:
        """The ``access`` claim for a token: requested actions that are also allowed."""
        claim: list[dict[str, Any]] = []
        for type_, name, actions in requested:
            granted = [a for a in actions if self.allows(type_, name, a)]
            if granted:
                claim.append({"type": type_, "name": name, "actions": granted})
        return claim


ADMIN_ACCESS_GRANTS = {("repository", "*"): ALL_ACTIONS | {"*"}, ("registry", "catalog"): frozenset({"*"})}


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:name:pull,push`` -> ``("repository", "name", ["pull", "push"])``."""
    # The name may itself hold a port-less path; type is before the first colon, actions after the last.
    if scope.count(":") < 2:
        return None
    type_, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    acts = [a for a in actions.split(",") if a]
    if not type_ or not name or not acts:
        return None
    return type_, name, acts


class AuthError(Exception):
    """The credentials presented are not valid (as opposed to merely insufficient)."""


class TokenService:
    """Issues and checks this registry's access and refresh tokens.

    :param login_server: ``host:port``, the tokens' audience and the challenge's service.
    :param secret: the HS256 signing key (per registry).
    :param token_ttl: lifetime of access tokens, seconds.
    :param clock: time source, injectable for expiry tests.
    """

    def __init__(self, login_server: str, issuer: str, secret: bytes, *, token_ttl: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.login_server = login_server
        self.issuer = issuer
        self._secret = secret
        self.token_ttl = token_ttl
        self.clock = clock

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def issue_access_token(self, access: list[dict[str, Any]], subject: str) -> tuple[str, int, int]:
        now = int(self.clock())
        claims = {
            "jti": str(uuid.uuid4()), "sub": subject, "nbf": now - 5, "iat": now,
            "exp": now + self.token_ttl, "iss": self.issuer, "aud": self.login_server,
            "version": "1.0", "grant_type": "access_token", "access": access,
        }
        return self._encode(claims), self.token_ttl, now

    def issue_refresh_token(self, subject: str) -> str:
        now = int(self.clock())
        return self._encode({
            "jti": str(uuid.uuid4()), "sub": subject, "nbf": now - 5, "iat": now,
            "exp": now + REFRESH_TOKEN_TTL, "iss": self.issuer, "aud": self.login_server,
            "version": "1.0", "grant_type": "refresh_token",
        })

    def decode(self, token: str, grant_type: str) -> dict[str, Any]:
        """Check a token's signature, audience, issuer, time window and kind; return its claims."""
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=self.login_server,
                                issuer=self.issuer,
                                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                         "require": ["exp", "nbf", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        now = self.clock()
        if now >= claims["exp"]:
            raise AuthError("token expired")
        if now < claims["nbf"]:
            raise AuthError("token not yet valid")
        if claims.get("grant_type") != grant_type:
            raise AuthError(f"a {claims.get('grant_type')} cannot be used as a {grant_type}")
        return claims

    def access_from_token(self, token: str) -> Access:
        claims = self.decode(token, "access_token")
        grants: dict[tuple[str, str], frozenset[str]] = {}
        for entry in claims.get("access") or []:
            if not isinstance(entry, dict):
                continue
            key = (str(entry.get("type")), str(entry.get("name")))
            grants[key] = grants.get(key, frozenset()) | frozenset(map(str, entry.get("actions") or []))
        return Access(grants=grants, identity=claims.get("sub"), via_token=True)


class Authenticator:
    """Turns an ``Authorization`` header into an :class:`Access`."""

    def __init__(self, credentials: Credentials, tokens: TokenService, *, anonymous_pull: bool) -> None:
        self.credentials = credentials
        self.tokens = tokens
        self.anonymous_pull = anonymous_pull

    def anonymous(self) -> Access:
        if self.anonymous_pull:
            return Access(grants={("repository", "*"): frozenset({"pull"})}, identity=None)
        return Access(identity=None)

    def identity_access(self, identity: str) -> Access:
        return Access(grants=dict(ADMIN_ACCESS_GRANTS), identity=identity)

    def from_basic(self, username: str, password: str) -> Access:
        if username == NULL_GUID:
            claims = self.tokens.decode(password, "refresh_token")
            return self.identity_access(str(claims.get("sub")))
        if self.credentials.check(username, password):
            return self.identity_access(self.credentials.username)
        raise AuthError("invalid username or password")

    def authenticate(self, header: str | None) -> Access:
        """The caller's access; raises :class:`AuthError` if credentials are given but bad."""
        if not header:
            return self.anonymous()
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "basic":
            username, password = decode_basic(value)
            return self.from_basic(username, password)
        if scheme == "bearer":
            return self.tokens.access_from_token(value)
        raise AuthError(f"unsupported authorization scheme {scheme[:20]!r}")


def decode_basic(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("malformed basic credentials") from None
    username, sep, password = raw.partition(":")
    if not sep:
        raise AuthError("malformed basic credentials")
    return username, password


class SecretStore:
    """The registry's secrets (admin passwords, signing keys) in one 0600 file, or in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        data: dict[str, Any] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text())
        self.passwords: dict[str, str] | None = data.get("passwords")
        self.signing_key = bytes.fromhex(data["signing_key"]) if "signing_key" in data else secrets.token_bytes(32)
        self.aad_key = bytes.fromhex(data["aad_key"]) if "aad_key" in data else secrets.token_bytes(32)

    def save(self, passwords: dict[str, str]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"passwords": passwords, "signing_key": self.signing_key.hex(),
                       "aad_key": self.aad_key.hex()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
