"""Who is calling: the admin bearer token, and service-account tokens.

The admin token (the kubeconfig's) is ``kubernetes-admin`` in group ``system:masters``,
which RBAC never restricts (as on a real cluster). Service-account tokens are JWTs the
emulator signs (HS256, with a key kept in the state directory when there is one, so tokens
stay valid across a restart), carrying the claims a real projected token carries::

    {"iss": ..., "sub": "system:serviceaccount:<ns>:<name>", "aud": [...], "iat", "nbf", "exp",
     "kubernetes.io": {"namespace": ns, "serviceaccount": {"name", "uid"}, "pod": {"name", "uid"}}}

A token authenticates while it has not expired, its audience includes the API server's, its
service account still exists with the same uid, and (for a token bound to a pod) that pod
still exists with the same uid; anything else is ``401 Unauthorized``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

#: the issuer, and the audience the API server accepts (what a default cluster uses)
ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER, "k8s.io")
#: the lifetime of the token a kubelet projects into a pod (refreshed at 80 %)
POD_TOKEN_SECONDS = 3607
ADMIN_USER = "kubernetes-admin"


@attrs.frozen
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def privileged(self) -> bool:
        """``system:masters`` is never restricted by authorization."""
        return "system:masters" in self.groups


ADMIN = UserInfo(ADMIN_USER, ("system:masters", "system:authenticated"))


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")


def split_service_account(username: str) -> tuple[str, str] | None:
    parts = username.split(":")
    if len(parts) == 4 and parts[0] == "system" and parts[1] == "serviceaccount" and parts[2] and parts[3]:
        return parts[2], parts[3]
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Signs and verifies service-account tokens (JWT, HS256)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the token signing key must be at least 32 bytes")
        self._key = key
        self.key_id = _b64(hashlib.sha256(key).digest()[:16])

    @classmethod
    def load_or_create(cls, path: Path | None) -> TokenIssuer:
        """The key in ``path`` (created, mode 0600, when missing); without a path a key
        for this process only."""
        if path is None:
            return cls(secrets.token_bytes(32))
        try:
            key = bytes.fromhex(path.read_text().strip())
            if len(key) >= 32:
                return cls(key)
        except (OSError, ValueError):
            pass
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        return cls(key)

    def issue(self, namespace: str, name: str, sa_uid: str, *, seconds: int,
              audiences: list[str] | tuple[str, ...] = API_AUDIENCES,
              bound: dict[str, str] | None = None, now: float | None = None) -> tuple[str, int]:
        """A token for ``system:serviceaccount:<namespace>:<name>``; ``bound`` is
        ``{"kind": "Pod"|"Secret", "name", "uid"}``. Returns ``(token, exp)``."""
        now = int(now if now is not None else time.time())
        exp = now + int(seconds)
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}}
        if bound:
            k8s[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {"aud": list(audiences), "exp": exp, "iat": now, "iss": ISSUER, "jti": str(uuid.uuid4()),
                  "kubernetes.io": k8s, "nbf": now, "sub": service_account_username(namespace, name)}
        header = {"alg": "HS256", "kid": self.key_id, "typ": "JWT"}
        signing_input = f"{_b64(json.dumps(header, separators=(',', ':')).encode())}." \
                        f"{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        sig = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(sig)}", exp

    def verify(self, token: str, *, now: float | None = None) -> dict | None:
        """The claims of a token this issuer signed, still valid and meant for the API
        server; else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            return None
        now = now if now is not None else time.time()
        try:
            if claims.get("iss") != ISSUER or now >= float(claims["exp"]) or now + 60 < float(claims.get("nbf", 0)):
                return None
        except (KeyError, TypeError, ValueError):
            return None
        aud = claims.get("aud")
        aud = [aud] if isinstance(aud, str) else aud
        if not isinstance(aud, list) or not set(aud) & set(API_AUDIENCES):
            return None
        return claims


def identity_of(claims: dict) -> tuple[str, str, str, dict | None]:
    """``(namespace, name, sa uid, bound {"kind","name","uid"} or None)`` from verified claims."""
    k8s = claims.get("kubernetes.io") or {}
    sa = k8s.get("serviceaccount") or {}
    bound = None
    for kind in ("pod", "secret"):
        if isinstance(k8s.get(kind), dict):
            bound = {"kind": kind.title(), "name": k8s[kind].get("name", ""), "uid": k8s[kind].get("uid", "")}
    return k8s.get("namespace", ""), sa.get("name", ""), sa.get("uid", ""), bound
