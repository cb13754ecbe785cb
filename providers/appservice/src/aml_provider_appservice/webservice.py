"""``AppServiceWebservice``: a scoring service running as a Linux web app's container."""

from __future__ import annotations

from aml_core.webservice import Webservice

from aml_provider_appservice.config import KIND, AppServiceDeploymentConfiguration


class AppServiceWebservice(Webservice):
    """A scoring service served by an App Service web app (the packaged image as its container)."""

    _webservice_type = KIND

    @staticmethod
    def deploy_configuration(plan_name=None, sku=None, app_name=None, location=None, auth_enabled=None,
                             primary_key=None, secondary_key=None, enable_app_insights=None, tags=None,
                             properties=None, description=None) -> AppServiceDeploymentConfiguration:
        """The deployment configuration of a web app; every rule is checked here, before
        anything is sent to Azure (see :class:`AppServiceDeploymentConfiguration`)."""
        return AppServiceDeploymentConfiguration(**dict(locals()))

    @property
    def default_host_name(self) -> str | None:
        """The web app's host (``<app>.azurewebsites.net`` on Azure)."""
        return self._record.details.get("default_host_name")

    @property
    def plan_name(self) -> str | None:
        return self._record.details.get("plan")
