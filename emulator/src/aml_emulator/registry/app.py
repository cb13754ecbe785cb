"""The registry's ASGI application: OCI distribution spec v1.1 plus ACR's token endpoints.

Routing is done by hand because repository names contain slashes: the path is split at the
last ``/manifests/``, ``/blobs/``, ``/tags/`` or ``/referrers/`` segment and the name is
validated against the spec grammar before anything else looks at it.

Bodies are streamed both ways: uploads are hashed and written to disk chunk by chunk as
they arrive, blobs are sent from disk in 1 MiB reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aml_emulator.registry.auth import Access, AuthError, Authenticator, TokenService, parse_scope
from aml_emulator.registry.exceptions import RegistryError, error
from aml_emulator.registry.models import (
    CHUNK,
    IMAGE_MANIFEST_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    ManifestInfo,
    Storage,
    Upload,
    is_tag,
    validate_digest,
    validate_name,
)

if TYPE_CHECKING:
    from aml_emulator.registry import RegistryService

log = logging.getLogger("aml_emulator.registry")

API_VERSION_HEADER = {"Docker-Distribution-Api-Version": "registry/2.0"}
ROUTE_RE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs|tags|referrers)/(?P<rest>.*)$")
CONTENT_RANGE_RE = re.compile(r"^(?:bytes[= ])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_FORM_BYTES = 64 * 1024


class BlobResponse(Response):
    """Send ``length`` bytes of a file from ``start``, in 1 MiB reads, without buffering it."""

    def __init__(self, path: Any, start: int, length: int, status_code: int,
                 headers: dict[str, str]) -> None:
        self.path = path
        self.start = start
        self.length = length
        super().__init__(None, status_code=status_code, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        remaining = self.length
        with open(self.path, "rb") as f:
            f.seek(self.start)
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if remaining > 0:  # the file shrank under us; close the message anyway
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _error_response(exc: RegistryError) -> Response:
    headers = {**API_VERSION_HEADER, **{k: v for k, v in exc.headers.items() if k != "Content-Length"}}
    return Response(exc.body(), status_code=exc.status, headers=headers, media_type="application/json")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None,
          media_type: str = "application/json") -> Response:
    return Response(json.dumps(data).encode(), status_code=status,
                    headers={**API_VERSION_HEADER, **(headers or {})}, media_type=media_type)


def _empty(status: int, headers: dict[str, str]) -> Response:
    return Response(b"", status_code=status, headers={**API_VERSION_HEADER, **headers})


def _paginate(items: list[str], request: Request, base: str) -> tuple[list[str], dict[str, str]]:
    """Apply ``n``/``last``; return the page and a ``Link`` header when more remain."""
    last = request.query_params.get("last")
    n_raw = request.query_params.get("n")
    if last:
        items = [i for i in items if i > last]
    if n_raw is None or n_raw == "":
        return items, {}
    try:
        n = int(n_raw)
        if n < 0:
            raise ValueError
    except ValueError:
        raise error("UNSUPPORTED", f"invalid page size n={n_raw[:20]!r}: expected an integer >= 0",
                    status=400) from None
    page = items[:n]
    headers: dict[str, str] = {}
    if n > 0 and len(items) > n:
        headers["Link"] = f'<{base}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
    return page, headers


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _descriptor_digest(desc: Any, where: str) -> str:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise error("MANIFEST_INVALID", f"{where} must be a descriptor with a digest")
    if not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise error("MANIFEST_INVALID", f"{where} must have a non-negative integer size")
    try:
        return validate_digest(desc["digest"])
    except RegistryError:
        raise error("MANIFEST_INVALID", f"{where} has an invalid or unsupported digest "
                    f"{desc['digest'][:100]!r}") from None


class RegistryApp:
    """The ASGI callable. State lives in ``service.storage``; auth in ``service``'s authenticator."""

    def __init__(self, service: "RegistryService") -> None:
        self.service = service

    # -- plumbing -----------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        return self.service.storage

    @property
    def auth(self) -> Authenticator:
        return self.service.authenticator

    @property
    def tokens(self) -> TokenService:
        return self.service.tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except RegistryError as exc:
            response = _error_response(exc)
        except ClientDisconnect:
            return
        except Exception:  # a bug: answer 500 in the spec's shape and keep serving
            log.exception("registry request %s %s failed", request.method, request.url.path)
            response = Response(json.dumps({"errors": [{"code": "UNKNOWN", "message": "internal error",
                                                        "detail": {}}]}).encode(),
                                status_code=500, media_type="application/json")
        if request.method == "HEAD":
            response.body = b""
        await response(scope, receive, send)

    def challenge(self, scope: str | None = None, error_kind: str | None = None) -> str:
        value = f'Bearer realm="{self.service.url}/oauth2/token",service="{self.service.login_server}"'
        if scope:
            value += f',scope="{scope}"'
        if error_kind:
            value += f',error="{error_kind}"'
        return value

    def require(self, request: Request, type_: str, name: str, actions: list[str]) -> Access:
        """Authenticate the caller and check it may do ``actions`` on ``type_:name``."""
        header = request.headers.get("authorization")
        # Writers need to read too (HEAD before upload): challenge for "pull,push" like ACR.
        wanted = ["pull", *actions] if "push" in actions and "pull" not in actions else actions
        scope = f"{type_}:{name}:{','.join(wanted)}"
        try:
            access = self.auth.authenticate(header)
        except AuthError as exc:
            raise error("UNAUTHORIZED", f"authentication required: {exc}",
                        detail=[{"Type": type_, "Name": name, "Action": a} for a in actions],
                        headers={"WWW-Authenticate": self.challenge(scope, "invalid_token")}) from None
        missing = access.missing(type_, name, actions)
        if missing:
            kind = "insufficient_scope" if header else None
            raise error("UNAUTHORIZED", "authentication required" if not header else
                        f"access to {type_} {name} not granted for: {', '.join(missing)}",
                        detail=[{"Type": type_, "Name": name, "Action": a} for a in missing],
                        headers={"WWW-Authenticate": self.challenge(scope, kind)})
        return access

    # -- dispatch -----------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        method = request.method
        if path in ("/v2/", "/v2"):
            if method not in ("GET", "HEAD"):
                raise error("UNSUPPORTED", f"{method} is not allowed on /v2/", status=405)
            return self.base(request)
        if path == "/oauth2/token":
            if method == "GET":
                return self.token_get(request)
            if method == "POST":
                return await self.token_post(request)
            raise error("UNSUPPORTED", f"{method} is not allowed on /oauth2/token", status=405)
        if path == "/oauth2/exchange":
            if method == "POST":
                return await self.exchange(request)
            raise error("UNSUPPORTED", f"{method} is not allowed on /oauth2/exchange", status=405)
        if path == "/v2/_catalog":
            if method not in ("GET", "HEAD"):
                raise error("UNSUPPORTED", f"{method} is not allowed on /v2/_catalog", status=405)
            return self.catalog(request)
        match = ROUTE_RE.match(path)
        if not match:
            raise error("UNSUPPORTED", f"no such endpoint: {method} {path[:200]}", status=404)
        name = validate_name(match["name"])
        kind, rest = match["kind"], match["rest"]
        if kind == "tags" and rest == "list":
            if method not in ("GET", "HEAD"):
                raise error("UNSUPPORTED", f"{method} is not allowed on tags/list", status=405)
            return self.tags_list(request, name)
        if kind == "manifests" and rest and "/" not in rest:
            if method in ("GET", "HEAD"):
                return self.manifest_get(request, name, rest)
            if method == "PUT":
                return await self.manifest_put(request, name, rest)
            if method == "DELETE":
                return self.manifest_delete(request, name, rest)
            raise error("UNSUPPORTED", f"{method} is not allowed on manifests", status=405)
        if kind == "blobs":
            if rest in ("uploads/", "uploads"):
                if method == "POST":
                    return await self.upload_start(request, name)
                raise error("UNSUPPORTED", f"{method} is not allowed on blobs/uploads/", status=405)
            if rest.startswith("uploads/"):
                upload_id = rest[len("uploads/"):]
                if method == "PATCH":
                    return await self.upload_patch(request, name, upload_id)
                if method == "PUT":
                    return await self.upload_put(request, name, upload_id)
                if method == "GET":
                    return self.upload_status(request, name, upload_id)
                if method == "DELETE":
                    return self.upload_cancel(request, name, upload_id)
                raise error("UNSUPPORTED", f"{method} is not allowed on an upload session", status=405)
            if rest and "/" not in rest:
                if method in ("GET", "HEAD"):
                    return await self.blob_get(request, name, rest)
                if method == "DELETE":
                    return self.blob_delete(request, name, rest)
                raise error("UNSUPPORTED", f"{method} is not allowed on blobs", status=405)
        if kind == "referrers" and rest and "/" not in rest:
            if method == "GET":
                return self.referrers(request, name, rest)
            raise error("UNSUPPORTED", f"{method} is not allowed on referrers", status=405)
        raise error("UNSUPPORTED", f"no such endpoint: {method} {path[:200]}", status=404)

    # -- base and catalog ---------------------------------------------------------------

    def base(self, request: Request) -> Response:
        header = request.headers.get("authorization")
        try:
            access = self.auth.authenticate(header) if header else None
        except AuthError as exc:
            raise error("UNAUTHORIZED", f"authentication required: {exc}",
                        headers={"WWW-Authenticate": self.challenge(None, "invalid_token")}) from None
        if access is None:
            raise error("UNAUTHORIZED", "authentication required",
                        headers={"WWW-Authenticate": self.challenge()})
        return _json({})

    def catalog(self, request: Request) -> Response:
        self.require(request, "registry", "catalog", ["*"])
        repos, headers = _paginate(self.storage.repositories(), request, "/v2/_catalog")
        return _json({"repositories": repos}, headers=headers)

    def tags_list(self, request: Request, name: str) -> Response:
        self.require(request, "repository", name, ["pull"])
        tags, headers = _paginate(self.storage.tags(name), request, f"/v2/{name}/tags/list")
        return _json({"name": name, "tags": tags}, headers=headers)

    # -- blobs --------------------------------------------------------------------------

    async def blob_get(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["pull"])
        digest = validate_digest(reference)
        size = self.storage.blob_size(name, digest)
        if not await asyncio.to_thread(self.storage.verify_blob, digest):
            raise error("BLOB_UNKNOWN", f"blob {digest} failed verification and was removed",
                        detail={"digest": digest})
        headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream", "Etag": f'"{digest}"',
                   "Cache-Control": "max-age=31536000"}
        start, length, status = 0, size, 200
        range_header = request.headers.get("range")
        if range_header:
            parsed = self._parse_range(range_header.strip(), size)
            if parsed is None:
                return _error_response(error(
                    "BLOB_UNKNOWN", f"range {range_header[:100]!r} not satisfiable for a blob of "
                    f"{size} bytes", status=416, detail={"digest": digest},
                    headers={"Content-Range": f"bytes */{size}"}))
            start, length = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(None, status_code=status, headers=headers)
        return BlobResponse(self.storage.blob_path(digest), start, length, status, headers)

    @staticmethod
    def _parse_range(value: str, size: int) -> tuple[int, int] | None:
        """``bytes=a-b`` / ``a-`` / ``-n`` -> ``(start, length)``; None if unsatisfiable."""
        match = RANGE_RE.match(value)
        if not match or (not match[1] and not match[2]):
            return None
        if not match[1]:  # suffix: the last n bytes
            n = int(match[2])
            if n == 0 or size == 0:
                return None
            n = min(n, size)
            return size - n, n
        start = int(match[1])
        end = int(match[2]) if match[2] else size - 1
        if start >= size or end < start:
            return None
        end = min(end, size - 1)
        return start, end - start + 1

    def blob_delete(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["delete"])
        digest = validate_digest(reference)
        self.storage.delete_blob(name, digest)
        return _empty(202, {"Docker-Content-Digest": digest, "Content-Length": "0"})

    # -- uploads ------------------------------------------------------------------------

    def _upload_headers(self, up: Upload) -> dict[str, str]:
        return {"Location": f"/v2/{up.name}/blobs/uploads/{up.id}", "Range": up.range_header,
                "Docker-Upload-UUID": up.id, "Content-Length": "0"}

    async def upload_start(self, request: Request, name: str) -> Response:
        access = self.require(request, "repository", name, ["push"])
        params = request.query_params
        mount = params.get("mount")
        if mount is not None:
            digest = validate_digest(mount)
            source = params.get("from")
            if source is not None:
                source = validate_name(source)
                # Mount only from a repository the caller may pull (never leak across scopes).
                if access.allows("repository", source, "pull") and \
                        self.storage.mount_blob(name, source, digest):
                    return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}",
                                        "Docker-Content-Digest": digest, "Content-Length": "0"})
            # Otherwise fall back to an ordinary upload session, as the spec allows.
        digest_param = params.get("digest")
        if digest_param is not None:
            digest = validate_digest(digest_param)
            up = self.storage.new_upload(name)
            try:
                await self._receive_into(request, up, None)
                await self._finish(up, digest)
            except BaseException:
                self.storage.cancel_upload(name, up.id)
                raise
            return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}",
                                "Docker-Content-Digest": digest, "Content-Length": "0"})
        up = self.storage.new_upload(name)
        if request.headers.get("content-length", "0") not in ("", "0") or \
                "chunked" in request.headers.get("transfer-encoding", ""):
            await self._receive_into(request, up, None)
        return _empty(202, self._upload_headers(up))

    def _content_range(self, request: Request, up: Upload) -> int | None:
        """Check a chunk's ``Content-Range`` against the session; return its length."""
        value = request.headers.get("content-range")
        if not value:
            return None
        match = CONTENT_RANGE_RE.match(value.strip())
        if not match:
            raise error("BLOB_UPLOAD_INVALID", f"malformed Content-Range {value[:100]!r}: expected "
                        "<start>-<end>", status=416, headers=self._upload_headers(up))
        start, end = int(match[1]), int(match[2])
        if start != up.size or end < start:
            raise error("BLOB_UPLOAD_INVALID", f"chunk {start}-{end} out of order: the upload "
                        f"holds {up.size} bytes, so the next chunk must start at {up.size}",
                        status=416, headers=self._upload_headers(up))
        length = end - start + 1
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) != length:
            raise error("SIZE_INVALID", f"Content-Range {start}-{end} covers {length} bytes but "
                        f"Content-Length is {declared}", headers=self._upload_headers(up))
        return length

    async def _receive_into(self, request: Request, up: Upload, expected: int | None) -> None:
        """Append the request body to the upload, hashing as it arrives; undo on failure."""
        if up.busy:
            raise error("BLOB_UPLOAD_INVALID", f"upload {up.id} is receiving another request",
                        status=416, headers=self._upload_headers(up))
        up.busy = True
        start_size = up.size
        saved_hasher = up.hasher.copy()
        received = 0
        try:
            # Unbuffered: each received chunk goes straight to the page cache, no extra copy.
            with open(up.path, "r+b", buffering=0) as f:
                f.seek(start_size)
                async for chunk in request.stream():
                    if not chunk:
                        continue
                    up.hasher.update(chunk)
                    received += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[f.write(view):]
            if expected is not None and received != expected:
                raise error("SIZE_INVALID", f"expected {expected} bytes in this chunk, received "
                            f"{received}", headers=self._upload_headers(up))
            up.size = start_size + received
        except BaseException:
            self._rollback(up, start_size, saved_hasher)
            raise
        finally:
            up.busy = False
            up.touched = self.storage.clock()

    @staticmethod
    def _rollback(up: Upload, size: int, hasher: Any) -> None:
        try:
            with open(up.path, "r+b") as f:
                f.truncate(size)
        except FileNotFoundError:  # the session was cancelled meanwhile; nothing to undo
            pass
        up.size = size
        up.hasher = hasher

    async def _finish(self, up: Upload, digest: str) -> None:
        # A DELETE may have cancelled the session while its body was arriving.
        self.storage.get_upload(up.name, up.id)
        actual = "sha256:" + up.hasher.hexdigest()
        if actual != digest:
            raise error("DIGEST_INVALID", f"provided digest {digest} did not match uploaded "
                        f"content ({actual}, {up.size} bytes)", detail={"digest": digest})
        await asyncio.to_thread(self.storage.finish_upload, up, digest, fsync=self.service.fsync)

    async def upload_patch(self, request: Request, name: str, upload_id: str) -> Response:
        self.require(request, "repository", name, ["push"])
        up = self.storage.get_upload(name, upload_id)
        expected = self._content_range(request, up)
        before = up.size
        await self._receive_into(request, up, expected)
        log.debug("upload %s to %s: PATCH of %d bytes (%s)", up.id, name, up.size - before,
                  "with Content-Range" if expected is not None else "streamed, no Content-Range")
        return _empty(202, self._upload_headers(up))

    async def upload_put(self, request: Request, name: str, upload_id: str) -> Response:
        self.require(request, "repository", name, ["push"])
        up = self.storage.get_upload(name, upload_id)
        digest_param = request.query_params.get("digest")
        if not digest_param:
            raise error("DIGEST_INVALID", "the closing PUT of an upload needs ?digest=<digest>",
                        headers=self._upload_headers(up))
        digest = validate_digest(digest_param)
        expected = self._content_range(request, up)
        before, saved = up.size, up.hasher.copy()
        await self._receive_into(request, up, expected)
        try:
            await self._finish(up, digest)
        except RegistryError:
            # Undo this request's bytes so the client may retry the PUT with the right digest.
            self._rollback(up, before, saved)
            raise
        return _empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
                            "Content-Length": "0"})

    def upload_status(self, request: Request, name: str, upload_id: str) -> Response:
        self.require(request, "repository", name, ["push"])
        up = self.storage.get_upload(name, upload_id)
        return _empty(204, self._upload_headers(up))

    def upload_cancel(self, request: Request, name: str, upload_id: str) -> Response:
        self.require(request, "repository", name, ["push"])
        self.storage.cancel_upload(name, upload_id)
        return _empty(204, {"Content-Length": "0"})

    # -- manifests ----------------------------------------------------------------------

    def _reference(self, reference: str, *, for_put: bool = False) -> tuple[str | None, str | None]:
        """Split a reference into ``(tag, digest)``; exactly one is set."""
        if is_tag(reference):
            return reference, None
        if ":" in reference:
            return None, validate_digest(reference)
        if for_put:
            raise error("MANIFEST_INVALID", f"invalid tag {reference[:200]!r}: tags must match "
                        "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", detail={"Tag": reference[:200]})
        raise error("MANIFEST_UNKNOWN", f"invalid reference {reference[:200]!r}: neither a tag "
                    "nor a digest", detail={"Tag": reference[:200]})

    def manifest_get(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["pull"])
        tag, digest = self._reference(reference)
        digest = self.storage.resolve(name, tag) if tag else digest
        assert digest is not None
        info, data = self.storage.read_manifest(name, digest)
        headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "Etag": f'"{digest}"'}
        return Response(data, status_code=200, headers=headers, media_type=info.media_type)

    async def _read_limited(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise error("SIZE_INVALID", f"manifest of {declared} bytes is over the {limit}-byte "
                        "limit", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise error("SIZE_INVALID", f"manifest is over the {limit}-byte limit", status=413)
        return bytes(body)

    async def manifest_put(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["push"])
        tag, ref_digest = self._reference(reference, for_put=True)
        data = await self._read_limited(request, self.service.max_manifest_size)
        info = self._check_manifest(name, data, _media_type(request.headers.get("content-type")))
        if ref_digest is not None and ref_digest != info.digest:
            raise error("DIGEST_INVALID", f"manifest digest {info.digest} does not match the "
                        f"reference {ref_digest}", detail={"digest": ref_digest})
        await asyncio.to_thread(self.storage.put_manifest, name, info, data, tag)
        headers = {"Location": f"/v2/{name}/manifests/{info.digest}",
                   "Docker-Content-Digest": info.digest, "Content-Length": "0"}
        if info.subject:
            headers["OCI-Subject"] = info.subject
        return _empty(201, headers)

    def _check_manifest(self, name: str, data: bytes, content_type: str) -> ManifestInfo:
        """Parse and validate a manifest; check the blobs and manifests it references exist."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise error("MANIFEST_INVALID", f"manifest is not valid JSON: {exc}") from None
        except RecursionError:  # the decoder ran out of stack: no manifest nests like this
            raise error("MANIFEST_INVALID", "manifest is nested too deeply to be a manifest") from None
        if not isinstance(doc, dict):
            raise error("MANIFEST_INVALID", "manifest must be a JSON object")
        body_type = doc.get("mediaType")
        generic = content_type in ("", "application/json", "application/octet-stream")
        media_type = body_type if generic and isinstance(body_type, str) else content_type
        if media_type not in MANIFEST_TYPES:
            raise error("MANIFEST_INVALID", f"unsupported manifest media type {media_type[:100]!r}: "
                        f"this registry stores {', '.join(sorted(MANIFEST_TYPES))}",
                        detail={"mediaType": media_type[:100]})
        if body_type is not None and body_type != media_type:
            raise error("MANIFEST_INVALID", f"mediaType {str(body_type)[:100]!r} in the manifest does "
                        f"not match Content-Type {media_type!r}")
        if doc.get("schemaVersion") != 2:
            raise error("MANIFEST_INVALID", "schemaVersion must be 2")
        subject = None
        if "subject" in doc:
            subject = _descriptor_digest(doc["subject"], "subject")
        artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
        if media_type in IMAGE_MANIFEST_TYPES:
            config_digest = _descriptor_digest(doc.get("config"), "config")
            layers = doc.get("layers")
            if not isinstance(layers, list):
                raise error("MANIFEST_INVALID", "layers must be a list of descriptors")
            wanted = [("config", doc["config"], config_digest)]
            for i, layer in enumerate(layers):
                d = _descriptor_digest(layer, f"layers[{i}]")
                if not layer.get("urls"):  # foreign layers live elsewhere
                    wanted.append((f"layers[{i}]", layer, d))
            for field, descriptor, d in wanted:
                if not self.storage.blob_in_repo(name, d):
                    raise error("MANIFEST_BLOB_UNKNOWN", f"blob {d} referenced by the manifest is "
                                f"unknown to repository {name}: push it first", detail={"digest": d})
                # image-spec: a descriptor's size MUST be the blob's; a client that trusts it
                # would read past the blob or stop short of it
                declared, actual = descriptor.get("size"), self.storage.blob_size(name, d)
                if declared != actual or isinstance(declared, bool):
                    raise error("MANIFEST_INVALID", f"{field} declares size {declared!r} for blob {d}, which "
                                f"is {actual} bytes: fix the descriptor's size",
                                detail={"digest": d, "size": declared, "blobSize": actual})
            if artifact_type is None and isinstance(doc["config"].get("mediaType"), str):
                artifact_type = doc["config"]["mediaType"]
        else:
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise error("MANIFEST_INVALID", "manifests must be a list of descriptors")
            for i, child in enumerate(children):
                d = _descriptor_digest(child, f"manifests[{i}]")
                if not self.storage.manifest_exists(name, d):
                    raise error("MANIFEST_BLOB_UNKNOWN", f"manifest {d} referenced by the index is "
                                f"unknown to repository {name}: push it first", detail={"digest": d})
        annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return ManifestInfo(digest=digest, media_type=media_type, size=len(data), subject=subject,
                            artifact_type=artifact_type, annotations=annotations)

    def manifest_delete(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["delete"])
        tag, digest = self._reference(reference)
        if tag is not None:
            self.storage.delete_tag(name, tag)
        else:
            assert digest is not None
            self.storage.delete_manifest(name, digest)
        return _empty(202, {"Content-Length": "0"})

    def referrers(self, request: Request, name: str, reference: str) -> Response:
        self.require(request, "repository", name, ["pull"])
        try:
            digest = validate_digest(reference)
        except RegistryError as exc:
            raise error("DIGEST_INVALID", exc.message, status=400) from None
        wanted_type = request.query_params.get("artifactType")
        descriptors = []
        for info in self.storage.manifests(name):
            if info.subject != digest:
                continue
            if wanted_type is not None and info.artifact_type != wanted_type:
                continue
            desc: dict[str, Any] = {"mediaType": info.media_type, "digest": info.digest, "size": info.size}
            if info.artifact_type:
                desc["artifactType"] = info.artifact_type
            if info.annotations:
                desc["annotations"] = info.annotations
            descriptors.append(desc)
        headers = {"OCI-Filters-Applied": "artifactType"} if wanted_type is not None else {}
        return _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors},
                     headers=headers, media_type=OCI_INDEX)

    # -- tokens -------------------------------------------------------------------------

    def _check_service(self, service: str | None) -> None:
        if service is not None and service != self.service.login_server:
            raise error("UNAUTHORIZED", f"token requested for service {service[:100]!r}; this "
                        f"registry is {self.service.login_server}")

    @staticmethod
    def _scopes(values: list[str]) -> list[tuple[str, str, list[str]]]:
        scopes = []
        for value in values:
            for item in value.split():
                parsed = parse_scope(item)
                if parsed is None:
                    raise error("UNSUPPORTED", f"malformed scope {item[:200]!r}: expected "
                                "type:name:action[,action]", status=400)
                if parsed[0] == "repository" and parsed[1] != "*":
                    validate_name(parsed[1])
                scopes.append(parsed)
        return scopes

    def _token_body(self, access: Access, scopes: list[tuple[str, str, list[str]]],
                    subject: str) -> dict[str, Any]:
        claim = access.intersect(scopes)
        token, ttl, issued = self.tokens.issue_access_token(claim, subject)
        log.debug("issued access token to %s for %s", subject,
                  " ".join(f"{e['type']}:{e['name']}:{','.join(e['actions'])}" for e in claim) or "nothing")
        return {"token": token, "access_token": token, "expires_in": ttl,
                "issued_at": datetime.fromtimestamp(issued, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _basic_challenge_error(self, message: str) -> RegistryError:
        return error("UNAUTHORIZED", message,
                     headers={"WWW-Authenticate": f'Basic realm="{self.service.url}/oauth2/token"'})

    def token_get(self, request: Request) -> Response:
        """Docker's token endpoint: GET with Basic credentials (or none, for anonymous pull)."""
        params = request.query_params
        self._check_service(params.get("service"))
        scopes = self._scopes(params.getlist("scope"))
        header = request.headers.get("authorization")
        if header:
            try:
                access = self.auth.authenticate(header)
            except AuthError as exc:
                raise self._basic_challenge_error(f"invalid credentials: {exc}") from None
        elif self.auth.anonymous_pull:
            access = self.auth.anonymous()
        else:
            raise self._basic_challenge_error("credentials required: use the registry's admin "
                                              "username and password")
        body = self._token_body(access, scopes, access.identity or "anonymous")
        if header and params.get("offline_token") == "true" and not access.via_token:
            body["refresh_token"] = self.tokens.issue_refresh_token(access.identity or "")
        return _json(body)

    async def _form(self, request: Request) -> dict[str, str]:
        raw = await self._read_limited_form(request)
        try:
            parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=64)
        except (UnicodeDecodeError, ValueError):
            raise error("UNSUPPORTED", "malformed form body", status=400) from None
        return {k: v[-1] for k, v in parsed.items()} | {"__scopes__": " ".join(parsed.get("scope", []))}

    async def _read_limited_form(self, request: Request) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise error("SIZE_INVALID", "form body too large", status=413)
        return bytes(body)

    async def token_post(self, request: Request) -> Response:
        """ACR's OAuth2 form: ``grant_type=refresh_token`` or ``grant_type=password``."""
        form = await self._form(request)
        self._check_service(form.get("service"))
        scopes = self._scopes([form["__scopes__"]])
        grant = form.get("grant_type")
        if grant == "refresh_token":
            try:
                claims = self.tokens.decode(form.get("refresh_token", ""), "refresh_token")
            except AuthError as exc:
                raise error("UNAUTHORIZED", f"invalid refresh token: {exc}") from None
            subject = str(claims.get("sub"))
            access = self.auth.identity_access(subject)
            body = self._token_body(access, scopes, subject)
            return _json({"access_token": body["access_token"], "expires_in": body["expires_in"],
                          "issued_at": body["issued_at"]})
        if grant == "password":
            try:
                access = self.auth.from_basic(form.get("username", ""), form.get("password", ""))
            except AuthError as exc:
                raise error("UNAUTHORIZED", f"invalid credentials: {exc}") from None
            subject = access.identity or ""
            body = self._token_body(access, scopes, subject)
            out = {"access_token": body["access_token"], "expires_in": body["expires_in"],
                   "issued_at": body["issued_at"], "scope": " ".join(
                       f"{e['type']}:{e['name']}:{','.join(e['actions'])}"
                       for e in self.tokens.decode(body["access_token"], "access_token")["access"])}
            if form.get("access_type") == "offline":
                out["refresh_token"] = self.tokens.issue_refresh_token(subject)
            return _json(out)
        raise error("UNSUPPORTED", f"unsupported grant_type {str(grant)[:50]!r}: use refresh_token "
                    "or password", status=400)

    async def exchange(self, request: Request) -> Response:
        """ACR's ``/oauth2/exchange``: an AAD access token for a registry refresh token."""
        form = await self._form(request)
        self._check_service(form.get("service"))
        grant = form.get("grant_type")
        if grant not in ("access_token", "access_token_refresh_token"):
            raise error("UNSUPPORTED", f"unsupported grant_type {str(grant)[:50]!r}: use access_token",
                        status=400)
        identity = self.service.validate_aad_token(form.get("access_token", ""), form.get("tenant"))
        if identity is None:
            raise error("UNAUTHORIZED", "the AAD access token was not accepted")
        return _json({"refresh_token": self.tokens.issue_refresh_token(identity)})

    def __repr__(self) -> str:
        return f"RegistryApp({self.service.login_server})"

