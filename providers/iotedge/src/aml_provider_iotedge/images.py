"""Module images: the scoring module (model + entry script + the module runner) and the
simulated sensor, built with the core's packaging and pushed to the workspace's registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aml_core.errors import InvalidConfig
from aml_core.images import ContainerRegistry, package_spec, workspace_registry
from aml_core.oci import EnvironmentSpec, Image, ProgramSpec, RegistryClient, build_image, build_program_image
from aml_core.oci.image import LABEL_APP_LAYERS, LABEL_PATH_ENV, app_layer_count

RUNTIME = Path(__file__).parent / "module_runtime"
#: what the module runner needs besides the user's environment
MODULE_REQUIREMENTS = ("azure-iot-device>=2.12",)
SENSOR_REPOSITORY = "aml-iot-sensor"


def _registry(workspace: Any) -> ContainerRegistry:
    registry = workspace_registry(workspace)
    if registry is None:
        raise InvalidConfig(
            f"An IoT Edge device pulls its modules from a registry, but workspace {workspace.name!r} keeps images "
            f"in its embedded store. Create it with Workspace.create(path, container_registry='profile:emulator') "
            f"(or your Azure profile).")
    return registry


def _push(registry: ContainerRegistry, repository: str, tag: str, image: Image) -> str:
    client = RegistryClient(registry.address, username=registry.username, password=registry.password)
    client.push_image(repository, image, tags=(tag,))
    return f"{registry.address}/{repository}:{tag}"


def scoring_module_image(workspace: Any, models: Any, inference_config: Any) -> Image:
    """The scoring image of ``models`` + entry script, with the module runner on top: its
    entrypoint reads messages instead of serving HTTP."""
    scoring = build_image(package_spec(workspace, models, inference_config))
    env = scoring.config_json()["config"]
    labels = env.get("Labels") or {}
    user_environment = inference_config.environment
    environment = EnvironmentSpec(
        name=f"{user_environment.name}-iot",
        pip_requirements=(*user_environment.python.conda_dependencies.pip_requirements(), *MODULE_REQUIREMENTS),
        environment_variables=dict(user_environment.environment_variables))
    module = build_program_image(ProgramSpec(
        title="aml iot scoring module", packages=[RUNTIME / "aml_iot_module"], environment=environment,
        entrypoint=("python", "-m", "aml_iot_module"), port=5001, base=scoring))
    # The runner needs the scoring image's layers (runtime, models, app) and its path variables
    # (model and source directories) as much as its own: count them all as the app's.
    config = module.config_json()
    config["config"]["Labels"] = {**config["config"]["Labels"],
                                  LABEL_APP_LAYERS: str(app_layer_count(scoring) + 1),
                                  LABEL_PATH_ENV: labels.get(LABEL_PATH_ENV, "PYTHONPATH")}
    return Image.assemble(config, list(module.layers))


def publish_scoring_module(workspace: Any, repository: str, tag: str, models: Any, inference_config: Any) -> tuple[str, ContainerRegistry]:
    registry = _registry(workspace)
    return _push(registry, repository, tag, scoring_module_image(workspace, models, inference_config)), registry


def sensor_image() -> Image:
    return build_program_image(ProgramSpec(
        title="aml iot simulated sensor", packages=[RUNTIME / "aml_iot_sensor"],
        environment=EnvironmentSpec(name="aml-iot-sensor", pip_requirements=MODULE_REQUIREMENTS),
        entrypoint=("python", "-m", "aml_iot_sensor"), port=5001))


def publish_sensor_image(workspace: Any, tag: str = "1") -> str:
    """Build the simulated temperature sensor module and push it to the workspace's registry;
    returns its image location for :class:`~aml_provider_iotedge.IotModuleSettings`."""
    return _push(_registry(workspace), SENSOR_REPOSITORY, tag, sensor_image())
