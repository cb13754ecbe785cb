"""Source snapshots: which files of a source folder go into a service or an image.

This is the one rule for every copy of user code — local staging
(``aml_provider_local``) and image packaging (:class:`aml_core.oci.layers.LayerBuilder`)
both take a :class:`SourceSnapshot` and copy exactly its entries.

What never goes in, whatever the ignore files say, because it is state or secrets rather
than code, or would copy a folder into itself:

- a **workspace** (a folder holding ``aml-workspace.json``: its database, images, staged
  services and cluster kubeconfigs);
- an **emulator's state** (a folder holding ``emulator.lock`` or ``emulator.json``: its
  CA key, tokens and kubeconfig);
- a **virtual environment** (a folder holding ``pyvenv.cfg``, or a conda ``conda-meta``);
- **VCS metadata** (``.git``, ``.hg``, ``.svn``, ``.bzr``) and caches (``__pycache__``,
  ``*.pyc``, ``.pytest_cache`` ...).

Then, as Azure ML does: in each folder an ``.amlignore`` is read, or the ``.gitignore``
when there is no ``.amlignore``, with gitignore's syntax and precedence (matched by
`pathspec <https://pypi.org/project/pathspec/>`_); patterns apply below the folder that
holds the file, and a deeper file overrides a shallower one.

A snapshot larger than :data:`DEFAULT_WARN_BYTES` (``AML_SNAPSHOT_WARN_MB`` to change it)
raises a :class:`LargeSnapshotWarning` that names its biggest entries, so the user can add
them to ``.amlignore``.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path

import attrs
import pathspec

from aml_core.errors import InvalidConfig

#: Azure ML's snapshot limit; above it the snapshot still works here, with a warning
DEFAULT_WARN_BYTES = 300 * 1024 * 1024
WARN_ENV = "AML_SNAPSHOT_WARN_MB"
IGNORE_FILES = (".amlignore", ".gitignore")

#: folder names never copied (VCS metadata and tool caches)
EXCLUDED_DIR_NAMES = frozenset({
    ".git", ".hg", ".svn", ".bzr", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".tox", ".nox", ".ipynb_checkpoints",
})
EXCLUDED_FILE_SUFFIXES = (".pyc", ".pyo")
#: a folder holding one of these files is state, not code: (marker, what the folder is)
STATE_MARKERS = (
    ("aml-workspace.json", "an aml workspace"),
    ("emulator.lock", "an emulator's state"),
    ("emulator.json", "an emulator's state"),
    ("pyvenv.cfg", "a virtual environment"),
    ("conda-meta", "a conda environment"),
)


#: what a workspace keeps at its top level: left out when the source folder is itself a
#: workspace (the user's code sits beside them)
WORKSPACE_LAYOUT = frozenset({
    "aml-workspace.json", "aml.db", "aml.db-wal", "aml.db-shm", "aml.db-journal",
    "artifacts", "backups", "registry", "services", "tmp",
})


class LargeSnapshotWarning(UserWarning):
    """A source folder is bigger than the snapshot size limit; its biggest entries are named."""


@attrs.frozen
class SnapshotEntry:
    """One file, folder or symbolic link of a snapshot, by its path relative to the root."""

    relative: str
    kind: str  # "file", "dir" or "symlink"
    size: int = 0


@attrs.frozen
class SourceSnapshot:
    """The entries of ``root`` that are copied, in walk order (a folder before its contents),
    and what was left out with the reason."""

    root: Path
    entries: tuple[SnapshotEntry, ...]
    excluded: tuple[tuple[str, str], ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def biggest(self, count: int = 5) -> list[tuple[str, int]]:
        """The top-level entries with the most bytes under them, biggest first."""
        sizes: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            top = entry.relative.split("/", 1)[0]
            sizes[top + ("/" if "/" in entry.relative or entry.kind == "dir" else "")] += entry.size
        return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:count]

    @classmethod
    def take(cls, root: str | os.PathLike, *, warn_bytes: int | None = None) -> SourceSnapshot:
        """Walk ``root`` and apply the rules in this module's docstring."""
        root = Path(root)
        if not root.is_dir():
            raise InvalidConfig(f"source folder {str(root)!r} is not a directory")
        entries: list[SnapshotEntry] = []
        excluded: list[tuple[str, str]] = []
        # (folder relative to root, its ignore spec), shallowest first
        specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        skip_top = WORKSPACE_LAYOUT if (root / STATE_MARKERS[0][0]).exists() else frozenset()
        _walk(root, "", specs, entries, excluded, skip_top)
        snapshot = cls(root=root, entries=tuple(entries), excluded=tuple(excluded))
        limit = _warn_limit() if warn_bytes is None else warn_bytes
        if snapshot.total_bytes > limit:
            listing = ", ".join(f"{name} ({_mib(size)})" for name, size in snapshot.biggest())
            warnings.warn(LargeSnapshotWarning(
                f"Source folder {str(root)!r} holds {_mib(snapshot.total_bytes)} to copy, over the "
                f"{_mib(limit)} snapshot limit. Biggest entries: {listing}. List what the service does "
                f"not need in {root / '.amlignore'} (gitignore syntax), or point source_directory at a "
                f"smaller folder."), stacklevel=2)
        return snapshot

    def copy_to(self, destination: str | os.PathLike) -> None:
        """Recreate the snapshot under ``destination`` (files copied with their mode, links
        recreated as links)."""
        import shutil

        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        for entry in self.entries:
            target = destination / entry.relative
            source = self.root / entry.relative
            if entry.kind == "dir":
                target.mkdir(exist_ok=True)
            elif entry.kind == "symlink":
                os.symlink(os.readlink(source), target)
            else:
                shutil.copy2(source, target)


