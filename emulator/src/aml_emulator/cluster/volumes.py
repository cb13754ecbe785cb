"""Pod volumes for a kubelet whose containers are host processes.

A real kubelet mounts each volume into the container's mount namespace at its
``mountPath``. Host processes have no mount namespace, so here each volume is materialised
as a directory of the pod (``<pod dir>/volumes/<volume>``) and every occurrence of a
container's ``mountPath`` in its ``command``, ``args``, ``env`` values and ``workingDir`` is
rewritten to that directory (:func:`rewrite_paths`): ``/etc/app/key`` becomes
``<pod dir>/volumes/app/key``.

Secret, ConfigMap, downwardAPI and projected volumes are written the way the kubelet's
atomic writer does (:func:`write_atomically`): the files live in a timestamped directory
that the ``..data`` symlink points to, and each visible entry is a symlink through
``..data``, so an update (a changed Secret) swaps the whole content at once.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
import uuid
from pathlib import Path

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: the file mode a volume's files get without ``defaultMode`` (0644, as the API defaults it)
DEFAULT_MODE = 0o644

Files = dict[str, tuple[bytes, int]]


class MountError(Exception):
    """A volume cannot be set up yet (its Secret or ConfigMap is missing ...); the kubelet
    reports ``FailedMount`` and tries again."""


# ------------------------------------------------------------------ path rewriting
_PATH_CHAR = r"[A-Za-z0-9_.~\-]"


def rewrite_paths(text: str, mounts: list[tuple[str, str]]) -> str:
    """Replace each ``mountPath`` in ``text`` by its host directory, where it appears as a
    path of its own: the path itself or ``mountPath/...``, not ``/etc/app2`` for
    ``/etc/app`` and not ``/x/etc/app``. Longer mount paths win over their prefixes."""
    usable = [(m.rstrip("/") or "/", h) for m, h in mounts if m and m.rstrip("/")]
    if not usable or not text:
        return text
    usable.sort(key=lambda mh: len(mh[0]), reverse=True)
    table = dict(usable)
    pattern = re.compile(r"(?<!" + _PATH_CHAR + r")(?<!/)(" + "|".join(re.escape(m) for m, _ in usable) +
                         r")(?!" + _PATH_CHAR + r")")
    return pattern.sub(lambda match: table[match.group(1)], text)


# ------------------------------------------------------------------ payloads
def _check_relative(path: str) -> str:
    parts = Path(path).parts
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise MountError(f'invalid path "{path}": must be relative and may not contain ".."')
    return path


def key_payload(data: dict[str, bytes], items: list[dict] | None, default_mode: int, optional: bool,
                missing_key: str) -> Files:
    """The files of a Secret/ConfigMap-like source: every key, or the ``items`` key → path."""
    if not items:
        return {_check_relative(k): (v, default_mode) for k, v in data.items()}
    files: Files = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise MountError(missing_key.format(key=key))
        mode = item.get("mode")
        files[_check_relative(item.get("path") or key)] = (data[key], default_mode if mode is None else int(mode))
    return files


def secret_data(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def configmap_data(cm: dict) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


# ------------------------------------------------------------------ writing
def write_atomically(target: Path, files: Files) -> None:
    """Make ``target`` hold exactly ``files`` (relative path → (content, mode)), switched
    over in one rename of the ``..data`` symlink, as the kubelet's atomic writer does."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
    stamp.mkdir(mode=0o755)
    for rel, (data, mode) in files.items():
        p = stamp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode & 0o7777)
    link_tmp = target / "..data_tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(stamp.name, link_tmp)
    os.replace(link_tmp, target / "..data")
    visible = {Path(rel).parts[0] for rel in files}
    for entry in os.listdir(target):
        if entry.startswith(".."):
            continue
        p = target / entry
        if entry not in visible:
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
    for name in visible:
        p = target / name
        if not p.is_symlink():
            if p.exists():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            os.symlink(f"..data/{name}", p)
    for entry in os.listdir(target):
        if entry.startswith("..") and entry not in ("..data", stamp.name) and (target / entry).is_dir() \
                and not (target / entry).is_symlink():
            shutil.rmtree(target / entry, ignore_errors=True)
