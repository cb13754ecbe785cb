"""Files that hold secrets: created private from their first byte.

A ``chmod`` after writing leaves a window in which another local user can open the file
(and keep the descriptor), so secret files are created with ``os.open(..., 0o600)`` and
their directories with ``os.mkdir(..., 0o700)``. The process umask can only take bits
away, so these modes hold whatever it is.
"""

from __future__ import annotations

import os
import threading
import stat
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: str | os.PathLike, *, tighten: bool = True) -> Path:
    """Make ``path`` (and any missing parent) a directory only its owner can enter.

    Missing directories are created 0700. With ``tighten``, an existing ``path`` owned by
    this user loses its group and other bits (its parents are left as they are: a user's
    home or ``/tmp`` is not ours to change).
    """
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:  # made by a concurrent process meanwhile
            pass
    if tighten:
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
    return path


def write_private(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically, the new file mode 0600 from its creation.

    The parent directory must exist (make it with :func:`private_dir`). A temporary
    sibling is written first and renamed over ``path``, so readers see the old or the new
    content, never a part.
    """
    path = Path(path)
    # per process and thread: two threads replacing one file must not share a temporary
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def open_private(path: str | os.PathLike, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """``os.open`` a file that, if this call creates it, is 0600; an existing file owned by
    this user that others can read is made 0600 too. Returns the descriptor."""
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    info = os.fstat(fd)
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd
