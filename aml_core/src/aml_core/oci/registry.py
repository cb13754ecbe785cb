"""A client for the OCI distribution API (push, pull, tags, delete) on ``requests``.

Authentication follows what registries answer in ``WWW-Authenticate``: Basic, or the
distribution token spec's Bearer challenge (``realm``, ``service``, ``scope``), where the
client fetches a token from ``realm`` with its Basic credentials. ACR's refresh-token login
(user ``00000000-0000-0000-0000-000000000000``, password = refresh token) is exchanged with
``POST realm`` and ``grant_type=refresh_token``. Tokens are cached per scope.

Every blob and manifest read is checked against its digest before it is returned.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import attrs
import requests

from aml_core.errors import AmlError, AuthError, InvalidConfig, NotFound
from aml_core.oci.image import Image
from aml_core.oci.layers import Blob
from aml_core.oci.media import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    check_digest,
    digest_hex,
    sha256_digest,
)

NULL_GUID_USER = "00000000-0000-0000-0000-000000000000"
_REPO = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
#: GET/HEAD are retried this many times on 429, 502-504 and connection errors
RETRIES = 3
_RETRY_STATUS = (429, 502, 503, 504)
_IDEMPOTENT = ("GET", "HEAD")
#: longest wait between retries, whatever Retry-After says
MAX_BACKOFF = 5.0
#: blobs larger than this are uploaded in chunks of this size
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


class RegistryError(AmlError):
    """The registry refused a request; the message carries its error codes."""

    code = "RegistryError"

    def __init__(self, message: str, status: int = 0, codes: tuple[str, ...] = ()) -> None:
        self.status = status
        self.codes = codes
        super().__init__(message)


@attrs.frozen
class Reference:
    """``registry/repository[:tag|@digest]`` split into its parts."""

    registry: str
    repository: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, text: str, *, default_tag: str = "latest") -> Reference:
        if "://" in text:
            raise InvalidConfig(
                f"image reference {text!r} must not carry a scheme (write host:port/repo:tag)"
            )
        if "@" in text:
            name, ref = text.split("@", 1)
            check_digest(ref)
        else:
            name, ref = text, default_tag
            last = text.rsplit("/", 1)[-1]
            if ":" in last:
                name, ref = text.rsplit(":", 1)
        if "/" not in name:
            raise InvalidConfig(
                f"image reference {text!r} needs a registry host: host:port/repo:tag"
            )
        registry, repo = name.split("/", 1)
        check_repository(repo)
        if not ref.startswith("sha256:") and not _TAG.fullmatch(ref):
            raise InvalidConfig(f"tag {ref!r} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")
        return cls(registry=registry, repository=repo, reference=ref)

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


def check_repository(name: str) -> str:
    if not _REPO.fullmatch(name or ""):
        raise InvalidConfig(
            f"repository name {name!r} is invalid: lowercase letters, digits and separators "
            "(. _ __ -) in path components separated by /"
        )
    return name


def _is_loopback(host: str) -> bool:
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0][1:]
    return hostname in {"localhost", "127.0.0.1", "::1"} or hostname.startswith("127.")


class RegistryClient:
    """Talks to one registry.

    :param base_url: ``https://host[:port]``; a bare ``host:port`` means https, or http for
        loopback addresses.
    :param username: for Basic auth and token requests; ``NULL_GUID_USER`` with a refresh
        token as ``password`` for ACR's refresh-token flow.
    """

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        session: requests.Session | None = None,
    ) -> None:
        if "://" not in base_url:
            base_url = ("http://" if _is_loopback(base_url) else "https://") + base_url
        self.base_url = base_url.rstrip("/")
        self.registry = urlsplit(self.base_url).netloc
        self._username = username
        self._password = password
        self._verify = verify
        self.timeout = timeout
        self.chunk_size = chunk_size
        self._session = session or requests.Session()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._basic = False

    def __repr__(self) -> str:  # never show the password
        return f"RegistryClient({self.base_url!r}, username={self._username!r})"

    # -- plumbing -----------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return (
            urljoin(self.base_url + "/", path.lstrip("/")) if not path.startswith("http") else path
        )

    def _request(
        self, method: str, path: str, *, scope: str = "", ok: Iterable[int] = (200,), **kwargs
    ) -> requests.Response:
        url = self._url(path)
        headers = dict(kwargs.pop("headers", {}) or {})
        body = kwargs.get("data")
        challenges = retries = 0
        while True:  # bounded: at most 2 challenges and RETRIES retries
            self._authorise(headers, scope)
            if hasattr(body, "seek"):
                body.seek(0)
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self._verify,
                    allow_redirects=True,
                    **kwargs,
                )
            except requests.ConnectionError as exc:
                if method in _IDEMPOTENT and retries < RETRIES:
                    retries += 1
                    time.sleep(_backoff(retries, None))
                    continue
                raise RegistryError(f"cannot reach registry {self.registry}: {exc}") from exc
            if resp.status_code == 401 and challenges < 2 and self._handle_challenge(resp, scope):
                challenges += 1
                continue
            if resp.status_code in _RETRY_STATUS and method in _IDEMPOTENT and retries < RETRIES:
                retries += 1
                time.sleep(_backoff(retries, resp.headers.get("Retry-After")))
                continue
            break
        if resp.status_code not in tuple(ok):
            self._raise(resp, method, url)
        return resp

    def _authorise(self, headers: dict, scope: str) -> None:
        token = self._tokens.get(scope)
        if token and token[1] > time.monotonic():
            headers["Authorization"] = f"Bearer {token[0]}"
        elif self._basic and self._username is not None:
            pair = f"{self._username}:{self._password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def _handle_challenge(self, resp: requests.Response, scope: str) -> bool:
        header = resp.headers.get("WWW-Authenticate", "")
        kind, _, params_text = header.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(params_text))
        if kind.lower() == "basic":
            if self._username is None or self._basic:
                return False
            self._basic = True
            return True
        if kind.lower() != "bearer" or "realm" not in params:
            return False
        wanted = params.get("scope") or scope
        token, expires_in = self._fetch_token(params["realm"], params.get("service", ""), wanted)
        self._tokens[scope] = (token, time.monotonic() + max(expires_in - 10, 1))
        return True

    def _fetch_token(self, realm: str, service: str, scope: str) -> tuple[str, float]:
        scopes = [s for s in scope.split(" ") if s]
        if self._username == NULL_GUID_USER:
            form = {
                "grant_type": "refresh_token",
                "service": service,
                "refresh_token": self._password or "",
                "scope": " ".join(scopes),
            }
            resp = self._session.post(realm, data=form, timeout=self.timeout, verify=self._verify)
        else:
            query = [("service", service)] + [("scope", s) for s in scopes]
            auth = (self._username, self._password or "") if self._username is not None else None
            resp = self._session.get(
                realm, params=query, auth=auth, timeout=self.timeout, verify=self._verify
            )
        if resp.status_code in (401, 403):
            if self._username is None:
                raise AuthError(
                    f"registry {self.registry} requires credentials and none were given; pass "
                    "username and password (for ACR: az acr credential show, or the refresh "
                    f"token with username {NULL_GUID_USER})"
                )
            raise AuthError(
                f"the registry's token service {realm} refused the credentials for user "
                f"{self._username!r}; check the username and password (az acr credential show)"
            )
        if resp.status_code != 200:
            self._raise(resp, "GET", realm)
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"the token service {realm} answered without a token")
        return token, float(body.get("expires_in") or 60)

    def _raise(self, resp: requests.Response, method: str, url: str) -> None:
        codes: tuple[str, ...] = ()
        messages = ""
        try:
            errors = resp.json().get("errors") or []
            codes = tuple(str(e.get("code")) for e in errors)
            messages = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            messages = resp.text[:200]
        path = urlsplit(url).path
        text = f"{method} {path} on {self.registry} failed with HTTP {resp.status_code}" + (
            f" ({messages})" if messages else ""
        )
        if resp.status_code in (401, 403):
            raise AuthError(text + ". Check the registry credentials and their scope.")
        if resp.status_code == 404:
            raise NotFound(text)
        raise RegistryError(text, resp.status_code, codes)

    @staticmethod
    def _scope(repo: str, actions: str = "pull") -> str:
        return f"repository:{check_repository(repo)}:{actions}"

    # -- discovery -----------------------------------------------------------------------
    def ping(self) -> bool:
        """``GET /v2/``: True when the API answers (after authenticating, if asked to)."""
        self._request("GET", "/v2/", scope="")
        return True

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repo``, following ``Link`` pagination."""
        tags: list[str] = []
        path = f"/v2/{check_repository(repo)}/tags/list" + (f"?n={page_size}" if page_size else "")
        for _ in range(10_000):  # bounded: a registry cannot loop us forever
            resp = self._request("GET", path, scope=self._scope(repo))
            tags.extend(resp.json().get("tags") or [])
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                break
            path = nxt
        return tags

    # -- blobs ---------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._request(
            "HEAD",
            f"/v2/{check_repository(repo)}/blobs/{check_digest(digest)}",
            scope=self._scope(repo),
            ok=(200, 404),
        )
        return resp.status_code == 200

    def push_blob(self, repo: str, blob: Blob, *, mount_from: str | None = None) -> None:
        """Upload ``blob`` unless the registry has it: mount, then monolithic or chunked."""
        scope = self._scope(repo, "pull,push")
        if self.blob_exists(repo, blob.digest):
            return
        uploads = f"/v2/{check_repository(repo)}/blobs/uploads/"
        params = {}
        if mount_from:
            params = {"mount": blob.digest, "from": check_repository(mount_from)}
            scope = f"{scope} {self._scope(mount_from)}"
        resp = self._request(
            "POST",
            uploads + ("?" + urlencode(params) if params else ""),
            scope=scope,
            ok=(201, 202),
            headers={"Content-Length": "0"},
        )
        if resp.status_code == 201:
            return  # mounted
        location = self._url(resp.headers["Location"]) if resp.headers.get("Location") else None
        if not location:
            raise RegistryError(f"{self.registry} started an upload without a Location header")
        if blob.size <= self.chunk_size:
            data = blob.read()
            self._request(
                "PUT",
                _with_query(location, digest=blob.digest),
                scope=scope,
                ok=(201,),
                data=data,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(data)),
                },
            )
            return
        offset = 0
        with blob.open() as fh:
            while True:
                chunk = fh.read(self.chunk_size)
                if not chunk:
                    break
                end = offset + len(chunk) - 1
                resp = self._request(
                    "PATCH",
                    location,
                    scope=scope,
                    ok=(202,),
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(chunk)),
                        "Content-Range": f"{offset}-{end}",
                    },
                )
                location = self._url(resp.headers.get("Location") or location)
                offset = end + 1
        self._request(
            "PUT",
            _with_query(location, digest=blob.digest),
            scope=scope,
            ok=(201,),
            headers={"Content-Length": "0"},
        )

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A blob's bytes, verified against ``digest``."""
        resp = self._request(
            "GET",
            f"/v2/{check_repository(repo)}/blobs/{check_digest(digest)}",
            scope=self._scope(repo),
        )
        if sha256_digest(resp.content) != digest:
            raise RegistryError(
                f"blob {digest} from {self.registry}/{repo} does not match its digest"
            )
        return resp.content

    def download_blob(self, repo: str, digest: str, path: Path) -> Path:
        """Stream a blob to ``path`` (written atomically, verified against ``digest``)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        resp = self._request(
            "GET",
            f"/v2/{check_repository(repo)}/blobs/{check_digest(digest)}",
            scope=self._scope(repo),
            stream=True,
        )
        hasher = hashlib.sha256()
        with open(tmp, "wb") as fh:
            for chunk in resp.iter_content(1 << 20):
                hasher.update(chunk)
                fh.write(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            tmp.unlink()
            raise RegistryError(
                f"blob {digest} from {self.registry}/{repo} does not match its digest"
            )
        tmp.replace(path)
        return path

    def delete_blob(self, repo: str, digest: str) -> None:
        self._request(
            "DELETE",
            f"/v2/{check_repository(repo)}/blobs/{check_digest(digest)}",
            scope=self._scope(repo, "delete"),
            ok=(202,),
        )

    # -- manifests -----------------------------------------------------------------------
    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag or digest; returns its digest."""
        digest = sha256_digest(data)
        resp = self._request(
            "PUT",
            f"/v2/{check_repository(repo)}/manifests/{_ref(reference)}",
            scope=self._scope(repo, "pull,push"),
            ok=(201,),
            data=data,
            headers={"Content-Type": media_type},
        )
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            raise RegistryError(
                f"{self.registry} stored the manifest as {served}, expected {digest}"
            )
        return digest

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; verified when pulled by digest."""
        resp = self._request(
            "GET",
            f"/v2/{check_repository(repo)}/manifests/{_ref(reference)}",
            scope=self._scope(repo),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        digest = sha256_digest(resp.content)
        expected = (
            reference
            if reference.startswith("sha256:")
            else resp.headers.get("Docker-Content-Digest")
        )
        if expected and expected != digest:
            raise RegistryError(
                f"manifest {repo}:{reference} from {self.registry} does not match digest {expected}"
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        media_type = json.loads(resp.content).get("mediaType") or media_type
        return resp.content, media_type, digest

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest by digest (tags pointing at it go with it)."""
        self._request(
            "DELETE",
            f"/v2/{check_repository(repo)}/manifests/{check_digest(digest)}",
            scope=self._scope(repo, "delete"),
            ok=(202,),
        )

    # -- images --------------------------------------------------------------------------
    def push_image(
        self,
        repo: str,
        image: Image,
        *,
        tags: Iterable[str] = ("latest",),
        mount_from: str | None = None,
    ) -> str:
        """Push blobs (config and layers), then the manifest under each tag; returns its digest."""
        for blob in image.blobs():
            self.push_blob(repo, blob, mount_from=mount_from)
        data = image.manifest.read()
        digest = image.digest
        tags = list(tags) or [digest]
        for tag in tags:
            digest = self.put_manifest(repo, tag, data, image.manifest.media_type)
        return digest

    def pull_image(
        self,
        repo: str,
        reference: str,
        *,
        blob_dir: Path | None = None,
        platform: tuple[str, str] = ("linux", "amd64"),
    ) -> Image:
        """Fetch manifest, config and layers; layers go to ``blob_dir`` when given.

        An image index resolves to the manifest for ``platform``.
        """
        data, media_type, digest = self.get_manifest(repo, reference)
        if media_type in INDEX_TYPES:
            wanted = [
                m
                for m in json.loads(data).get("manifests", [])
                if (m.get("platform") or {}).get("os", "linux") == platform[0]
                and (m.get("platform") or {}).get("architecture", "amd64") == platform[1]
            ]
            if not wanted:
                raise NotFound(f"{repo}:{reference} has no image for {platform[0]}/{platform[1]}")
            data, media_type, digest = self.get_manifest(repo, wanted[0]["digest"])
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{repo}:{reference} has unsupported manifest type {media_type!r}")
        body = json.loads(data)
        cfg = body["config"]
        config = Blob(
            digest=cfg["digest"],
            size=int(cfg["size"]),
            media_type=cfg["mediaType"],
            data=self.get_blob(repo, cfg["digest"]),
        )
        layers = []
        for desc in body.get("layers") or []:
            if blob_dir is None:
                layers.append(
                    Blob(
                        digest=desc["digest"],
                        size=int(desc["size"]),
                        media_type=desc["mediaType"],
                        data=self.get_blob(repo, desc["digest"]),
                    )
                )
                continue
            path = Path(blob_dir) / digest_hex(desc["digest"])
            if not path.exists():
                Path(blob_dir).mkdir(parents=True, exist_ok=True)
                self.download_blob(repo, desc["digest"], path)
            layers.append(
                Blob(
                    digest=desc["digest"],
                    size=int(desc["size"]),
                    media_type=desc["mediaType"],
                    path=path,
                )
            )
        return Image(
            manifest=Blob(digest=digest, size=len(data), media_type=media_type, data=data),
            config=config,
            layers=tuple(layers),
        )


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait: the server's Retry-After (seconds form) or 0.25 * 2^attempt, capped."""
    try:
        wanted = float(retry_after) if retry_after is not None else 0.25 * 2**attempt
    except ValueError:  # an HTTP date: not worth parsing for a capped wait
        wanted = MAX_BACKOFF
    return max(0.0, min(wanted, MAX_BACKOFF))


def _ref(reference: str) -> str:
    if reference.startswith("sha256:"):
        return check_digest(reference)
    if not _TAG.fullmatch(reference):
        raise InvalidConfig(f"tag {reference!r} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")
    return reference


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
