"""``AccelContainerImage``: the image an FPGA node runs, built with the core's OCI packaging.

The image holds the converted models (``model.onnx`` + ``accelerator.json`` each) under
``/var/azureml-app/azureml-models/<name>/<version>/``, the sources of ``aml_core`` and
``aml_provider_fpga`` under ``/opt/aml/lib``, and the requirements in its labels. Its entrypoint
is the accelerator runtime, ``python3 -m aml_provider_fpga.accelerator``, serving every model
over gRPC on ``$AML_PORT`` (default 5001) with the accelerator's numerics. Keys come from the
container's ``AML_SCORING_KEYS_FILE`` and are checked in the gRPC server (docs/fpga.md).

``Image.create(ws, name, [converted], AccelContainerImage.image_configuration())`` reaches
:func:`package` through the ``aml_package`` hook of the ``fpga`` target kind.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import attrs
from aml_core.images import Image, store_image
from aml_core.oci import EnvironmentSpec, ProgramSpec, build_program_image
from aml_core.records import ImageRecord, ModelRecord, PackageRequest

from aml_core import InvalidConfig, Workspace
from aml_provider_fpga.converter import GRAPH, MANIFEST

KIND = "fpga"
#: the port the accelerator runtime listens on inside its container
PORT = 5001
MODELS_ROOT = "/var/azureml-app/azureml-models"
#: what the runtime imports beyond aml-core's own requirements
REQUIREMENTS = ("attrs>=23.1", "numpy>=1.26", "onnx>=1.15", "ml-dtypes>=0.5", "grpcio>=1.60",
                "protobuf>=4.25", "pillow>=10")
ENTRYPOINT = (
    "/bin/sh", "-c",
    ('exec python3 -m aml_provider_fpga.accelerator --host "${AML_HOST:-0.0.0.0}" '
     f'--port "${{AML_PORT:-{PORT}}}" "$@"'),
    "aml-fpga",  # $0 of the shell; the container's args follow as "$@"
)
#: the image's label naming the target kind it was packaged for
LABEL_TARGET_KIND = "org.aml.target-kind"


@attrs.frozen(kw_only=True)
class AccelImageConfiguration:
    """What ``AccelContainerImage.image_configuration()`` returns. There is no entry script:
    the accelerator runtime serves the converted models itself."""

    #: the target kind whose provider packages and deploys this configuration
    target_kind: ClassVar[str] = KIND
    tags: dict[str, str] = attrs.field(factory=dict)
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target_kind": KIND, "tags": dict(self.tags), "description": self.description}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccelImageConfiguration:
        return cls(tags=dict(data.get("tags") or {}), description=data.get("description"))


class AccelContainerImage(Image):
    """azureml-accel-models' image class: ``image_configuration()`` then ``Image.create``."""

    @staticmethod
    def image_configuration(tags: dict | None = None, properties: dict | None = None,
                            description: str | None = None) -> AccelImageConfiguration:
        return AccelImageConfiguration(tags={str(k): str(v) for k, v in (tags or {}).items()},
                                       description=description)

    @staticmethod
    def create(workspace: Workspace, name: str, models, image_config) -> Image:
        return Image.create(workspace, name, models, image_config)


def _version() -> str:
    try:
        return metadata.version("aml-provider-fpga")
    except metadata.PackageNotFoundError:
        return "0"


def _package_dir(module: str) -> Path:
    return Path(__import__(module).__file__).parent


def model_dir(record: ModelRecord) -> str:
    """Where a converted model's folder is inside the image."""
    return f"{MODELS_ROOT}/{record.name}/{record.version}/{record.root}"


def _model_files(workspace: Workspace, record: ModelRecord) -> dict[str, Path]:
    names = {entry.path for entry in record.files} if record.is_folder else set()
    if not {GRAPH, MANIFEST} <= names:
        raise InvalidConfig(
            f"model {record.name}:{record.version} is not a converted accelerator model (it has "
            f"no {GRAPH} + {MANIFEST}); convert it first with AccelOnnxConverter."
            f"convert_onnx_model(ws, model, input_tensors, output_tensors) and package "
            f"conversion.result")
    return {f"{model_dir(record)}/{entry.path}": workspace.artifact_path(entry.digest)
            for entry in record.files}


def program_spec(workspace: Workspace, models: tuple[ModelRecord, ...], title: str) -> ProgramSpec:
    """The :class:`~aml_core.oci.ProgramSpec` of an accelerator image serving ``models``."""
    if not models:
        raise InvalidConfig("an accelerator image needs at least one converted model")
    files: dict[str, Path] = {}
    for record in models:
        files.update(_model_files(workspace, record))
    dirs = ":".join(model_dir(record) for record in models)
    return ProgramSpec(
        title=title,
        packages=(_package_dir("aml_core"), _package_dir("aml_provider_fpga")),
        environment=EnvironmentSpec(name="aml-fpga", pip_requirements=REQUIREMENTS,
                                    environment_variables={"AML_FPGA_MODEL_DIRS": dirs}),
        entrypoint=ENTRYPOINT,
        port=PORT,
        files=files,
        path_env=("AML_FPGA_MODEL_DIRS",),
        labels={"org.opencontainers.image.version": _version(), LABEL_TARGET_KIND: KIND},
    )


def package(workspace: Workspace, request: PackageRequest, progress=lambda text: None) -> ImageRecord:
    """Build the accelerator image of ``request.models`` and store it in the workspace."""
    config = request.inference_config
    if not isinstance(config, AccelImageConfiguration):
        raise InvalidConfig(f"an fpga image needs AccelContainerImage.image_configuration(), got "
                            f"{type(config).__name__}")
    name = request.image_name or f"{request.models[0].name.replace('.', '-')}-accel"
    progress(f"Building the accelerator image {name!r} (aml_core + aml_provider_fpga, "
             f"{len(request.models)} converted model(s))")
    image = build_program_image(program_spec(workspace, request.models, name))
    return store_image(workspace, name, image, {
        "kind": "DockerImage", "target_kind": KIND, "models": [m.id for m in request.models],
        "tags": dict(config.tags), "description": config.description}, progress)
