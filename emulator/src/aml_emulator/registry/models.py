"""Registry state: the content-addressed blob store, repositories, tags and upload sessions.

On-disk layout under the storage root (durable when the service has a ``state_dir``)::

    blobs/sha256/<hex>                                  content-addressed bytes (layers,
                                                        configs and manifests alike)
    repositories/<name>/_layers/sha256/<hex>            link: blob belongs to the repo
    repositories/<name>/_manifests/revisions/sha256/<hex>  JSON: media type, subject, artifactType
    repositories/<name>/_manifests/tags/<tag>           the tag's digest
    uploads/<uuid>                                      bytes of an upload in progress

Every metadata file is written to a temporary file, fsynced and moved into place with
``os.replace``; a blob is fsynced before it is renamed into ``blobs/``. Names, tags and
digests are validated against the spec grammars before any of them becomes a path, which
is also the guard against path traversal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

from aml_emulator.registry.exceptions import error

log = logging.getLogger("aml_emulator.registry")

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
# Any well-formed digest of the spec grammar (algorithm:encoded), supported or not.
ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
MAX_NAME_LENGTH = 255

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES

CHUNK = 1 << 20
#: Version of the on-disk layout; a store written by a newer version is refused.
FORMAT_VERSION = 1
FORMAT_FILE = "registry-format.json"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise error("NAME_INVALID", f"invalid repository name {name[:300]!r}: must match "
                    "[a-z0-9]+((.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((.|_|__|-+)[a-z0-9]+)*)* "
                    f"and be at most {MAX_NAME_LENGTH} characters", detail={"name": name[:300]})
    return name


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a sha256 digest we can store, else raise DIGEST_INVALID."""
    if not DIGEST_RE.fullmatch(digest):
        if ANY_DIGEST_RE.fullmatch(digest) and not digest.startswith("sha256:"):
            raise error("DIGEST_INVALID", f"unsupported digest algorithm in {digest[:100]!r}: "
                        "this registry stores sha256 digests only", detail={"digest": digest[:100]})
        raise error("DIGEST_INVALID", f"invalid digest {digest[:100]!r}: expected "
                    "sha256:<64 lowercase hex characters>", detail={"digest": digest[:100]})
    return digest


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: temp file in the same directory, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@attrs.define
class Upload:
    """One blob upload session: bytes received so far go to ``path``; hashed as they arrive."""

    id: str
    name: str
    path: Path
    created: float
    touched: float
    size: int = 0
    hasher: Any = attrs.field(factory=hashlib.sha256, repr=False)
    busy: bool = False

    @property
    def range_header(self) -> str:
        return f"0-{max(self.size - 1, 0)}"


@attrs.define
class ManifestInfo:
    """What the registry remembers of a stored manifest besides its bytes."""

    digest: str
    media_type: str
    size: int
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    def to_json(self) -> bytes:
        return json.dumps({"mediaType": self.media_type, "size": self.size, "subject": self.subject,
                           "artifactType": self.artifact_type,
                           "annotations": self.annotations}).encode()

    @classmethod
    def from_json(cls, digest: str, data: bytes) -> "ManifestInfo":
        raw = json.loads(data)
        return cls(digest=digest, media_type=raw["mediaType"], size=raw["size"],
                   subject=raw.get("subject"), artifact_type=raw.get("artifactType"),
                   annotations=raw.get("annotations"))


