"""The workspace: a directory with a SQLite metadata store and a content-addressed artifact store.

Layout::

    <root>/aml-workspace.json   name, backend and format version (identifies a workspace)
    <root>/aml.db               SQLite (WAL): models, services, images, computes
    <root>/artifacts/sha256/    file contents by digest, written with temp file + fsync + rename
    <root>/services/<kind>/     state that providers keep per service
    <root>/tmp/                 scratch space on the same file system (for atomic renames)
    <root>/backups/aml.db       a copy of aml.db taken with SQLite's online backup API
                                after every write

Every write is a single SQLite transaction taken with ``BEGIN IMMEDIATE``, so concurrent
processes serialise on the database and a crash leaves either the whole change or nothing.

Opening a workspace checks its index before anything reads or writes it: a missing,
empty or non-SQLite ``aml.db``, or one that carries another workspace's id, is refused
with :class:`~aml_core.errors.WorkspaceDamaged` (nothing is created over it, so nothing
is lost). :meth:`Workspace.check` looks deeper (SQLite's integrity check, every model's
artifacts present and matching their digests) and :meth:`Workspace.restore` puts the
backup in place, keeping the damaged file beside it. Temporary files that a process killed
midway left in ``tmp/`` are removed at the next open.
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
import time
import uuid
from pathlib import Path
from typing import IO, Iterator

import attrs

from aml_core.errors import InvalidConfig, NotFound, WorkspaceDamaged
from aml_core.secure_files import private_dir

CONFIG_NAME = "aml-workspace.json"
#: the file ``write_config`` writes and ``from_config`` reads, as azureml-core names it
SDK_CONFIG_DIR, SDK_CONFIG_NAME = ".azureml", "config.json"
#: where ``Workspace.get(name)`` looks for workspaces by name (``~/.aml/workspaces`` if unset)
WORKSPACES_HOME_ENV = "AML_WORKSPACES_HOME"
DEFAULT_LOCATION = "local"
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_SQLITE_HEADER = b"SQLite format 3\x00"
_TABLES = ("models", "services", "images", "computes", "environments")
BACKUP_NAME = "backups/aml.db"
#: temporary files carry their writer's pid, so an open can tell a dead writer's from a live one's
_TEMP_WITH_PID = re.compile(r"^(?:artifact-|\.aml-workspace\.json\.|\.aml\.db\.)(\d+)")
_RECOVERY = ("Run `aml workspace check` to see what is wrong, and `aml workspace restore` to put "
             "the last backup ({backup}) in place (the damaged file is kept beside it).")


@attrs.frozen
class Workspace:
    """A handle on a workspace directory. Cheap to create; holds no open resources."""

    root: Path = attrs.field(converter=lambda p: Path(p).resolve())
    name: str
    backend: str = "embedded"
    #: where images are pushed: "embedded" (OCI layouts in the workspace) or "profile:NAME"
    container_registry: str = "embedded"
    #: the Azure identity the SDK's samples read (``ws.subscription_id`` ...); ``None`` when
    #: neither given at create nor known from the container registry's cloud profile
    subscription_id: str | None = None
    resource_group: str | None = None
    location: str = DEFAULT_LOCATION

    # -- finding and creating ---------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike | None = None, name: str | None = None, *, exist_ok: bool = False,
               container_registry: str = "embedded", subscription_id: str | None = None,
               resource_group: str | None = None, location: str | None = None,
               create_resource_group: bool = True, sku: str = "basic", show_output: bool = True,
               auth: object = None) -> "Workspace":
        """Make a new workspace in ``path`` (created if missing).

        azureml-core's form, ``Workspace.create(name="myworkspace", subscription_id=...,
        resource_group=..., location=...)`` with no ``path``, makes it under
        ``$AML_WORKSPACES_HOME`` (default ``~/.aml/workspaces``), where ``Workspace.get(name)``
        finds it. ``create_resource_group``, ``sku``, ``show_output`` and ``auth`` are taken
        for compatibility and change nothing here.

        :param container_registry: ``"embedded"`` keeps images as OCI layouts in the
            workspace; ``"profile:emulator"`` pushes them to a cloud profile's registry.
        :param subscription_id, resource_group: the Azure identity ``ws.subscription_id``
            and ``ws.resource_group`` report; by default the registry profile's.
        :param location: the region ``ws.location`` reports (default ``"local"``).
        """
        if path is None:
            if not name:
                raise InvalidConfig("Workspace.create needs a directory (path) or a name (then it goes under "
                                    f"${WORKSPACES_HOME_ENV}, default ~/.aml/workspaces).")
            path = cls.workspaces_home() / name
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
                "container_registry": container_registry, "id": str(uuid.uuid4())}
        identity = {"subscription_id": subscription_id, "resource_group": resource_group, "location": location}
        data.update({k: v for k, v in identity.items() if v is not None})
        ws = cls._from_data(root, data)
        # the id the database holds wins: two processes creating one workspace at once
        # agree on the first one's, so neither sees the other's database as foreign
        data["id"] = ws._ensure_schema(data["id"])
        tmp = root / "tmp" / f".{CONFIG_NAME}.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, config)  # last: a workspace that exists has its database
        ws._backup()
        return ws

    @classmethod
    def _from_data(cls, root: Path, data: dict) -> "Workspace":
        registry = str(data.get("container_registry", "embedded"))
        subscription_id, resource_group = data.get("subscription_id"), data.get("resource_group")
        if registry.startswith("profile:") and not (subscription_id and resource_group):
            from aml_core.profiles import CloudProfile

            try:
                profile = CloudProfile.load(registry.split(":", 1)[1])
            except (NotFound, InvalidConfig):
                profile = None  # the profile is needed (and reported) only when images are pushed
            if profile is not None:
                subscription_id = subscription_id or profile.subscription_id
                resource_group = resource_group or profile.resource_group
        return cls(root, str(data["name"]), str(data.get("backend", "embedded")), registry,
                   subscription_id=subscription_id, resource_group=resource_group,
                   location=str(data.get("location") or DEFAULT_LOCATION))

    @classmethod
    def get(cls, name: str | os.PathLike, auth: object = None, subscription_id: str | None = None,
            resource_group: str | None = None) -> "Workspace":
        """Open a workspace: by directory, or (azureml-core's form) by name, looked up under
        ``$AML_WORKSPACES_HOME`` (default ``~/.aml/workspaces``), and checked against
        ``subscription_id`` and ``resource_group`` when they are given."""
        root = Path(name).expanduser()
        if not (root / CONFIG_NAME).is_file() and isinstance(name, str) and os.sep not in name:
            root = cls._find_by_name(name, subscription_id, resource_group)
        ws = cls._open(root)
        for attribute, wanted in (("subscription_id", subscription_id), ("resource_group", resource_group)):
            have = getattr(ws, attribute)
            if wanted is not None and (have or "").lower() != wanted.lower():
                raise NotFound(
                    f"Workspace {ws.name!r} at {ws.root} is in {attribute} {have!r}, not {wanted!r}. "
                    f"Check the {attribute} you passed (see ws.get_details())."
                )
        return ws

    @staticmethod
    def workspaces_home() -> Path:
        configured = os.environ.get(WORKSPACES_HOME_ENV)
        return Path(configured).expanduser() if configured else Path.home() / ".aml" / "workspaces"

    @classmethod
    def _find_by_name(cls, name: str, subscription_id: str | None, resource_group: str | None) -> Path:
        home = cls.workspaces_home()
        found = []
        for config in sorted(home.glob(f"*/{CONFIG_NAME}")) + sorted(home.glob(f"*/*/*/{CONFIG_NAME}")):
            try:
                data = json.loads(config.read_text())
            except ValueError:
                continue
            if data.get("name") != name:
                continue
            if subscription_id and (data.get("subscription_id") or "").lower() != subscription_id.lower():
                continue
            if resource_group and (data.get("resource_group") or "").lower() != resource_group.lower():
                continue
            found.append(config.parent)
        if not found:
            raise NotFound(
                f"Workspace not found: no workspace named {name!r}"
                + (f" in subscription {subscription_id!r}" if subscription_id else "")
                + (f" and resource group {resource_group!r}" if resource_group else "")
                + f" under {home} (${WORKSPACES_HOME_ENV}). Create it with Workspace.create({str(home / name)!r}, "
                f"{name!r}, subscription_id=..., resource_group=...), or pass its directory."
            )
        if len(found) > 1:
            raise InvalidConfig(
                f"{len(found)} workspaces are named {name!r} under {home}: {', '.join(map(str, found))}. "
                f"Pass subscription_id and resource_group, or the directory, to pick one."
            )
        return found[0]

    @classmethod
    def _open(cls, path: str | os.PathLike) -> "Workspace":
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
        ws = cls._from_data(root, {**data, "name": name})
        ws._verify_database(data)
        ws._remove_dead_temporaries()
        return ws

    @classmethod
    def from_config(cls, path: str | os.PathLike | None = None, auth: object = None, _logger: object = None,
                    _file_name: str | None = None) -> "Workspace":
        """Find a workspace: ``path``, else ``$AML_WORKSPACE``, else the current directory or a parent.

        At each place it looks for a workspace directory (``aml-workspace.json``, also under
        ``.aml/``) and for the file ``write_config`` writes (``.azureml/config.json``, or
        ``config.json`` itself, or ``path`` when it names that file), as azureml-core does.
        """
        file_name = _file_name or SDK_CONFIG_NAME
        if path is not None:
            start = Path(path).expanduser().resolve()
            if start.is_file():
                return cls._from_sdk_config(start)
            found = cls._look_in(start, file_name, bare=True)
            if found is not None:
                return found
            raise NotFound(
                f"No workspace at {start}: it holds neither {CONFIG_NAME} nor {SDK_CONFIG_DIR}/{file_name}. "
                f"Write one with ws.write_config(path={str(start)!r}) or create a workspace there."
            )
        env = os.environ.get(WORKSPACE_ENV)
        if env:
            return cls.get(env)
        here = Path.cwd().resolve()
        for candidate in (here, *here.parents):
            found = cls._look_in(candidate, file_name)
            if found is not None:
                return found
        raise NotFound(
            f"No workspace found: {WORKSPACE_ENV} is not set and neither {here} nor its parents hold "
            f"{CONFIG_NAME}. Create one with `aml workspace create DIR` or Workspace.create(DIR), "
            f"then set {WORKSPACE_ENV}=DIR."
        )

    @classmethod
    def locate(cls, path: str | os.PathLike | None = None) -> Path:
        """Where :meth:`from_config` would open a workspace directory, without opening it (for
        ``aml workspace check``/``restore``, which must reach a damaged one)."""
        if path is not None:
            return Path(path).resolve()
        env = os.environ.get(WORKSPACE_ENV)
        if env:
            return Path(env).resolve()
        here = Path.cwd().resolve()
        for candidate in (here, *here.parents):
            for root in (candidate, candidate / ".aml"):
                if (root / CONFIG_NAME).is_file():
                    return root
        raise NotFound(
            f"No workspace found: {WORKSPACE_ENV} is not set and neither {here} nor its parents hold "
            f"{CONFIG_NAME}. Create one with `aml workspace create DIR` or Workspace.create(DIR), "
            f"then set {WORKSPACE_ENV}=DIR."
        )

    @classmethod
    def _look_in(cls, directory: Path, file_name: str, *, bare: bool = False) -> "Workspace | None":
        """The workspace ``directory`` points at, if any. A bare ``config.json`` counts only in a
        directory the caller named (``bare``): walking up, an unrelated project's config.json
        must not be mistaken for a workspace's."""
        for root in (directory, directory / ".aml"):
            if (root / CONFIG_NAME).is_file():
                return cls._open(root)
        candidates = [directory / SDK_CONFIG_DIR / file_name, directory / "aml_config" / file_name]
        if bare:
            candidates.append(directory / file_name)
        for config in candidates:
            if config.is_file():
                return cls._from_sdk_config(config)
        return None

    @classmethod
    def _from_sdk_config(cls, config: Path) -> "Workspace":
        try:
            data = json.loads(config.read_text())
            name = data["workspace_name"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidConfig(
                f"{config} is not a workspace config file ({type(exc).__name__}: {exc}); it needs "
                f'"workspace_name" (and "subscription_id", "resource_group"). Rewrite it with ws.write_config().'
            ) from None
        if data.get("workspace_path"):
            ws = cls._open(Path(data["workspace_path"]))
            return cls.get(ws.root, subscription_id=data.get("subscription_id"),
                           resource_group=data.get("resource_group"))
        return cls.get(str(name), subscription_id=data.get("subscription_id"),
                       resource_group=data.get("resource_group"))

    def write_config(self, path: str | os.PathLike | None = None, file_name: str | None = None) -> str:
        """Write ``<path>/.azureml/config.json`` (``path`` defaults to the current directory)
        naming this workspace, so ``Workspace.from_config()`` finds it from there; returns its path.

        Besides azureml-core's keys it records ``workspace_path`` (this workspace's directory)."""
        directory = Path(path).expanduser() if path is not None else Path.cwd()
        target = directory / SDK_CONFIG_DIR / (file_name or SDK_CONFIG_NAME)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {"subscription_id": self.subscription_id, "resource_group": self.resource_group,
                "workspace_name": self.name, "workspace_path": str(self.root)}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=4) + "\n")
        os.replace(tmp, target)
        return str(target)

    def get_details(self) -> dict:
        """The workspace's properties in azureml-core's keys (``id``, ``name``, ``location``,
        ``containerRegistry`` ...). ``containerRegistry`` is the registry's ARM id when images go
        to a cloud profile's registry; with the embedded store it is ``None``, as for an Azure
        workspace whose registry has not been made yet."""
        registry = None
        if self.container_registry.startswith("profile:"):
            from aml_core.profiles import CloudProfile

            profile = CloudProfile.load(self.container_registry.split(":", 1)[1])
            registry = (f"/subscriptions/{profile.subscription_id}/resourceGroups/{profile.resource_group}"
                        f"/providers/Microsoft.ContainerRegistry/registries/{profile.registry_name}")
        if self.subscription_id and self.resource_group:
            workspace_id = (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}")
        else:
            workspace_id = self.root.as_uri()
        return {
            "id": workspace_id,
            "name": self.name,
            "location": self.location,
            "type": "Microsoft.MachineLearningServices/workspaces",
            "friendlyName": self.name,
            "description": "",
            "containerRegistry": registry,
            "sku": "Basic",
            "tags": {},
            "workspaceRoot": str(self.root),
        }

    @property
    def _auth(self):
        """The ARM credential of the registry's cloud profile (azureml-core's private ``_auth``,
        which the 2018 guide passes to ``ContainerRegistryManagementClient``); ``None`` with the
        embedded store, or when the profile has no static token (then use azure-identity)."""
        if not self.container_registry.startswith("profile:"):
            return None
        from aml_core.credentials import StaticTokenCredential
        from aml_core.profiles import CloudProfile

        profile = CloudProfile.load(self.container_registry.split(":", 1)[1])
        return StaticTokenCredential(profile.arm_token) if profile.arm_token else None

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
        return self._from_data(self.root, data)

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

    def _ensure_schema(self, workspace_id: str) -> str:
        """Create the tables and record ``workspace_id`` unless an id is there; returns the id held."""
        conn = self.connect()
        try:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('workspace_id', ?)", (workspace_id,))
            return conn.execute("SELECT value FROM meta WHERE key = 'workspace_id'").fetchone()[0]
        finally:
            conn.close()

    def _damaged(self, what: str) -> WorkspaceDamaged:
        return WorkspaceDamaged(f"The workspace index {self.db_path} {what}. "
                                + _RECOVERY.format(backup=self.root / BACKUP_NAME))

    def _verify_database(self, config: dict) -> None:
        """Refuse an index that is missing, empty, not SQLite or another workspace's; add
        what an index from an older version lacks (the ``meta`` table and the id)."""
        try:
            with open(self.db_path, "rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            raise self._damaged("is missing") from None
        if not header:
            raise self._damaged("is empty (0 bytes): it lost every record")
        if header != _SQLITE_HEADER:
            raise self._damaged("is not an SQLite database")
        try:
            conn = self.connect()
            try:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not set(_TABLES) & tables:
                    raise self._damaged("holds none of the workspace's tables")
                stored = None
                if "meta" in tables:
                    row = conn.execute("SELECT value FROM meta WHERE key = 'workspace_id'").fetchone()
                    stored = row[0] if row else None
                expected = config.get("id")
                if stored is not None and expected is not None and stored != expected:
                    raise self._damaged(f"belongs to another workspace (its id is {stored}, this workspace's "
                                        f"is {expected})")
                if stored is None and expected is not None and "meta" in tables:
                    raise self._damaged(f"carries no workspace id, while {CONFIG_NAME} says {expected}: "
                                        f"it was made anew or belongs to another workspace")
                conn.executescript(_SCHEMA)  # tables a newer version added
                if stored is None or expected is None:  # a workspace from before ids: give it one
                    self._adopt_id(conn, stored or expected or str(uuid.uuid4()), config)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(f"cannot be read ({exc})") from None

    def _adopt_id(self, conn: sqlite3.Connection, workspace_id: str, config: dict) -> None:
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('workspace_id', ?)", (workspace_id,))
        if config.get("id") != workspace_id:
            path = self.root / CONFIG_NAME
            tmp = self.root / "tmp" / f".{CONFIG_NAME}.{os.getpid()}"
            tmp.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps({**config, "id": workspace_id}, indent=2) + "\n")
            os.replace(tmp, path)

    def _remove_dead_temporaries(self) -> None:
        """Remove what a process killed midway (a register, a config write) left in ``tmp/``."""
        try:
            entries = list((self.root / "tmp").iterdir())
        except FileNotFoundError:
            return
        for path in entries:
            match = _TEMP_WITH_PID.match(path.name)
            if match is None or _pid_alive(int(match.group(1))):
                continue
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def _backup(self) -> None:
        """Copy the index to ``backups/aml.db`` with SQLite's online backup API (a consistent
        snapshot even while other processes write), replacing the previous copy atomically."""
        target = self.root / BACKUP_NAME
        private_dir(target.parent)
        tmp = self.root / "tmp" / f".aml.db.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        source = self.connect()
        try:
            dest = sqlite3.connect(tmp)
            try:
                source.backup(dest)
            finally:
                dest.close()
            os.replace(tmp, target)
        finally:
            source.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    @classmethod
    def check(cls, path: str | os.PathLike) -> list[str]:
        """Every problem found in the workspace at ``path`` (``[]`` when healthy): the
        index's own state and SQLite integrity check, then every model's artifacts, present
        and matching their digests. Reads only."""
        root = Path(path).resolve()
        try:
            ws = cls.get(root)
        except WorkspaceDamaged as exc:
            return [str(exc)]
        problems = []
        with ws.reading() as db:
            result = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                problems.append(ws._damaged(f"fails SQLite's integrity check: {'; '.join(result[:5])}").args[0])
            rows = db.execute("SELECT name, version, record FROM models ORDER BY name, version").fetchall()
        for name, version, record in rows:
            for entry in json.loads(record).get("files") or []:
                problems.extend(ws._artifact_problem(f"{name}:{version}", entry))
        return problems

    def _artifact_problem(self, model: str, entry: dict) -> list[str]:
        digest = entry.get("digest", "")
        try:
            path = self.artifact_path(digest)
        except InvalidConfig:
            return [f"model {model}: file {entry.get('path')!r} has no valid digest ({digest!r})"]
        if not path.is_file():
            return [f"model {model}: the artifact of {entry.get('path')!r} ({digest}) is missing from "
                    f"{self.root / 'artifacts'}; register the model again from its source"]
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
        if f"sha256:{hasher.hexdigest()}" != digest:
            return [f"model {model}: the artifact of {entry.get('path')!r} at {path} does not match its digest "
                    f"{digest} (altered on disk); register the model again from its source"]
        return []

    @classmethod
    def restore(cls, path: str | os.PathLike) -> "Workspace":
        """Put the last backup of the index in place; the current ``aml.db`` (and its WAL)
        is kept as ``aml.db.damaged-<time>``. Returns the reopened workspace."""
        root = Path(path).resolve()
        backup = root / BACKUP_NAME
        if not (root / CONFIG_NAME).is_file():
            raise NotFound(f"No workspace at {root} (no {CONFIG_NAME}).")
        if not backup.is_file():
            raise NotFound(f"The workspace at {root} has no backup ({backup} is missing): it was made before "
                           f"backups were kept. Register its models again from their sources.")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        db = root / "aml.db"
        for suffix in ("", "-wal", "-shm"):
            current = Path(str(db) + suffix)
            if current.exists():
                os.replace(current, root / f"aml.db.damaged-{stamp}{suffix}")
        source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            tmp = root / "tmp" / f".aml.db.{os.getpid()}.restore"
            dest = sqlite3.connect(tmp)
            try:
                source.backup(dest)
            finally:
                dest.close()
        finally:
            source.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, db)
        return cls.get(root)

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
        self._backup()

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
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=f"artifact-{os.getpid()}-")
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
