"""Deterministic image layers: the same inputs always give the same bytes and digest.

A layer is a tar archive with entries sorted by path, every mtime 0, owner and group 0 with
no user or group names, modes normalised (0755 for directories and executables, 0644 for
other files, links kept as links), and parent directories listed explicitly. It is
compressed with gzip with a zero mtime and no file name in the header.

Symbolic links from the input are kept only when their target stays inside the layer's
own tree (fidelity S6); a link that escapes is refused, never dereferenced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import tarfile
from pathlib import Path, PurePosixPath

import attrs

from aml_core.errors import InvalidConfig
from aml_core.oci.media import OCI_LAYER_GZIP, sha256_digest

#: gzip level used for every layer; fixed, because it changes the compressed bytes
GZIP_LEVEL = 6


@attrs.frozen(kw_only=True)
class Blob:
    """Content addressed by digest: bytes in memory, or a file on disk."""

    digest: str
    size: int
    media_type: str
    data: bytes | None = attrs.field(default=None, repr=False, eq=False)
    path: Path | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str) -> Blob:
        return cls(digest=sha256_digest(data), size=len(data), media_type=media_type, data=data)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def open(self):
        """A binary file object over the content (for streaming large blobs)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@attrs.frozen(kw_only=True)
class Layer:
    """A compressed layer blob plus the digest of its uncompressed tar (the ``diff_id``)."""

    blob: Blob
    diff_id: str
    #: what the layer is for, recorded in the image history ("runtime", "model", ...)
    comment: str = ""


@attrs.frozen
class _Entry:
    """One file system object to put in a layer, keyed by its path in the image."""

    kind: str  # "dir" | "file" | "symlink"
    source: Path | bytes | None = attrs.field(default=None, eq=False)
    executable: bool = False
    target: str = ""  # symlink target


class LayerBuilder:
    """Collects files under image paths, then writes one deterministic layer.

    >>> b = LayerBuilder()
    >>> b.add_bytes("/etc/greeting", b"hi")
    >>> layer = b.build(comment="greeting")
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    # -- collecting ---------------------------------------------------------------------
    def add_bytes(self, image_path: str, data: bytes, *, executable: bool = False) -> None:
        self._put(image_path, _Entry("file", data, executable))

    def add_file(self, image_path: str, source: Path) -> None:
        source = Path(source)
        mode = source.stat().st_mode
        self._put(image_path, _Entry("file", source, bool(mode & 0o111)))

    def add_dir(self, image_path: str) -> None:
        self._put(image_path, _Entry("dir"))

    def add_tree(self, image_path: str, source_dir: Path) -> None:
        """Copy ``source_dir``'s snapshot to ``image_path``: what
        :class:`aml_core.snapshot.SourceSnapshot` keeps (no workspace, emulator state,
        virtual environment, VCS metadata or ignored file; links that escape are refused)."""
        from aml_core.snapshot import SourceSnapshot

        self.add_snapshot(image_path, SourceSnapshot.take(source_dir))

    def add_snapshot(self, image_path: str, snapshot) -> None:
        """Copy a :class:`~aml_core.snapshot.SourceSnapshot`'s entries to ``image_path``."""
        root = _norm(image_path)
        self.add_dir(root)
        for entry in snapshot.entries:
            dest = posixpath.join(root, entry.relative)
            src = Path(snapshot.root) / entry.relative
            if entry.kind == "dir":
                self.add_dir(dest)
            elif entry.kind == "symlink":
                self._add_link(dest, src, root)
            else:
                self.add_file(dest, src)

    def add_path(self, image_path: str, source: Path) -> None:
        """Add a file or a folder."""
        source = Path(source)
        if source.is_dir() and not source.is_symlink():
            self.add_tree(image_path, source)
        elif source.is_file() and not source.is_symlink():
            self.add_file(image_path, source)
        else:
            raise InvalidConfig(f"{source} is not a regular file or folder; cannot package it.")

    def _add_link(self, dest: str, src: Path, root: str) -> None:
        target = os.readlink(src)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(dest), target))
        if posixpath.isabs(target) or not (resolved == root or resolved.startswith(root + "/")):
            raise InvalidConfig(
                f"{src} is a symbolic link to {target!r}, outside the folder being packaged; "
                "links are never followed. Replace it with the file itself or remove it."
            )
        self._put(dest, _Entry("symlink", target=target))

    def _put(self, image_path: str, entry: _Entry) -> None:
        path = _norm(image_path)
        parent = posixpath.dirname(path)
        while parent != "/":
            existing = self._entries.get(parent)
            if existing is not None and existing.kind != "dir":
                raise InvalidConfig(
                    f"{parent} is a file in the image, so {path} cannot go under it"
                )
            self._entries.setdefault(parent, _Entry("dir"))
            parent = posixpath.dirname(parent)
        existing = self._entries.get(path)
        if existing is not None and not (existing.kind == entry.kind == "dir"):
            raise InvalidConfig(f"{path} is added twice to the same image layer")
        self._entries[path] = entry

    def paths(self) -> list[str]:
        return sorted(self._entries)

    # -- writing ------------------------------------------------------------------------
    def write_tar(self, out) -> None:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self._entries):
                entry = self._entries[path]
                info = tarfile.TarInfo(path.lstrip("/") + ("/" if entry.kind == "dir" else ""))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if entry.kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
                    tar.addfile(info)
                else:
                    info.type = tarfile.REGTYPE
                    info.mode = 0o755 if entry.executable else 0o644
                    if isinstance(entry.source, bytes):
                        info.size = len(entry.source)
                        tar.addfile(info, io.BytesIO(entry.source))
                    else:
                        with open(entry.source, "rb") as fh:
                            info.size = os.fstat(fh.fileno()).st_size
                            tar.addfile(info, fh)

    def write_tree(self, destination: Path) -> None:
        """Write the entries as plain files under ``destination`` (a Dockerfile build context)."""
        destination = Path(destination)
        for path in sorted(self._entries):
            entry = self._entries[path]
            target = destination / path.lstrip("/")
            if entry.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
            elif entry.kind == "symlink":
                target.symlink_to(entry.target)
            else:
                data = (
                    entry.source
                    if isinstance(entry.source, bytes)
                    else Path(entry.source).read_bytes()
                )
                target.write_bytes(data)
                target.chmod(0o755 if entry.executable else 0o644)

    def build(self, *, comment: str = "", media_type: str = OCI_LAYER_GZIP) -> Layer:
        """Write the layer in memory; returns its gzip blob and ``diff_id``."""
        raw = io.BytesIO()
        self.write_tar(raw)
        return layer_from_tar(raw.getvalue(), comment=comment, media_type=media_type)