class Storage:
    """All repositories of one registry, kept under ``root``.

    Thread-safe: metadata changes hold one lock; blob bytes are written outside it and
    committed by an atomic rename.

    :param root: the storage directory (created if missing).
    :param upload_ttl: seconds after its last activity an upload session expires.
    :param max_uploads: how many upload sessions may be open at once (beyond: 429).
    :param clock: the time source (injectable for tests of expiry).
    """

    def __init__(self, root: Path, *, upload_ttl: float = 3600.0, max_uploads: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.upload_ttl = upload_ttl
        self.max_uploads = max_uploads
        self.clock = clock
        self._lock = threading.RLock()
        self._uploads: dict[str, Upload] = {}
        self._verified: set[str] = set()
        self._init_dirs()

    def _check_format(self) -> None:
        marker = self.root / FORMAT_FILE
        if marker.exists():
            try:
                found = json.loads(marker.read_text())["format"]
            except (ValueError, KeyError, TypeError):
                raise RuntimeError(f"{marker} is damaged: cannot tell which registry storage format "
                                   "this directory holds; move it aside or restore it") from None
            if not isinstance(found, int) or found > FORMAT_VERSION:
                raise RuntimeError(f"{self.root} holds registry storage format {found!r}, newer than "
                                   f"this emulator's {FORMAT_VERSION}: upgrade aml-emulator or use "
                                   "another state_dir")
        else:
            atomic_write(marker, json.dumps({"format": FORMAT_VERSION}).encode())

    def _init_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_format()
        for sub in ("blobs/sha256", "repositories", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Upload sessions do not survive a restart (their hash state is in memory).
        for leftover in (self.root / "uploads").iterdir():
            leftover.unlink(missing_ok=True)

    def reopen(self) -> None:
        """Make the directories again (a temporary root may have been removed) and drop the
        upload sessions, as after a restart."""
        with self._lock:
            for up in self._uploads.values():
                up.path.unlink(missing_ok=True)
            self._uploads.clear()
            self._init_dirs()

    def reset(self) -> None:
        """Forget every repository, blob and upload session."""
        with self._lock:
            self._uploads.clear()
            self._verified.clear()
            for sub in ("blobs", "repositories", "uploads"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            self._init_dirs()

    # -- paths (only ever built from validated names, tags and digests) -----------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / validate_digest(digest)[7:]

    def _repo(self, name: str) -> Path:
        return self.root / "repositories" / validate_name(name)

    def _layer_link(self, name: str, digest: str) -> Path:
        return self._repo(name) / "_layers" / "sha256" / validate_digest(digest)[7:]

    def _revision(self, name: str, digest: str) -> Path:
        return self._repo(name) / "_manifests" / "revisions" / "sha256" / validate_digest(digest)[7:]

    def _tag_path(self, name: str, tag: str) -> Path:
        if not is_tag(tag):
            raise error("MANIFEST_INVALID", f"invalid tag {tag[:200]!r}: must match "
                        "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", detail={"tag": tag[:200]})
        return self._repo(name) / "_manifests" / "tags" / tag

    # -- repositories -------------------------------------------------------------------

    def repo_exists(self, name: str) -> bool:
        """A repository exists once a manifest has been pushed to it."""
        return (self._repo(name) / "_manifests").is_dir()

    def repositories(self) -> list[str]:
        """Every repository holding manifests or blobs, in lexical order (as distribution)."""
        base = self.root / "repositories"
        found: list[str] = []
        for dirpath, dirnames, _files in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(os.path.relpath(dirpath, base).replace(os.sep, "/"))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    # -- blobs --------------------------------------------------------------------------

    def blob_in_repo(self, name: str, digest: str) -> bool:
        return self._layer_link(name, digest).exists() and self.blob_path(digest).exists()

    def blob_size(self, name: str, digest: str) -> int:
        if not self.blob_in_repo(name, digest):
            raise error("BLOB_UNKNOWN", f"blob {digest} unknown to repository {name}",
                        detail={"digest": digest})
        return self.blob_path(digest).stat().st_size

    def verify_blob(self, digest: str) -> bool:
        """Re-hash a blob not yet checked by this process; drop it if its bytes are wrong."""
        if digest in self._verified:
            return True
        path = self.blob_path(digest)
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        if "sha256:" + h.hexdigest() != digest:
            path.unlink(missing_ok=True)
            log.warning("dropped blob %s: its bytes at %s do not match its digest (damaged on disk); "
                        "it is unknown until a client pushes it again", digest, path)
            return False
        self._verified.add(digest)
        return True

    def link_blob(self, name: str, digest: str) -> None:
        link = self._layer_link(name, digest)
        if not link.exists():
            atomic_write(link, digest.encode())

    def delete_blob(self, name: str, digest: str) -> None:
        with self._lock:
            link = self._layer_link(name, digest)
            if not link.exists():
                raise error("BLOB_UNKNOWN", f"blob {digest} unknown to repository {name}",
                            detail={"digest": digest})
            link.unlink()

    def mount_blob(self, name: str, source: str, digest: str) -> bool:
        with self._lock:
            if not self.blob_in_repo(source, digest):
                return False
            self.link_blob(name, digest)
            return True

    def commit_file(self, src: Path, digest: str, *, fsync: bool = True) -> None:
        """Move a fully received and verified file into the blob store."""
        dst = self.blob_path(digest)
        if dst.exists():
            src.unlink(missing_ok=True)
        else:
            if fsync:
                fd = os.open(src, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(src, dst)
        self._verified.add(digest)

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        dst = self.blob_path(digest)
        if not dst.exists():
            atomic_write(dst, data)
        self._verified.add(digest)
        return digest

    # -- uploads ------------------------------------------------------------------------

    def _expire_uploads(self) -> None:
        now = self.clock()
        for upload_id, up in list(self._uploads.items()):
            if not up.busy and now - up.touched > self.upload_ttl:
                self._drop_upload(upload_id)

    def _drop_upload(self, upload_id: str) -> None:
        up = self._uploads.pop(upload_id, None)
        if up is not None:
            up.path.unlink(missing_ok=True)

    def new_upload(self, name: str) -> Upload:
        with self._lock:
            self._expire_uploads()
            if len(self._uploads) >= self.max_uploads:
                raise error("TOOMANYREQUESTS", f"too many upload sessions in progress "
                            f"(limit {self.max_uploads}); retry later", headers={"Retry-After": "5"})
            upload_id = str(uuid.uuid4())
            now = self.clock()
            up = Upload(id=upload_id, name=name, path=self.root / "uploads" / upload_id,
                        created=now, touched=now)
            up.path.touch()
            self._uploads[upload_id] = up
            return up

    def get_upload(self, name: str, upload_id: str) -> Upload:
        with self._lock:
            self._expire_uploads()
            up = self._uploads.get(upload_id)
            if up is None or up.name != name:
                raise error("BLOB_UPLOAD_UNKNOWN", f"upload {upload_id[:64]!r} unknown: it never "
                            "existed, was completed or cancelled, or expired",
                            detail={"uuid": upload_id[:64]})
            up.touched = self.clock()
            return up

    def cancel_upload(self, name: str, upload_id: str) -> None:
        with self._lock:
            self.get_upload(name, upload_id)
            self._drop_upload(upload_id)

    def finish_upload(self, up: Upload, digest: str, *, fsync: bool = True) -> None:
        """Move a verified upload into the blob store and link it into its repository."""
        self.commit_file(up.path, digest, fsync=fsync)
        with self._lock:
            self._uploads.pop(up.id, None)
            self.link_blob(up.name, digest)

    def upload_count(self) -> int:
        with self._lock:
            return len(self._uploads)

    # -- manifests and tags -------------------------------------------------------------

    def put_manifest(self, name: str, info: ManifestInfo, data: bytes, tag: str | None) -> None:
        with self._lock:
            self.put_bytes(data)
            atomic_write(self._revision(name, info.digest), info.to_json())
            if tag is not None:
                atomic_write(self._tag_path(name, tag), info.digest.encode())

    def resolve(self, name: str, reference: str) -> str:
        """The digest a tag or digest reference names in ``name``, or MANIFEST_UNKNOWN."""
        if is_tag(reference):
            try:
                digest = self._tag_path(name, reference).read_text()
            except (FileNotFoundError, NotADirectoryError):
                raise error("MANIFEST_UNKNOWN", f"manifest tagged {reference!r} unknown to "
                            f"repository {name}", detail={"Tag": reference}) from None
            return digest
        return validate_digest(reference)

    def manifest_info(self, name: str, digest: str) -> ManifestInfo:
        try:
            raw = self._revision(name, digest).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise error("MANIFEST_UNKNOWN", f"manifest {digest} unknown to repository {name}",
                        detail={"Digest": digest}) from None
        return ManifestInfo.from_json(digest, raw)

    def manifest_exists(self, name: str, digest: str) -> bool:
        return self._revision(name, digest).exists()

    def read_manifest(self, name: str, digest: str) -> tuple[ManifestInfo, bytes]:
        info = self.manifest_info(name, digest)
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            # The bytes on disk are gone or damaged: the manifest is not served.
            raise error("MANIFEST_UNKNOWN", f"manifest {digest} in repository {name} failed "
                        "verification on read", detail={"Digest": digest})
        return info, data

    def tags(self, name: str) -> list[str]:
        tag_dir = self._repo(name) / "_manifests" / "tags"
        if not self.repo_exists(name):
            raise error("NAME_UNKNOWN", f"repository {name} not known to registry",
                        detail={"name": name})
        if not tag_dir.is_dir():
            return []
        return sorted(p.name for p in tag_dir.iterdir() if not p.name.startswith("."))

    def delete_tag(self, name: str, tag: str) -> None:
        with self._lock:
            path = self._tag_path(name, tag)
            if not path.exists():
                raise error("MANIFEST_UNKNOWN", f"tag {tag!r} unknown to repository {name}",
                            detail={"Tag": tag})
            path.unlink()

    def delete_manifest(self, name: str, digest: str) -> None:
        """Delete a manifest revision and every tag of ``name`` pointing at it."""
        with self._lock:
            revision = self._revision(name, digest)
            if not revision.exists():
                raise error("MANIFEST_UNKNOWN", f"manifest {digest} unknown to repository {name}",
                            detail={"Digest": digest})
            revision.unlink()
            tag_dir = self._repo(name) / "_manifests" / "tags"
            if tag_dir.is_dir():
                for tag_file in tag_dir.iterdir():
                    if tag_file.read_text() == digest:
                        tag_file.unlink()

    def manifests(self, name: str) -> Iterator[ManifestInfo]:
        rev_dir = self._repo(name) / "_manifests" / "revisions" / "sha256"
        if not rev_dir.is_dir():
            return
        for path in sorted(rev_dir.iterdir()):
            if path.name.startswith("."):
                continue
            yield ManifestInfo.from_json("sha256:" + path.name, path.read_bytes())
