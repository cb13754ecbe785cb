"""Unpack an image's layers into a cache directory keyed by its manifest digest, safely.

Layers are applied in order into a temporary directory that is renamed into place only when
every layer has been extracted and its digest verified, so the cache never holds a partial
tree. Each archive entry passes our own checks first (fidelity S5), then tarfile's
``filter='data'`` where this Python has it:

* no absolute paths and no ``..`` components;
* symbolic links may not be absolute nor resolve outside the tree; hard links must name an
  entry already inside the tree;
* no device nodes, FIFOs or other special files; no setuid or setgid bits;
* nothing is ever written through a link that leads outside the tree;
* once every entry (every layer) is applied, no link in the finished tree resolves outside
  it: a later entry can replace a folder an earlier link walks through, which changes where
  that link leads without touching it;
* OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``) only delete inside the tree.

A refused entry raises :class:`UnsafeArchive`, naming the entry and the rule.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs

from aml_core.errors import InvalidConfig
from aml_core.oci.layers import Blob
from aml_core.oci.media import GZIP_LAYER_TYPES, OCI_LAYER_TAR, digest_hex

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


class UnsafeArchive(InvalidConfig):
    """A layer or archive holds an entry that could write outside its destination.

    The message names the entry and the rule it broke; nothing from the archive is kept.
    """

    code = "UnsafeArchive"

    def __init__(self, entry: str, reason: str, archive: str = "") -> None:
        self.entry = entry
        self.reason = reason
        where = f" in {archive}" if archive else ""
        super().__init__(
            f"refusing archive entry {entry!r}{where}: {reason}. The archive was not unpacked; "
            "rebuild it without that entry."
        )


@attrs.frozen(kw_only=True)
class UnpackedImage:
    """An image's file system in the cache."""

    digest: str
    #: the directory holding ``rootfs/`` and ``config.json``
    path: Path
    config: dict = attrs.field(eq=False, repr=False)

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the ``with`` block (across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def unpack_image(image, cache_dir: Path, *, top_layers: int | None = None) -> UnpackedImage:
    """Extract ``image`` (an :class:`aml_core.oci.image.Image`) into ``cache_dir``.

    :param top_layers: extract only the last N layers (the process engine skips a base
        image's operating-system layers, which it never runs).
    :returns: the cached tree; a second call with the same digest returns at once.
    :raises UnsafeArchive: an entry broke a rule; nothing is left in the cache.
    :raises InvalidConfig: a blob does not match its digest or uses an unknown compression.
    """
    cache_dir = Path(cache_dir)
    layers = image.layers if top_layers is None else image.layers[len(image.layers) - top_layers :]
    key = digest_hex(image.digest) + ("" if top_layers is None else f"-top{top_layers}")
    final = cache_dir / key
    config = image.config_json()
    if (final / "rootfs").is_dir():
        return UnpackedImage(digest=image.digest, path=final, config=config)
    with file_lock(cache_dir / f"{key}.lock"):
        if (final / "rootfs").is_dir():  # another process finished first
            return UnpackedImage(digest=image.digest, path=final, config=config)
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir))
        try:
            rootfs = work / "rootfs"
            rootfs.mkdir()
            for blob in layers:
                apply_layer(blob, rootfs)
            check_links_stay_inside(rootfs, archive=f"image {image.digest}")
            (work / "config.json").write_text(json.dumps(config))
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return UnpackedImage(digest=image.digest, path=final, config=config)


