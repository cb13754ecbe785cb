"""``Model``: register, find, download, tag and deploy models (azureml-core's vocabulary)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from aml_core import registry
from aml_core.errors import InvalidConfig, NotFound
from aml_core.inference import InferenceConfig  # re-exported: azureml.core.model has it too
from aml_core.records import ModelRecord, RegisterRequest
from aml_core.workspace import Workspace


def _str_dict(value: dict | None, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidConfig(f"{what} must be a dict of strings, got {type(value).__name__}.")
    return {str(k): str(v) for k, v in value.items()}


__all__ = ["InferenceConfig", "Model"]


def _tags(value: dict | list | tuple | None) -> dict[str, str]:
    """Tags as azureml-core took them: a dict, or (the 2018 SDK's form, still in its guides)
    a list of strings, each stored as a tag with an empty value so ``tags=['0.1']`` filters
    find it."""
    if isinstance(value, (list, tuple)):
        bad = [t for t in value if not isinstance(t, str)]
        if bad:
            raise InvalidConfig(f"tags given as a list must be strings, got {bad[0]!r}; or pass a dict of strings.")
        return {t: "" for t in value}
    return _str_dict(value, "tags")


def _matches(mapping: dict[str, str], filters: Iterable[Any] | None) -> bool:
    """azureml-core filter form: ``['key', ['key2', 'value']]``."""
    for item in filters or ():
        if isinstance(item, (list, tuple)):
            key, value = item
            if mapping.get(key) != str(value):
                return False
        elif item not in mapping:
            return False
    return True


class Model:
    """A registered model version.

    ``Model(ws, "name")`` is the latest version; ``Model(ws, "name", version=2)`` a given
    one; ``Model(ws, id="name:2")`` the same by id.
    """

    def __init__(self, workspace: Workspace, name: str | None = None, id: str | None = None,
                 tags: Any = None, properties: Any = None, version: int | None = None) -> None:
        if id is not None:
            name, _, ver = id.partition(":")
            if ver and not ver.isdigit():
                raise InvalidConfig(f"Model id {id!r} is not NAME:VERSION with a whole-number version.")
            version = int(ver) if ver else version
        if not name:
            raise InvalidConfig("Model(): give a name (and optionally version) or an id 'name:version'.")
        self.workspace = workspace
        self._record = registry.get_model(workspace, name, version)
        if tags is not None or properties is not None:
            if not (_matches(self._record.tags, tags) and _matches(self._record.properties, properties)):
                raise NotFound(f"Model {self._record.id} does not have the requested tags or properties.")

    @classmethod
    def _from_record(cls, workspace: Workspace, record: ModelRecord) -> "Model":
        model = cls.__new__(cls)
        model.workspace = workspace
        model._record = record
        return model

    # -- attributes --------------------------------------------------------------------

    record = property(lambda self: self._record)
    name = property(lambda self: self._record.name)
    version = property(lambda self: self._record.version)
    id = property(lambda self: self._record.id)
    tags = property(lambda self: dict(self._record.tags))
    properties = property(lambda self: dict(self._record.properties))
    description = property(lambda self: self._record.description)
    created_time = property(lambda self: self._record.created_time)
    model_framework = property(lambda self: self._record.model_framework)

    def __repr__(self) -> str:
        return f"Model(workspace={self.workspace.name!r}, name={self.name!r}, id={self.id!r}, version={self.version}, tags={self.tags})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.workspace.root == self.workspace.root and other.id == self.id

    def __hash__(self) -> int:
        return hash((self.workspace.root, self.id))

    def serialize(self) -> dict[str, Any]:
        from aml_core.serialization import to_dict

        return to_dict(self._record)

    # -- registry ----------------------------------------------------------------------

    @staticmethod
    def register(workspace: Workspace, model_path: str | os.PathLike, model_name: str, tags: dict | list | None = None,
                 properties: dict | None = None, description: str | None = None,
                 model_framework: str | None = None, **unsupported: Any) -> "Model":
        """Register a file or folder; the same name gets the next version.

        ``tags`` is a dict, or a list of strings (the early SDK's form): ``["0.1"]`` is the
        tag ``0.1`` with an empty value."""
        from aml_core.plugins import default_hooks

        ignored = [k for k, v in unsupported.items() if v is not None]
        if ignored:
            raise InvalidConfig(f"Model.register: {', '.join(sorted(ignored))} not supported by this workspace.")
        request = RegisterRequest(
            name=registry.validate_model_name(model_name),
            path=str(Path(model_path).resolve()),
            description=description,
            tags=_tags(tags),
            properties=_str_dict(properties, "properties"),
            model_framework=model_framework,
        )
        record = default_hooks().register(workspace=workspace, request=request)
        return Model._from_record(workspace, record)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None, tags: Any = None, properties: Any = None,
             latest: bool = False, **_: Any) -> list["Model"]:
        """Registered models, filtered by name, tags and properties; ``latest`` keeps one per name."""
        records = [
            r for r in registry.list_models(workspace, name)
            if _matches(r.tags, tags) and _matches(r.properties, properties)
        ]
        if latest:
            newest: dict[str, ModelRecord] = {}
            for r in records:
                if r.name not in newest or r.version > newest[r.name].version:
                    newest[r.name] = r
            records = list(newest.values())
        records.sort(key=lambda r: (r.name, -r.version))
        return [Model._from_record(workspace, r) for r in records]

    def download(self, target_dir: str | os.PathLike = ".", exist_ok: bool = False, exists_ok: bool | None = None) -> str:
        """Copy the model's files into ``target_dir``; returns the path of the file or folder."""
        if exists_ok is not None:
            exist_ok = exists_ok
        target = Path(target_dir).resolve() / self._record.root
        if target.exists() and not exist_ok:
            raise InvalidConfig(f"{target} already exists. Pass exist_ok=True to overwrite it.")
        if self._record.is_folder:
            staging = target.parent / f".{target.name}.download-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                materialize(self.workspace, self._record, staging)
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            entry = self._record.files[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.download-{os.getpid()}"
            shutil.copyfile(self.workspace.artifact_path(entry.digest), tmp)
            os.chmod(tmp, 0o755 if entry.executable else 0o644)
            os.replace(tmp, target)
        return str(target)

    def add_tags(self, tags: dict) -> None:
        new = _str_dict(tags, "tags")
        self._record = registry.edit_model(self.workspace, self._record, tags=lambda r: {**r.tags, **new})

    def remove_tags(self, tags: Iterable[str]) -> None:
        drop = set(tags)
        self._record = registry.edit_model(
            self.workspace, self._record, tags=lambda r: {k: v for k, v in r.tags.items() if k not in drop}
        )

    def add_properties(self, properties: dict) -> None:
        new = _str_dict(properties, "properties")
        clash = [k for k, v in new.items() if k in self._record.properties and self._record.properties[k] != v]
        if clash:
            raise InvalidConfig(
                f"Properties cannot be changed once set (use tags for mutable metadata): {', '.join(sorted(clash))}."
            )
        self._record = registry.edit_model(self.workspace, self._record, properties=lambda r: {**r.properties, **new})

    def delete(self) -> None:
        """Delete this version; refused while a service uses it."""
        registry.delete_model(self.workspace, self._record)

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None) -> str:
        """Inside a scoring service: the path of a model under ``AZUREML_MODEL_DIR``."""
        base = os.environ.get("AZUREML_MODEL_DIR")
        if not base:
            raise NotFound("AZUREML_MODEL_DIR is not set: get_model_path works inside a deployed service.")
        base_path = Path(base)
        # One model: AZUREML_MODEL_DIR is .../azureml-models/NAME/VERSION; several: .../azureml-models.
        if base_path.parent.name == model_name and (version is None or base_path.name == str(version)):
            version_dir = base_path
        else:
            root = base_path / model_name
            versions = sorted((p for p in root.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
            if version is not None:
                versions = [p for p in versions if p.name == str(version)]
            if not versions:
                raise NotFound(f"Model {model_name}{':' + str(version) if version else ''} is not under {base}.")
            version_dir = versions[-1]
        entries = list(version_dir.iterdir())
        return str(entries[0]) if len(entries) == 1 else str(version_dir)

    # -- deploy / package (implemented in webservice/images) -----------------------------

    @staticmethod
    def package(workspace: Workspace, models: list["Model"], inference_config=None,
                generate_dockerfile: bool = False, image_name: str | None = None,
                image_label: str | None = None):
        """Package models + entry script + environment as an image in the workspace's registry."""
        from aml_core.images import package

        return package(workspace, models, inference_config, generate_dockerfile, image_name, image_label)

    @staticmethod
    def deploy(workspace: Workspace, name: str, models: list["Model"], inference_config=None,
               deployment_config=None, deployment_target=None, overwrite: bool = False,
               show_output: bool = False):
        """Deploy models as a web service; returns its :class:`~aml_core.webservice.Webservice`."""
        from aml_core.webservice import deploy

        return deploy(workspace, name, models, inference_config, deployment_config, deployment_target,
                      overwrite=overwrite, show_output=show_output)


def model_record(model: Any) -> ModelRecord:
    """The :class:`ModelRecord` of a registered :class:`Model` (or of a record itself), for
    code that accepts either, such as providers taking ``models=`` arguments."""
    if isinstance(model, ModelRecord):
        return model
    record = getattr(model, "record", None)
    if isinstance(record, ModelRecord):
        return record
    raise InvalidConfig(f"Expected a registered Model, got {type(model).__name__}.")


def materialize(workspace: Workspace, record: ModelRecord, dest: Path) -> Path:
    """Write a model's files under ``dest`` (the folder's contents, or the single file)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in record.files:
        rel = Path(entry.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise InvalidConfig(f"Model {record.id} holds an unsafe path {entry.path!r}.")
        workspace.copy_artifact(entry.digest, dest / rel, executable=entry.executable)
    return dest


def model_dir_layout(workspace: Workspace, records: Iterable[ModelRecord], base: Path) -> str:
    """Lay models out as the runtime expects: ``azureml-models/NAME/VERSION/<root>``.

    Returns the value of ``AZUREML_MODEL_DIR``: the version folder for one model, the
    ``azureml-models`` folder for several.
    """
    records = list(records)
    root = base / "azureml-models"
    for record in records:
        version_dir = root / record.name / str(record.version)
        target = version_dir / record.root if record.is_folder else version_dir
        materialize(workspace, record, target)
    if len(records) == 1:
        return str(root / records[0].name / str(records[0].version))
    return str(root)
