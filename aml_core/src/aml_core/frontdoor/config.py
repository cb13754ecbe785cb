"""What the front door knows about one scoring service: auth, limits and versions.

An entry is replaced as a whole by ``PUT /-/services/{name}``; requests already in flight keep
the entry they started with. Built with :meth:`ServiceEntry.from_payload` (which validates and
raises :class:`ConfigError` with a message meant for the caller), never ``ServiceEntry(**body)``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

import attrs

AUTH_MODES = ("none", "key", "token")
MAX_VERSIONS = 6  # AksEndpoint: up to 6 versions per endpoint

# AKS defaults (AksWebservice.deploy_configuration)
DEFAULT_SCORING_TIMEOUT_MS = 60_000
DEFAULT_MAX_CONCURRENT = 1
DEFAULT_MAX_QUEUE_WAIT_MS = 500

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_UPSTREAM = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?/[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class ConfigError(ValueError):
    """A service entry that cannot be stored (the admin API answers 400 with the message)."""


def _mask(value: str) -> str:
    return "****" if value else ""


@attrs.frozen
class Version:
    """One version of a service: its replicas and its share of the traffic.

    The replicas are either fixed ``backends`` (base URLs) or an ``upstream``,
    ``"<namespace>/<kubernetes service>"``, whose ready endpoints the host feeds in with
    :meth:`aml_core.frontdoor.FrontDoor.set_upstream` as pods come and go.
    """

    name: str
    backends: tuple[str, ...] = ()
    traffic_percentile: int | None = None
    is_default: bool = False
    upstream: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backends": list(self.backends), "traffic_percentile": self.traffic_percentile,
                               "is_default": self.is_default}
        if self.upstream:
            out["upstream"] = self.upstream
        return out


@attrs.frozen(kw_only=True)
class ServiceEntry:
    """The routing entry of one service (a plain AKS service is one version named like it)."""

    name: str
    auth: str = "key"
    primary_key: str = attrs.field(default="", repr=False)
    secondary_key: str = attrs.field(default="", repr=False)
    #: signs the service's tokens; given by the writer, every front door replica (and a
    #: restarted one) accepts the same tokens. Empty: a random key per front door process.
    token_key: str = attrs.field(default="", repr=False)
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS
    max_concurrent_requests_per_replica: int = DEFAULT_MAX_CONCURRENT
    max_queue_wait_ms: int = DEFAULT_MAX_QUEUE_WAIT_MS
    versions: tuple[Version, ...] = ()
    #: :func:`payload_revision` of the payload this entry was built from, so a writer can
    #: see when the front door applies what it wrote
    revision: str = ""

    @property
    def default_version(self) -> Version:
        return next(v for v in self.versions if v.is_default)

    @classmethod
    def from_payload(cls, name: str, body: Any) -> ServiceEntry:
        """Validate the admin API's JSON body; raises :class:`ConfigError`."""
        if not _NAME.match(name):
            raise ConfigError(f"invalid service name {name!r}: use 1-63 letters, digits, '.', '_' or '-'")
        if not isinstance(body, dict):
            raise ConfigError("the body must be a JSON object")
        unknown = set(body) - {"auth", "keys", "token_key", "scoring_timeout_ms", "max_concurrent_requests_per_replica",
                               "max_queue_wait_ms", "versions"}
        if unknown:
            raise ConfigError(f"unknown field(s): {', '.join(sorted(unknown))}")
        auth = body.get("auth", "key")
        if auth not in AUTH_MODES:
            raise ConfigError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
        keys = body.get("keys") or {}
        if not isinstance(keys, dict) or set(keys) - {"primary", "secondary"}:
            raise ConfigError('keys must be an object {"primary": str, "secondary": str}')
        primary, secondary = keys.get("primary", ""), keys.get("secondary", "")
        if not isinstance(primary, str) or not isinstance(secondary, str):
            raise ConfigError("keys.primary and keys.secondary must be strings")
        token_key = body.get("token_key", "")
        if not isinstance(token_key, str) or (token_key and len(token_key) < 32):
            raise ConfigError("token_key must be a string of at least 32 characters (it signs the service's tokens)")
        if auth == "key" and not (primary or secondary):
            raise ConfigError('auth "key" needs keys.primary and/or keys.secondary')
        limits = {}
        for field, default in (("scoring_timeout_ms", DEFAULT_SCORING_TIMEOUT_MS),
                               ("max_concurrent_requests_per_replica", DEFAULT_MAX_CONCURRENT),
                               ("max_queue_wait_ms", DEFAULT_MAX_QUEUE_WAIT_MS)):
            value = body.get(field, default)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{field} must be a positive integer, not {value!r}")
            limits[field] = value
        versions = body.get("versions")
        if not isinstance(versions, dict) or not versions:
            raise ConfigError("versions must be a non-empty object of version name -> version")
        if len(versions) > MAX_VERSIONS:
            raise ConfigError(f"a service has at most {MAX_VERSIONS} versions, got {len(versions)}")
        parsed = tuple(_version(vname, spec) for vname, spec in versions.items())
        total = sum(v.traffic_percentile or 0 for v in parsed)
        if total > 100:
            raise ConfigError(f"traffic percentiles sum to {total}, more than 100")
        defaults = [v.name for v in parsed if v.is_default]
        if len(defaults) != 1:
            raise ConfigError(f"exactly one version must be the default, got {len(defaults)}"
                              + (f" ({', '.join(defaults)})" if defaults else ""))
        return cls(name=name, auth=auth, primary_key=primary, secondary_key=secondary, token_key=token_key,
                   versions=parsed, revision=payload_revision(body), **limits)

    def to_dict(self) -> dict[str, Any]:
        """The stored entry as the admin API shows it: keys masked."""
        return {"name": self.name, "auth": self.auth,
                "keys": {"primary": _mask(self.primary_key), "secondary": _mask(self.secondary_key)},
                "scoring_timeout_ms": self.scoring_timeout_ms,
                "max_concurrent_requests_per_replica": self.max_concurrent_requests_per_replica,
                "max_queue_wait_ms": self.max_queue_wait_ms,
                "versions": {v.name: v.to_dict() for v in self.versions}, "revision": self.revision}


