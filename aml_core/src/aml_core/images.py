"""Packaging models as OCI images in the workspace's container registry.

``Model.package(ws, models, inference_config)`` and the older spelling
``ContainerImage.create(name=, models=, image_config=, workspace=)`` build an image in pure
Python (:mod:`aml_core.oci`): an app layer, the models at ``azureml-models/NAME/VERSION``,
the scoring runtime, and the environment recorded in the config so any engine can
materialise it. Images auto-version per name (``myimage:1``, ``myimage:2``).

Where images go is the workspace's container registry:

* ``embedded`` (the default): an OCI image layout per image name under
  ``<workspace>/registry/<name>``; ``image_location`` is ``oci:<dir>:<version>``, the
  transport syntax skopeo and podman read;
* ``profile:<name>``: the registry of a cloud profile (the emulator's, or ACR); the
  admin credentials are read over ARM's ``listCredentials``, exactly as the source
  documents do before deploying, unless ``AML_REGISTRY_USERNAME``/``AML_REGISTRY_PASSWORD``
  are set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Iterable

import attrs
import requests

from aml_core.environment import Environment
from aml_core.errors import AuthError, InvalidConfig, NotFound
from aml_core.inference import InferenceConfig
from aml_core.records import ImageRecord, ModelRecord, utcnow
from aml_core.serialization import image_from_dict, to_json
from aml_core.workspace import Workspace

IMAGE_NAME_RULE = "an image name is 1-64 characters of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: the base image a generated Dockerfile starts FROM when the environment names none
DEFAULT_DOCKER_BASE_IMAGE = "localhost/aml-python-base:latest"
ACR_API_VERSION = "2023-07-01"


def validate_image_name(name: object) -> str:
    if not isinstance(name, str) or not _IMAGE_NAME.match(name):
        raise InvalidConfig(f"Invalid image name {name!r}: {IMAGE_NAME_RULE}.")
    return name


@attrs.frozen
class ContainerRegistry:
    """Where an image lives and how to log in (``password`` is never shown)."""

    address: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


# -- the workspace's registry ----------------------------------------------------------------


def workspace_registry(workspace: Workspace) -> ContainerRegistry | None:
    """The registry images are pushed to, or ``None`` for the embedded layout store."""
    setting = workspace.container_registry
    if setting == "embedded":
        return None
    if not setting.startswith("profile:"):
        raise InvalidConfig(
            f"Workspace {workspace.name!r} names container registry {setting!r}; use 'embedded' or 'profile:NAME'."
        )
    from aml_core.profiles import CloudProfile

    profile = CloudProfile.load(setting.split(":", 1)[1])
    if not profile.registry_login_server:
        raise InvalidConfig(f"Cloud profile {profile.name!r} names no container registry.")
    user, password = os.environ.get("AML_REGISTRY_USERNAME"), os.environ.get("AML_REGISTRY_PASSWORD")
    if not (user and password):
        user, password = _list_credentials(profile)
    return ContainerRegistry(profile.registry_login_server, user, password)


def _list_credentials(profile) -> tuple[str, str]:
    if not profile.arm_token:
        raise AuthError(
            f"Cloud profile {profile.name!r} has no ARM token to read the registry's credentials with. "
            f"Set AML_REGISTRY_USERNAME and AML_REGISTRY_PASSWORD."
        )
    url = (
        f"{profile.arm_endpoint.rstrip('/')}/subscriptions/{profile.subscription_id}/resourceGroups/"
        f"{profile.resource_group}/providers/Microsoft.ContainerRegistry/registries/{profile.registry_name}"
        f"/listCredentials"
    )
    response = requests.post(
        url, params={"api-version": ACR_API_VERSION}, headers={"Authorization": f"Bearer {profile.arm_token}"},
        verify=profile.ca_bundle or True, timeout=30,
    )
    if response.status_code != 200:
        raise AuthError(
            f"Reading the credentials of registry {profile.registry_name!r} failed ({response.status_code}): "
            f"{response.text[:300]}. Is the emulator running (`aml emulator start`)?"
        )
    body = response.json()
    return body["username"], body["passwords"][0]["value"]


# -- building ----------------------------------------------------------------------------------


def _environment_spec(env: Environment):
    from aml_core.oci import EnvironmentSpec

    conda = env.python.conda_dependencies
    # user-managed: the base image (or this machine) provides the packages; install none
    managed = not env.python.user_managed_dependencies
    return EnvironmentSpec(
        name=env.name,
        python_version=conda.python_version,
        pip_requirements=tuple(conda.pip_requirements()) if managed else (),
        conda_dependencies=tuple(conda.conda_only()),
        environment_variables=dict(env.environment_variables),
        hash=env.hash,
    )


def package_spec(workspace: Workspace, models: Iterable[ModelRecord], inference_config: InferenceConfig,
                 labels: dict[str, str] | None = None):
    """The :class:`aml_core.oci.PackageSpec` of models + entry script + environment."""
    from aml_core.oci import AppSpec, ModelFiles, PackageSpec

    model_files = []
    for record in models:
        if record.is_folder:
            files = {f"{record.root}/{e.path}": workspace.artifact_path(e.digest) for e in record.files}
        else:
            files = {record.root: workspace.artifact_path(record.files[0].digest)}
        model_files.append(ModelFiles(name=record.name, version=record.version, files=files))
    return PackageSpec(
        app=AppSpec(entry_script=inference_config.entry_script_relative, source_directory=inference_config.app_directory),
        environment=_environment_spec(inference_config.environment),
        models=tuple(model_files),
        labels=labels or {},
    )


def _allocate(workspace: Workspace, name: str) -> int:
    with workspace.transaction() as db:
        row = db.execute("SELECT MAX(version) FROM images WHERE name = ?", (name,)).fetchone()
        version = (row[0] or 0) + 1
        placeholder = ImageRecord(name=name, version=version, details={"state": "Creating", "created": utcnow()})
        db.execute("INSERT INTO images (name, version, record) VALUES (?, ?, ?)", (name, version, to_json(placeholder)))
    return version


def _save(workspace: Workspace, record: ImageRecord) -> None:
    with workspace.transaction() as db:
        db.execute("UPDATE images SET record = ? WHERE name = ? AND version = ?",
                   (to_json(record), record.name, record.version))


def build_and_store(workspace: Workspace, models: Iterable[ModelRecord], inference_config: InferenceConfig,
                    image_name: str, image_label: str | None = None, generate_dockerfile: bool = False,
                    tags: dict[str, str] | None = None, description: str | None = None,
                    progress=lambda text: None, finish=None) -> ImageRecord:
    """Build, version and store an image (or a Dockerfile build context).

    :param finish: ``(image) -> image`` applied to the built scoring image before it is
        stored, for packagers that add to it (e.g. a function app around the scoring script).
    """
    from aml_core.oci import RegistryClient, build_image, write_build_context, write_layout

    validate_image_name(image_name)
    models = tuple(models)
    if not models:
        raise InvalidConfig("Packaging needs at least one model.")
    inference_config.validate_entry_script()
    spec = package_spec(workspace, models, inference_config,
                        labels={"org.opencontainers.image.title": image_name, **({"aml.label": image_label} if image_label else {})})
    version = _allocate(workspace, image_name)
    details: dict[str, Any] = {
        "state": "Creating", "created": utcnow(), "models": [m.id for m in models],
        "environment": inference_config.environment.name, "environment_hash": inference_config.environment.hash,
        "entry_script": inference_config.entry_script_relative, "tags": dict(tags or {}),
        "description": description, "label": image_label,
    }
    try:
        if generate_dockerfile:
            context = workspace.root / "packages" / f"{image_name}-{version}"
            shutil.rmtree(context, ignore_errors=True)
            progress(f"Writing a Dockerfile build context to {context}")
            base = inference_config.environment.docker.base_image or DEFAULT_DOCKER_BASE_IMAGE
            write_build_context(spec, context, base_image=base)
            record = ImageRecord(name=image_name, version=version, context_dir=str(context),
                                 details={**details, "state": "Succeeded", "kind": "DockerBuildContext"})
        else:
            progress("Building the image layers (app, models, scoring runtime)")
            image = build_image(spec)
            if finish is not None:
                image = finish(image)
            registry = workspace_registry(workspace)
            if registry is None:
                layout = workspace.root / "registry" / image_name
                write_layout(image, layout, tag=str(version))
                location = f"oci:{layout}:{version}"
            else:
                progress(f"Pushing {image_name}:{version} to {registry.address}")
                client = RegistryClient(registry.address, username=registry.username, password=registry.password)
                client.push_image(image_name, image, tags=(str(version),))
                location = f"{registry.address}/{image_name}:{version}"
            progress(f"Image {image_name}:{version} is {image.digest}")
            record = ImageRecord(name=image_name, version=version, digest=image.digest, location=location,
                                 details={**details, "state": "Succeeded", "kind": "DockerImage"})
    except BaseException as exc:
        _save(workspace, ImageRecord(name=image_name, version=version,
                                     details={**details, "state": "Failed", "error": str(exc)}))
        raise
    _save(workspace, record)
    return record


def deployment_image(workspace: Workspace, spec: Any, progress=lambda text: None) -> tuple[str, ContainerRegistry | None]:
    """The image a deployment runs and the registry credentials to pull it with: the
    spec's own image (``deploy_from_image``), or one packaged now from its models, entry
    script and environment, named after the service.

    :raises InvalidConfig: the image was not built (a Dockerfile build context, or failed).
    """
    if spec.image is not None:
        record = spec.image
        if not record.location or record.details.get("state") != "Succeeded":
            raise InvalidConfig(
                f"Image {record.name}:{record.version} cannot be deployed: it is "
                f"{record.details.get('state', 'not built')}"
                f"{' (a Dockerfile build context, not an image)' if record.context_dir else ''}. "
                f"Package it with Model.package(...) first.")
        progress(f"Deploying image {record.name}:{record.version} ({record.location})")
        return record.location, workspace_registry(workspace)
    record = build_and_store(workspace, spec.models, spec.inference_config, image_name=spec.name, progress=progress)
    return record.location, workspace_registry(workspace)


def store_image(workspace: Workspace, image_name: str, image: Any, details: dict[str, Any],
                progress=lambda text: None) -> ImageRecord:
    """Version and store an image a provider built itself (an :class:`aml_core.oci.Image`,
    e.g. from :func:`aml_core.oci.build_program_image`): pushed to the workspace's registry,
    or written to its embedded OCI layout, exactly as packaged scoring images are."""
    from aml_core.oci import RegistryClient, write_layout

    validate_image_name(image_name)
    version = _allocate(workspace, image_name)
    details = {"created": utcnow(), **details}
    try:
        registry = workspace_registry(workspace)
        if registry is None:
            layout = workspace.root / "registry" / image_name
            write_layout(image, layout, tag=str(version))
            location = f"oci:{layout}:{version}"
        else:
            progress(f"Pushing {image_name}:{version} to {registry.address}")
            client = RegistryClient(registry.address, username=registry.username, password=registry.password)
            client.push_image(image_name, image, tags=(str(version),))
            location = f"{registry.address}/{image_name}:{version}"
        progress(f"Image {image_name}:{version} is {image.digest}")
    except BaseException as exc:
        _save(workspace, ImageRecord(name=image_name, version=version,
                                     details={**details, "state": "Failed", "error": str(exc)}))
        raise
    record = ImageRecord(name=image_name, version=version, digest=image.digest, location=location,
                         details={**details, "state": "Succeeded"})
    _save(workspace, record)
    return record


# -- the public handles ------------------------------------------------------------------------


class Image:
    """A packaged image version. ``Image(ws, name)`` is the latest; ``version=`` picks one."""

    def __init__(self, workspace: Workspace, name: str | None = None, id: str | None = None,
                 version: int | None = None) -> None:
        if id is not None:
            name, _, ver = id.partition(":")
            version = int(ver) if ver else version
        if not name:
            raise InvalidConfig("Image(): give a name (and optionally version) or an id 'name:version'.")
        with workspace.reading() as db:
            if version is None:
                row = db.execute("SELECT record FROM images WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = db.execute("SELECT record FROM images WHERE name = ? AND version = ?", (name, int(version))).fetchone()
        if row is None:
            raise NotFound(f"Image {name}{':' + str(version) if version else ''} does not exist. See `aml image list`.")
        self.workspace = workspace
        self._record = image_from_dict(json.loads(row["record"]))

    @classmethod
    def _from_record(cls, workspace: Workspace, record: ImageRecord) -> "Image":
        image = cls.__new__(cls)
        image.workspace = workspace
        image._record = record
        return image

    name = property(lambda self: self._record.name)
    version = property(lambda self: self._record.version)
    id = property(lambda self: f"{self._record.name}:{self._record.version}")
    image_location = property(lambda self: self._record.location)
    location = image_location
    digest = property(lambda self: self._record.digest)
    creation_state = property(lambda self: self._record.details.get("state"))
    tags = property(lambda self: dict(self._record.details.get("tags") or {}))
    record = property(lambda self: self._record)

    def __repr__(self) -> str:
        return f"Image(name={self.name!r}, version={self.version}, location={self.image_location!r}, digest={self.digest!r})"

    def serialize(self) -> dict[str, Any]:
        from aml_core.serialization import to_dict

        return to_dict(self._record)

    @staticmethod
    def create(workspace: Workspace, name: str, models: Iterable[Any], image_config: Any) -> "Image":
        """azureml-core's ``Image.create``. A target's own image configuration (one with a
        ``target_kind``, such as ``AccelContainerImage.image_configuration()``) is packaged by
        that target's provider (hook ``aml_package``); a ContainerImage configuration as
        :meth:`ContainerImage.create` does."""
        from aml_core.model import model_record
        from aml_core.plugins import default_hooks
        from aml_core.records import PackageRequest

        kind = getattr(image_config, "target_kind", None)
        if kind is None:
            return ContainerImage.create(workspace, name, models, image_config)
        request = PackageRequest(kind=kind, models=tuple(model_record(m) for m in models),
                                 inference_config=image_config, image_name=name)
        return Image._from_record(workspace, default_hooks().package(workspace=workspace, request=request))

    def wait_for_creation(self, show_output: bool = False) -> None:
        """Images are built synchronously; kept for azureml-core compatibility."""
        if show_output:
            print(f"Image {self.id}: {self.creation_state}")

    @staticmethod
    def list(workspace: Workspace, image_name: str | None = None, **_: Any) -> list["Image"]:
        with workspace.reading() as db:
            if image_name is None:
                rows = db.execute("SELECT record FROM images ORDER BY name, version DESC").fetchall()
            else:
                rows = db.execute("SELECT record FROM images WHERE name = ? ORDER BY version DESC", (image_name,)).fetchall()
        return [Image._from_record(workspace, image_from_dict(json.loads(r["record"]))) for r in rows]

    def delete(self) -> None:
        """Forget this version and remove it from the registry (other versions stay)."""
        record = self._record
        if record.location and record.location.startswith("oci:"):
            from aml_core.oci import remove_from_layout

            remove_from_layout(Path(record.location[4:].rsplit(":", 1)[0]), str(record.version))
        elif record.location and record.digest:
            registry = workspace_registry(self.workspace)
            if registry is not None:
                from aml_core.oci import RegistryClient

                RegistryClient(registry.address, username=registry.username,
                               password=registry.password).delete_manifest(record.name, record.digest)
        if record.context_dir:
            shutil.rmtree(record.context_dir, ignore_errors=True)
        with self.workspace.transaction() as db:
            db.execute("DELETE FROM images WHERE name = ? AND version = ?", (record.name, record.version))


class ModelPackage(Image):
    """What ``Model.package`` returns: an image, or a Dockerfile build context."""

    def get_container_registry(self) -> ContainerRegistry:
        registry = workspace_registry(self.workspace)
        if registry is None:
            return ContainerRegistry(str(self.workspace.root / "registry"))
        return registry

    def save(self, output_directory: str | os.PathLike) -> str:
        """Copy the generated build context (``generate_dockerfile=True``) to a folder."""
        if not self._record.context_dir:
            raise InvalidConfig("save() needs a package made with generate_dockerfile=True.")
        target = Path(output_directory)
        shutil.copytree(self._record.context_dir, target, dirs_exist_ok=True)
        return str(target)


def package(workspace: Workspace, models: Iterable[Any], inference_config: InferenceConfig | None,
            generate_dockerfile: bool = False, image_name: str | None = None,
            image_label: str | None = None) -> ModelPackage:
    from aml_core.model import model_record

    if inference_config is None:
        raise InvalidConfig("Model.package needs an InferenceConfig with an Environment.")
    record = build_and_store(workspace, [model_record(m) for m in models], inference_config,
                             image_name or "package", image_label, generate_dockerfile)
    return ModelPackage._from_record(workspace, record)


# -- the older ContainerImage spelling ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class ContainerImageConfig:
    execution_script: str
    runtime: str = "python"
    conda_file: str | None = None
    docker_file: str | None = None
    source_directory: str | None = None
    dependencies: tuple[str, ...] = ()
    enable_gpu: bool = False
    tags: dict[str, str] = attrs.field(factory=dict)
    description: str | None = None
    base_image: str | None = None

    def inference_config(self) -> InferenceConfig:
        if self.docker_file:
            raise InvalidConfig("docker_file steps are not supported; list packages in conda_file instead.")
        if self.enable_gpu:
            raise InvalidConfig("enable_gpu images are not supported by the local engines.")
        return InferenceConfig(entry_script=self.execution_script, runtime=self.runtime, conda_file=self.conda_file,
                               source_directory=self.source_directory, base_image=self.base_image,
                               description=self.description)


class ContainerImage(Image):
    """azureml-core's older image API: ``image_configuration`` + ``create``."""

    @staticmethod
    def image_configuration(execution_script: str, runtime: str = "python", conda_file: str | None = None,
                            docker_file: str | None = None, schema_file: str | None = None,
                            dependencies: Iterable[str] | None = None, enable_gpu: bool = False,
                            tags: dict | None = None, properties: dict | None = None,
                            description: str | None = None, base_image: str | None = None,
                            source_directory: str | None = None, **_: Any) -> ContainerImageConfig:
        if runtime not in ("python",):
            raise InvalidConfig(f"runtime {runtime!r} is not supported; use 'python'.")
        config = ContainerImageConfig(
            execution_script=execution_script, runtime=runtime, conda_file=conda_file, docker_file=docker_file,
            source_directory=source_directory, dependencies=tuple(dependencies or ()), enable_gpu=enable_gpu,
            tags={str(k): str(v) for k, v in (tags or {}).items()}, description=description, base_image=base_image,
        )
        config.inference_config()  # validate now, as azureml-core does
        return config

    @staticmethod
    def create(workspace: Workspace, name: str, models: Iterable[Any], image_config: ContainerImageConfig) -> "ContainerImage":
        from aml_core.model import model_record

        record = build_and_store(workspace, [model_record(m) for m in models], image_config.inference_config(),
                                 name, tags=image_config.tags, description=image_config.description)
        return ContainerImage._from_record(workspace, record)