class _HashingReader:
    """Reads a file object while hashing and counting what passed through."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.hash, self.size = fh, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


def apply_layer(blob: Blob, rootfs: Path) -> None:
    """Apply one layer blob on top of ``rootfs``, verifying its digest."""
    if blob.media_type in GZIP_LAYER_TYPES:
        compressed = True
    elif blob.media_type in (OCI_LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar"):
        compressed = False
    else:
        raise InvalidConfig(
            f"layer {blob.digest} has media type {blob.media_type!r}; only tar and tar+gzip "
            "layers can be unpacked"
        )
    with blob.open() as raw:
        reader = _HashingReader(raw)
        stream = gzip.GzipFile(fileobj=reader, mode="rb") if compressed else reader
        extract_tar(stream, rootfs, archive=f"layer {blob.digest}", layer=True)
        while reader.read(1 << 20):  # hash whatever tar did not need to read
            pass
    if "sha256:" + reader.hash.hexdigest() != blob.digest or reader.size != blob.size:
        raise InvalidConfig(
            f"layer blob does not match its digest {blob.digest}; re-pull the image"
        )


def extract_tar(fileobj, destination: Path, *, archive: str = "", layer: bool = False) -> None:
    """Extract a tar stream into ``destination`` with the rules of this module.

    :param layer: interpret OCI whiteout entries (only meaningful for image layers).
    """
    root = Path(os.path.realpath(destination))
    this_layer: set[str] = set()
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            name = _check_name(member.name, archive)
            base = os.path.basename(name)
            parent = _real_parent(root, name, member.name, archive)
            if layer and base.startswith(WHITEOUT):
                _whiteout(root, parent, base, this_layer, member.name, archive)
                continue
            _check_member(member, root, parent, archive)
            this_layer.add(name)
            target = parent / base
            if os.path.lexists(target) and not (
                member.isdir() and target.is_dir() and not target.is_symlink()
            ):
                # replace, never write through, whatever a lower layer left here
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            member.name = name
            if member.islnk():
                member.linkname = _check_name(
                    member.linkname, archive, entry=name, what="hard link to"
                )
            try:
                if _HAS_DATA_FILTER:
                    tar.extract(member, root, set_attrs=True, filter="data")
                else:  # pragma: no cover - Pythons without PEP 706
                    tar.extract(member, root, set_attrs=False)
            except tarfile.FilterError as exc:  # pragma: no cover - our checks come first
                raise UnsafeArchive(member.name, str(exc), archive) from exc
    if not layer:  # a layer's tree is checked once the whole stack is applied
        check_links_stay_inside(root, archive=archive)


def check_links_stay_inside(destination: Path, *, archive: str = "") -> None:
    """Refuse a finished tree that holds a symbolic link resolving outside it.

    Each link was checked when it was written, but a later entry that replaces a folder or
    link the target walks through (``a/../..`` once ``a`` is no longer two levels deep)
    moves it without touching it; only the finished tree tells.
    """
    root = Path(os.path.realpath(destination))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _inside(root, os.path.realpath(path)):
                entry = os.path.relpath(path, root)
                raise UnsafeArchive(
                    entry,
                    f"symbolic link to {os.readlink(path)!r} resolves outside the tree once every "
                    "entry is applied (a later entry moved a folder it passes through)",
                    archive,
                )


def _check_name(name: str, archive: str, *, entry: str | None = None, what: str = "") -> str:
    """Normalise an archive path; ``entry``/``what`` name the member when checking a link target."""
    entry = name if entry is None else entry
    what = f"{what} {name!r}: " if what else ""
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(entry, what + "absolute paths are not allowed", archive)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(entry, what + "'..' path components are not allowed", archive)
    if "\\" in name or "\x00" in name:
        raise UnsafeArchive(
            entry, what + "backslashes and NUL bytes are not allowed in names", archive
        )
    return "/".join(parts) or "."


def _inside(root: Path, path: str | Path) -> bool:
    path = str(path)
    return path == str(root) or path.startswith(str(root) + os.sep)


def _real_parent(root: Path, name: str, raw: str, archive: str) -> Path:
    parent = os.path.realpath(root / os.path.dirname(name)) if os.path.dirname(name) else str(root)
    if not _inside(root, parent):
        raise UnsafeArchive(raw, "its parent folder is a link that leads outside the tree", archive)
    return Path(parent)


def _check_member(member: tarfile.TarInfo, root: Path, parent: Path, archive: str) -> None:
    if member.ischr() or member.isblk():
        raise UnsafeArchive(member.name, "device nodes are not allowed", archive)
    if member.isfifo():
        raise UnsafeArchive(member.name, "FIFOs are not allowed", archive)
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(
            member.name, f"entries of tar type {member.type!r} are not allowed", archive
        )
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeArchive(member.name, "setuid and setgid bits are not allowed", archive)
    if member.issym():
        target = member.linkname
        if not target or os.path.isabs(target):
            raise UnsafeArchive(member.name, f"symbolic link to absolute path {target!r}", archive)
        resolved = os.path.realpath(os.path.join(parent, target))
        if not _inside(root, resolved):
            raise UnsafeArchive(
                member.name, f"symbolic link to {target!r} resolves outside the tree", archive
            )
    if member.islnk():
        target = _check_name(member.linkname, archive, entry=member.name, what="hard link to")
        resolved = os.path.realpath(root / target)
        if not _inside(root, resolved) or not os.path.lexists(root / target):
            raise UnsafeArchive(
                member.name,
                f"hard link to {member.linkname!r} is not an earlier entry inside the tree",
                archive,
            )


def _whiteout(
    root: Path, parent: Path, base: str, this_layer: set[str], raw: str, archive: str
) -> None:
    rel_parent = os.path.relpath(parent, root)
    rel_parent = "" if rel_parent == "." else rel_parent + "/"
    if base == OPAQUE:
        # hide everything lower layers put in this folder, keep this layer's own entries
        if parent.is_dir():
            for child in parent.iterdir():
                if rel_parent + child.name not in this_layer:
                    _remove(child)
        return
    victim = base[len(WHITEOUT) :]
    if victim in ("", ".", "..") or "/" in victim:
        raise UnsafeArchive(raw, "whiteout must name one entry in its own folder", archive)
    path = parent / victim
    if not _inside(root, os.path.abspath(path)):
        raise UnsafeArchive(raw, "whiteout points outside the tree", archive)
    if os.path.lexists(path):
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
