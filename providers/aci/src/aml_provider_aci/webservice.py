"""``AciWebservice``: azureml-core's name for services on Azure Container Instances."""

from __future__ import annotations

from aml_core.webservice import Webservice

from aml_provider_aci.config import KIND, AciServiceDeploymentConfiguration


class AciWebservice(Webservice):
    """A scoring service running as an ACI container group (one container)."""

    _webservice_type = KIND

    @staticmethod
    def deploy_configuration(cpu_cores=None, memory_gb=None, tags=None, properties=None, description=None,
                             location=None, auth_enabled=None, ssl_enabled=None, enable_app_insights=None,
                             ssl_cert_pem_file=None, ssl_key_pem_file=None, ssl_cname=None, dns_name_label=None,
                             primary_key=None, secondary_key=None, collect_model_data=None,
                             cmk_vault_base_url=None, cmk_key_name=None, cmk_key_version=None, vnet_name=None,
                             subnet_name=None) -> AciServiceDeploymentConfiguration:
        """The deployment configuration of an ACI service; every rule is checked here,
        before anything is sent to Azure (see :class:`AciServiceDeploymentConfiguration`)."""
        return AciServiceDeploymentConfiguration(**dict(locals()))

    @property
    def fqdn(self) -> str | None:
        """``<dns_name_label>.<location>.azurecontainer.io`` when the service has a DNS label."""
        return self._record.details.get("fqdn")

    @property
    def location(self) -> str | None:
        return self._record.details.get("location")
