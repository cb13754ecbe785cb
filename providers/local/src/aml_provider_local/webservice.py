"""``LocalWebservice``: the local target's public handle (azureml-core's name)."""

from __future__ import annotations

from aml_core.webservice import Webservice, WebserviceNotFound

from aml_provider_local.config import LocalWebserviceDeploymentConfiguration


class LocalWebservice(Webservice):
    """A scoring service on this machine.

    Lifetime: a local service outlives the Python process that deployed it, like a
    container does. It is recorded in the workspace, found again with
    ``Webservice(ws, name)`` from any process, and stopped by ``delete()`` (or
    ``aml service delete NAME``), which ends its whole process group.
    """

    _webservice_type = "local"

    @property
    def state(self) -> str:
        """The service's state. A service recorded as ``running`` is checked against its
        processes (or container) on every read, so a supervisor that was killed shows as
        ``failed`` at once, with no ``update_deployment_state()`` call; the check is a read
        of ``/proc`` (a container inspect on the docker engine)."""
        operation = self._operation
        if self._record.state == "running" and not (operation is not None and operation.running):
            try:
                return self.update_deployment_state()
            except WebserviceNotFound:  # deleted by another process meanwhile
                return "Deleted"
        return self._record.state

    @staticmethod
    def deploy_configuration(port: int | None = None, engine: str = "auto", workers: int = 1,
                             startup_timeout: float = 300.0,
                             memory_gb_limit: float | None = None) -> LocalWebserviceDeploymentConfiguration:
        return LocalWebserviceDeploymentConfiguration(
            port=port, engine=engine, workers=workers, startup_timeout=startup_timeout,
            memory_gb_limit=memory_gb_limit,
        )

    def reload(self, wait: bool = True) -> None:
        """Restart the service with the current contents of its entry script and source folder."""
        from aml_core.webservice import _load_row
        from aml_core.inference import InferenceConfig

        _, spec = _load_row(self.workspace, self.name)
        self.update(inference_config=InferenceConfig.from_dict(spec["inference_config"]), wait=wait)

    def deploy_to_cloud(self, name: str | None = None, deployment_config=None, deployment_target=None):
        """Deploy this service's models and inference configuration to another target
        (``deployment_config`` says which: ``AksWebservice.deploy_configuration()`` ...), as
        the service ``name`` (default: this one's name). Returns the new service's handle."""
        from aml_core.errors import InvalidConfig
        from aml_core.model import Model
        from aml_core.webservice import _load_row

        if deployment_config is None:
            raise InvalidConfig("deploy_to_cloud needs a deployment_config for the target to deploy to, e.g. "
                                "AksWebservice.deploy_configuration().")
        loaded = _load_row(self.workspace, self.name)
        if loaded is None or loaded[1] is None:
            raise InvalidConfig(f"Service {self.name!r} has no stored deployment to copy.")
        spec = loaded[1]
        models = [Model(self.workspace, id=model_id) for model_id in spec["models"]]
        from aml_core.inference import InferenceConfig

        inference_config = InferenceConfig.from_dict(spec["inference_config"])
        return Model.deploy(self.workspace, name or self.name, models, inference_config, deployment_config,
                            deployment_target)
