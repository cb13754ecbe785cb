"""``IotWebservice``: the IoT Edge target's public handle (azureml-core's name)."""

from __future__ import annotations

from typing import Any

from aml_core.errors import WebserviceException
from aml_core.webservice import Webservice

from aml_provider_iotedge.config import IotBaseModuleSettings, IotModuleSettings, IotServiceDeploymentConfiguration


class IotWebservice(Webservice):
    """A model running as a module on an IoT Edge device.

    It has no scoring URI: messages reach it through the edge hub's routes. ``run()`` raises
    (as azureml-core's does); :meth:`send_test_message` scores one input in the running module
    and returns the result. ``get_logs(module=...)`` reads any module's logs through the edge
    agent.
    """

    _webservice_type = "iotedge"

    @staticmethod
    def deploy_configuration(device_id: str | None = None, routes: dict[str, Any] | None = None,
                             aml_module: IotBaseModuleSettings | None = None,
                             external_modules: list[IotModuleSettings] | None = None,
                             acr_credentials: list[dict[str, str]] | None = None, tags: dict[str, str] | None = None,
                             properties: dict[str, str] | None = None, description: str | None = None,
                             compute_target_name: str | None = None,
                             startup_timeout: float = 300.0) -> IotServiceDeploymentConfiguration:
        return IotServiceDeploymentConfiguration(
            device_id=device_id, routes=routes, aml_module=aml_module, external_modules=external_modules or (),
            acr_credentials=acr_credentials or (), tags=tags, properties=properties, description=description,
            compute_target_name=compute_target_name, startup_timeout=startup_timeout)

    def run(self, input_data: Any) -> Any:
        raise WebserviceException(
            f"IoT Edge service {self.name!r} has no scoring endpoint: its module reads messages routed to it on the "
            f"device. Send one through the routes from another module, or call "
            f"service.send_test_message(input_data) to score it in the running module.")

    def send_test_message(self, input_data: Any, timeout: float = 30.0) -> Any:
        """Score ``input_data`` in the running scoring module (its ``score`` direct method)
        and return the result; the result also goes out on ``amlOutput`` through the routes."""
        from aml_provider_iotedge import deploy

        self._require_usable("send_test_message")
        return deploy.send_test_message(self._reload(), input_data, timeout)

    def get_logs(self, num_lines: int = 5000, init: bool = False, module: str | None = None) -> str:
        """The scoring module's logs, or those of ``module`` (another module of the deployment)."""
        if module is None:
            return super().get_logs(num_lines=num_lines, init=init)
        from aml_provider_iotedge import deploy

        self._require_usable("get_logs")
        return deploy.logs(self._reload(), num_lines, module)
