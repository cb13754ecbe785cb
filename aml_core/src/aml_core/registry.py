"""The embedded model registry: the core's built-in ``aml_register`` implementation.

Models live in the workspace: file contents in the artifact store (by digest), one row per
version in SQLite. Registering copies every file into the artifact store first and then
inserts the row in one ``BEGIN IMMEDIATE`` transaction that also picks the next version,
so a crash never leaves a half-written model and concurrent registrations of one name get
distinct consecutive versions. Orphaned artifacts from an interrupted register are harmless
(they are reused by content on the next attempt).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import attrs

from aml_core.errors import Conflict, InvalidConfig, NotFound
from aml_core.hookspecs import hookimpl
from aml_core.records import FileEntry, ModelRecord, RegisterRequest
from aml_core.serialization import model_from_dict, to_json
from aml_core.workspace import Workspace

MODEL_NAME_RULE = (
    "a model name is 1-255 characters: letters, digits, '-', '_' and '.', starting with a letter or digit"
)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def validate_model_name(name: object) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise InvalidConfig(f"Invalid model name {name!r}: {MODEL_NAME_RULE}.")
    return name


def _collect_files(root: Path) -> list[tuple[Path, str, bool]]:
    """(absolute source, relative POSIX path, executable) for every file under a folder.

    Symbolic links are followed only when they stay inside the folder; a link that leaves
    it (to ``~/.ssh``, ``/etc`` ...) is refused, never dereferenced.
    """
    found = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if target != real_root and real_root not in target.parents:
                    raise InvalidConfig(
                        f"The model folder holds a symbolic link that leaves it: {rel} -> {os.readlink(path)}. "
                        f"Copy the file it points to into the folder instead."
                    )
                if target.is_dir():
                    raise InvalidConfig(
                        f"The model folder holds a symbolic link to a folder: {rel}. Replace it with the folder itself."
                    )
                found.append((target, rel, bool(target.stat().st_mode & stat.S_IXUSR)))
            elif name in filenames:
                mode = path.lstat().st_mode
                if not stat.S_ISREG(mode):
                    raise InvalidConfig(f"The model folder holds {rel}, which is not a regular file (device, FIFO or socket).")
                found.append((path, rel, bool(mode & stat.S_IXUSR)))
    return found


def store_model(workspace: Workspace, request: RegisterRequest) -> ModelRecord:
    validate_model_name(request.name)
    source = Path(request.path)
    if not source.exists():
        raise InvalidConfig(f"model_path {str(source)!r} does not exist. Pass the path of a model file or folder.")
    if source.is_dir():
        sources = _collect_files(source)
        if not sources:
            raise InvalidConfig(f"The model folder {str(source)!r} is empty.")
    else:
        sources = [(source, source.name, bool(source.stat().st_mode & stat.S_IXUSR))]
    entries = []
    for path, rel, executable in sources:
        with open(path, "rb") as stream:
            digest, size = workspace.put_artifact(stream)
        entries.append(FileEntry(path=rel, digest=digest, size=size, executable=executable))
    with workspace.transaction() as db:
        row = db.execute("SELECT MAX(version) FROM models WHERE name = ?", (request.name,)).fetchone()
        version = (row[0] or 0) + 1
        record = ModelRecord(
            name=request.name,
            version=version,
            root=source.name,
            is_folder=source.is_dir(),
            files=tuple(entries),
            description=request.description,
            tags=dict(request.tags),
            properties=dict(request.properties),
            model_framework=request.model_framework,
        )
        db.execute("INSERT INTO models (name, version, record) VALUES (?, ?, ?)", (record.name, version, to_json(record)))
    return record


@hookimpl
def aml_register(workspace, request):
    if workspace.backend != "embedded":
        return None
    return store_model(workspace, request)


# -- queries and edits used by aml_core.model ------------------------------------------


def get_model(workspace: Workspace, name: str, version: int | None = None) -> ModelRecord:
    with workspace.reading() as db:
        if version is None:
            row = db.execute(
                "SELECT record FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
        else:
            row = db.execute("SELECT record FROM models WHERE name = ? AND version = ?", (name, int(version))).fetchone()
    if row is None:
        which = f"{name}:{version}" if version is not None else name
        raise NotFound(f"Model {which} is not registered in workspace {workspace.name!r}. See `aml model list`.")
    return model_from_dict(json.loads(row["record"]))


def list_models(workspace: Workspace, name: str | None = None) -> list[ModelRecord]:
    with workspace.reading() as db:
        if name is None:
            rows = db.execute("SELECT record FROM models ORDER BY name, version").fetchall()
        else:
            rows = db.execute("SELECT record FROM models WHERE name = ? ORDER BY version", (name,)).fetchall()
    return [model_from_dict(json.loads(r["record"])) for r in rows]


def edit_model(workspace: Workspace, record: ModelRecord, **changes) -> ModelRecord:
    with workspace.transaction() as db:
        row = db.execute(
            "SELECT record FROM models WHERE name = ? AND version = ?", (record.name, record.version)
        ).fetchone()
        if row is None:
            raise NotFound(f"Model {record.id} no longer exists.")
        current = model_from_dict(json.loads(row["record"]))
        updated = attrs.evolve(current, **{k: fn(current) for k, fn in changes.items()})
        db.execute(
            "UPDATE models SET record = ? WHERE name = ? AND version = ?",
            (to_json(updated), record.name, record.version),
        )
    return updated


def services_using(db, model_id: str) -> list[str]:
    users = []
    for row in db.execute("SELECT name, record FROM services"):
        if model_id in json.loads(row["record"]).get("models", []):
            users.append(row["name"])
    return users


def delete_model(workspace: Workspace, record: ModelRecord) -> None:
    with workspace.transaction() as db:
        users = services_using(db, record.id)
        if users:
            raise Conflict(
                f"Model {record.id} is used by service(s) {', '.join(sorted(users))}. "
                f"Delete or update those services first."
            )
        db.execute("DELETE FROM models WHERE name = ? AND version = ?", (record.name, record.version))
