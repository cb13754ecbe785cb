"""``FunctionsWebservice``: a model served by a function app (HTTP, blob or Service Bus queue trigger)."""

from __future__ import annotations

import json
from typing import Any

from aml_core.errors import NotSupported, WebserviceException
from aml_core.webservice import Webservice

from aml_provider_functions.config import KIND, FunctionsDeploymentConfiguration, deploy_configuration


class FunctionsWebservice(Webservice):
    """A function app running the packaged model. ``run()`` calls an HTTP-triggered app with its
    function key (``x-functions-key``); blob and queue apps are driven through their storage
    account or queue."""

    _webservice_type = KIND

    @staticmethod
    def deploy_configuration(trigger: str = "http", plan_name=None, sku=None, app_name=None, location=None,
                             storage_connection_string=None, trigger_connection_string=None,
                             service_bus_connection_string=None, tags=None,
                             **options: Any) -> FunctionsDeploymentConfiguration:
        """The function app's trigger (``http``/``blob``/``service_bus_queue`` with its options:
        ``auth_level``, ``input_path``/``output_path``, ``input_queue_name``/``output_queue_name``),
        plan and connection strings; checked here, before anything is sent to Azure."""
        return deploy_configuration(trigger, plan_name, sku, app_name, location, storage_connection_string,
                                    trigger_connection_string, service_bus_connection_string, tags, **options)

    @property
    def trigger(self) -> str | None:
        return self._record.details.get("trigger")

    @property
    def default_host_name(self) -> str | None:
        return self._record.details.get("default_host_name")

    def get_host_keys(self) -> dict[str, Any]:
        """The host's keys from ARM: ``{"masterKey", "functionKeys", "systemKeys"}``."""
        from aml_provider_functions.deploy import host_keys

        keys = host_keys(self._reload())
        return {"masterKey": keys.master_key, "functionKeys": dict(keys.function_keys or {}),
                "systemKeys": dict(keys.system_keys or {})}

    def get_function_keys(self) -> dict[str, str]:
        """The HTTP function's own keys from ARM (``{"default": ...}``)."""
        from aml_provider_functions.deploy import function_keys

        return function_keys(self._reload())

    def _function_key(self) -> str:
        """The key ``run()`` calls with: the master key for an ``admin`` function, else the function's."""
        if self._record.details.get("auth_level") == "admin":
            return self.get_host_keys()["masterKey"]
        return self.get_function_keys()["default"]

    def run(self, input_data: Any) -> Any:
        """Call the HTTP function with ``input_data`` (JSON-encoded unless bytes/str)."""
        self._require_usable("run")
        if self.trigger != "http" or not self.scoring_uri:
            raise NotSupported(KIND, f"run() on a {self.trigger} function app",
                               f"Service {self.name!r} scores what arrives on its trigger, not HTTP calls: upload "
                               f"a blob / send a message instead.")
        body = input_data if isinstance(input_data, (bytes, str)) else json.dumps(input_data)
        headers = {"Content-Type": "application/json"}
        if self._record.auth_mode == "key":
            headers["x-functions-key"] = self._function_key()
        response = self._session.post(self.scoring_uri, data=body, headers=headers, timeout=300,
                                      verify=self._record.details.get("ca_bundle") or True)
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                return response.text
        raise WebserviceException(
            f"Received bad response from service {self.name!r}. More information can be found by calling "
            f".get_logs() on the webservice object.\nResponse Code: {response.status_code}\n"
            f"Content: {response.content[:2000]!r}")
