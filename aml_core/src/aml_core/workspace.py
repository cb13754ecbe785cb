"""The workspace: a directory with a SQLite metadata store and a content-addressed artifact store.

Layout::

    <root>/aml-workspace.json   name, backend and format version (identifies a workspace)
    <root>/aml.db               SQLite (WAL): models, services, images, computes
    <root>/artifacts/sha256/    file contents by digest, written with temp file + fsync + rename
    <root>/services/<kind>/     state that providers keep per service
    <root>/tmp/                 scratch space on the same file system (for atomic renames)

Every write is a single SQLite transaction taken with ``BEGIN IMMEDIATE``, so concurrent
processes serialise on the database and a crash leaves either the whole change or nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import IO, Iterator

import attrs

from aml_core.errors import InvalidConfig, NotFound
from aml_core.secure_files import private_dir

CONFIG_NAME = "aml-workspace.json"
FORMAT_VERSION = 1
WORKSPACE_ENV = "AML_WORKSPACE"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    spec TEXT,
    operation TEXT
);
CREATE TABLE IF NOT EXISTS images (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS computes (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"""


@attrs.frozen
class Workspace:
    """A handle on a workspace directory. Cheap to create; holds no open resources."""

    root: Path = attrs.field(converter=lambda p: Path(p).resolve())
    name: str
    backend: str = "embedded"
    #: where images are pushed: "embedded" (OCI layouts in the workspace) or "profile:NAME"
    container_registry: str = "embedded"

    # -- finding and creating ---------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, name: str | None = None, *, exist_ok: bool = False,
               container_registry: str = "embedded") -> "Workspace":
        """Make a new workspace in ``path`` (created if missing).

        :param container_registry: ``"embedded"`` keeps images as OCI layouts in the
            workspace; ``"profile:emulator"`` pushes them to a cloud profile's registry.
        """
        root = Path(path).resolve()
        config = root / CONFIG_NAME
        if config.exists():
            if not exist_ok:
                raise InvalidConfig(
                    f"A workspace already exists at {root}. Open it with Workspace.get({str(root)!r}) "
                    f"or pass exist_ok=True."
                )
            return cls.get(root)
        # a new root is 0700 (a folder the user already had keeps its mode); services/ holds
        # providers' credentials (kubeconfigs, keys), so it is 0700 in any case
        private_dir(root, tighten=False)
        private_dir(root / "services")
        for sub in ("artifacts/sha256", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        data = {"name": name or root.name, "backend": "embedded", "format": FORMAT_VERSION,
                "container_registry": container_registry}
        tmp = root / "tmp" / f".{CONFIG_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, config)
        ws = cls(root, data["name"], data["backend"], container_registry)
        ws._ensure_schema()
        return ws

    @classmethod
    def get(cls, path: str | os.PathLike) -> "Workspace":
        """Open the workspace at ``path``."""
        root = Path(path).resolve()
        config = root / CONFIG_NAME
        if not config.is_file():
            raise NotFound(
                f"No workspace at {root} (no {CONFIG_NAME}). Create one with "
                f"Workspace.create({str(root)!r}) or `aml workspace create {root}`."
            )
        try:
            data = json.loads(config.read_text())
            fmt = int(data.get("format", 0))
            name = str(data["name"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidConfig(f"{config} is not a valid workspace file ({exc}). Restore it or recreate the workspace.") from exc
        if fmt > FORMAT_VERSION:
            raise InvalidConfig(
                f"The workspace at {root} was written by a newer version (format {fmt}, this one reads "
                f"up to {FORMAT_VERSION}). Upgrade aml-core to open it."
            )
        ws = cls(root, name, str(data.get("backend", "embedded")), str(data.get("container_registry", "embedded")))
        ws._ensure_schema()
        return ws

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None) -> "Workspace":
        """Find a workspace: ``path``, else ``$AML_WORKSPACE``, else the current directory or a parent."""
        if path is not None:
            return cls.get(path)
        env = os.environ.get(WORKSPACE_ENV)
        if env:
            return cls.get(env)
        here = Path.cwd().resolve()
        for candidate in (here, *here.parents):
            for root in (candidate, candidate / ".aml"):
                if (root / CONFIG_NAME).is_file():
                    return cls.get(root)
        raise NotFound(
            f"No workspace found: {WORKSPACE_ENV} is not set and neither {here} nor its parents hold "
            f"{CONFIG_NAME}. Create one with `aml workspace create DIR` or Workspace.create(DIR), "
            f"then set {WORKSPACE_ENV}=DIR."
        )

    def set_container_registry(self, container_registry: str) -> "Workspace":
        """Point image pushes elsewhere (``"embedded"`` or ``"profile:NAME"``); returns the new handle."""
        if container_registry != "embedded" and not container_registry.startswith("profile:"):
            raise InvalidConfig(f"container_registry must be 'embedded' or 'profile:NAME', got {container_registry!r}.")
        config = self.root / CONFIG_NAME
        data = json.loads(config.read_text())
        data["container_registry"] = container_registry
        tmp = self.root / "tmp" / f".{CONFIG_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, config)
        return attrs.evolve(self, container_registry=container_registry)

    # -- metadata store ---------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.root / "aml.db"

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.row_factory = sqlite3.Row
        return conn

    def _ensure_schema(self) -> None:
        conn = self.connect()
        try:
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: one writer at a time across processes; all or nothing."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            conn.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    # -- artifact store ---------------------------------------------------------------

    def artifact_path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise InvalidConfig(f"Not a sha256 digest: {digest!r}")
        hexdigest = digest.split(":", 1)[1]
        return self.root / "artifacts" / "sha256" / hexdigest[:2] / hexdigest

    def put_artifact(self, source: IO[bytes]) -> tuple[str, int]:
        """Store a stream's bytes by content; returns ``(digest, size)``. Durable on return."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="artifact-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = f"sha256:{hasher.hexdigest()}"
            target = self.artifact_path(digest)
            if target.exists():
                os.unlink(tmp_name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp_name, 0o444)
                os.replace(tmp_name, target)
            return digest, size
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def copy_artifact(self, digest: str, dest: Path, *, executable: bool = False) -> None:
        """Materialise an artifact at ``dest`` (a hard link when possible, else a copy)."""
        src = self.artifact_path(digest)
        if not src.exists():
            raise NotFound(f"Artifact {digest} is missing from {self.root / 'artifacts'}; the workspace is damaged.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if executable:
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o755)
            return
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o644)

    def service_dir(self, kind: str, name: str) -> Path:
        """A private (0700) directory for one service's state, created on first use."""
        return private_dir(self.root / "services" / kind / name)

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r}, root={str(self.root)!r})"