def _warn_limit() -> int:
    configured = os.environ.get(WARN_ENV)
    if not configured:
        return DEFAULT_WARN_BYTES
    try:
        return int(float(configured) * 1024 * 1024)
    except ValueError:
        raise InvalidConfig(f"{WARN_ENV}={configured!r} is not a number of megabytes; unset it or give e.g. 500")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _state_kind(path: Path) -> str | None:
    for marker, what in STATE_MARKERS:
        if (path / marker).exists():
            return what
    return None


def _ignore_spec(folder: Path) -> pathspec.GitIgnoreSpec | None:
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_file():
            return pathspec.GitIgnoreSpec.from_lines(path.read_text(errors="replace").splitlines())
    return None


def _ignored(relative: str, is_dir: bool, specs: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
    verdict = None
    for base, spec in specs:  # shallowest first, so a deeper ignore file has the last word
        inner = relative[len(base) + 1:] if base else relative
        result = spec.check_file(inner + ("/" if is_dir else ""))
        if result.include is not None:
            verdict = result.include
    return bool(verdict)


def _walk(root: Path, relative: str, specs: list, entries: list, excluded: list,
          skip_names: frozenset[str] = frozenset()) -> None:
    folder = root / relative if relative else root
    own = _ignore_spec(folder)
    if own is not None:
        specs = [*specs, (relative, own)]
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda d: d.name)
    for child in children:
        rel = f"{relative}/{child.name}" if relative else child.name
        if child.name in skip_names:
            excluded.append((rel, "the workspace this source folder holds"))
            continue
        if child.is_symlink():
            if _ignored(rel, False, specs):
                excluded.append((rel, "ignore file"))
                continue
            _check_link(root, rel)
            entries.append(SnapshotEntry(rel, "symlink"))
        elif child.is_dir():
            if child.name in EXCLUDED_DIR_NAMES:
                excluded.append((rel, "VCS metadata or a cache"))
                continue
            state = _state_kind(Path(child.path))
            if state is not None:
                excluded.append((rel, state))
                continue
            if _ignored(rel, True, specs):
                excluded.append((rel, "ignore file"))
                continue
            entries.append(SnapshotEntry(rel, "dir"))
            _walk(root, rel, specs, entries, excluded)
        elif child.is_file():
            if child.name.endswith(EXCLUDED_FILE_SUFFIXES):
                continue
            if _ignored(rel, False, specs):
                excluded.append((rel, "ignore file"))
                continue
            entries.append(SnapshotEntry(rel, "file", child.stat().st_size))
        else:
            raise InvalidConfig(
                f"{child.path} is neither a file, a folder nor a link; only regular files can be "
                "copied into a service or an image. Remove it or list it in .amlignore."
            )


def _check_link(root: Path, relative: str) -> None:
    link = root / relative
    target = os.readlink(link)
    resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        raise InvalidConfig(
            f"{link} is a symbolic link to {target!r}, outside the folder being copied; links are "
            "never followed. Replace it with the file itself, remove it, or list it in .amlignore."
        )