def payload_revision(payload: Any) -> str:
    """A short digest of an admin-API payload (keys included, so a key change shows)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _version(name: Any, spec: Any) -> Version:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"invalid version name {name!r}")
    if not isinstance(spec, dict):
        raise ConfigError(f"version {name!r} must be an object")
    unknown = set(spec) - {"backends", "traffic_percentile", "is_default", "upstream"}
    if unknown:
        raise ConfigError(f"version {name!r}: unknown field(s): {', '.join(sorted(unknown))}")
    backends = spec.get("backends", [])
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        raise ConfigError(f"version {name!r}: backends must be a list of URLs")
    for url in backends:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise ConfigError(f"version {name!r}: backend {url!r} must be a base URL like http://host:port")
    pct = spec.get("traffic_percentile")
    if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100):
        raise ConfigError(f"version {name!r}: traffic_percentile must be an integer 0-100 or null, not {pct!r}")
    is_default = spec.get("is_default", False)
    if not isinstance(is_default, bool):
        raise ConfigError(f"version {name!r}: is_default must be true or false")
    upstream = spec.get("upstream")
    if upstream is not None:
        if not isinstance(upstream, str) or not _UPSTREAM.match(upstream):
            raise ConfigError(f"version {name!r}: upstream must be '<namespace>/<service>', not {upstream!r}")
        if backends:
            raise ConfigError(f"version {name!r}: give backends or an upstream, not both")
    return Version(name=name, backends=tuple(b.rstrip("/") for b in dict.fromkeys(backends)),
                   traffic_percentile=pct, is_default=is_default, upstream=upstream)