def layer_from_tar(
    tar_bytes: bytes, *, comment: str = "", media_type: str = OCI_LAYER_GZIP
) -> Layer:
    """Compress an uncompressed tar deterministically into a layer."""
    return Layer(
        blob=Blob.from_bytes(gzip_bytes(tar_bytes), media_type),
        diff_id=sha256_digest(tar_bytes),
        comment=comment,
    )


def layer_from_tar_file(
    tar_path: Path, blob_path: Path, *, comment: str = "", media_type: str = OCI_LAYER_GZIP
) -> Layer:
    """Compress a large tar file into ``blob_path`` in a streaming way."""
    raw_hash, gz_hash = hashlib.sha256(), hashlib.sha256()

    class _Tee(io.RawIOBase):
        def __init__(self, fh):
            self.fh, self.size = fh, 0

        def writable(self):
            return True

        def write(self, b):
            gz_hash.update(b)
            self.size += len(b)
            return self.fh.write(b)

    with open(blob_path, "wb") as fh:
        tee = _Tee(fh)
        with (
            gzip.GzipFile(
                fileobj=tee, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename=""
            ) as gz,
            open(tar_path, "rb") as src,
        ):
            for chunk in iter(lambda: src.read(1 << 20), b""):
                raw_hash.update(chunk)
                gz.write(chunk)
    blob = Blob(
        digest="sha256:" + gz_hash.hexdigest(),
        size=tee.size,
        media_type=media_type,
        path=Path(blob_path),
    )
    return Layer(blob=blob, diff_id="sha256:" + raw_hash.hexdigest(), comment=comment)


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(
        fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0, filename=""
    ) as gz:
        gz.write(data)
    return out.getvalue()


def _norm(image_path: str) -> str:
    """An absolute, normalised POSIX path inside the image; refuses ``..`` escapes."""
    p = PurePosixPath("/" + str(image_path).lstrip("/"))
    if ".." in p.parts:
        raise InvalidConfig(f"image path {image_path!r} contains '..'")
    path = posixpath.normpath(str(p))
    if path == "/":
        raise InvalidConfig("cannot add the image root itself")
    return path
