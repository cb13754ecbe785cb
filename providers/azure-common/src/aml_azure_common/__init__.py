"""What every Azure-backed provider (ACI, App Service, Functions, IoT Edge, AKS's management
side) needs from Azure, written once. Not a provider: it has no entry point.

>>> from aml_azure_common import management_client, wait_for, arm_errors
>>> client = management_client(ContainerInstanceManagementClient)        # doctest: +SKIP
>>> with arm_errors("Creating container group 'svc'"):                   # doctest: +SKIP
...     group = wait_for(client.container_groups.begin_create_or_update(rg, "svc", body),
...                      what="Creating container group 'svc'", progress=print)

- :func:`management_client` / :func:`credential_for`: an ``azure-mgmt-*`` client from the
  core's :class:`aml_core.profiles.CloudProfile` (endpoint, CA bundle, static token or
  azure-identity, polling interval), so the emulator and Azure differ only by profile;
- :func:`wait_for`: block on a long-running operation's poller, reporting each status change;
- :func:`translate` / :func:`arm_errors`: Azure ``HttpResponseError`` → ``aml_core.errors``,
  always ``raise ... from exc``;
- :func:`new_service_key`: a fresh service key;
- :func:`aml_azure_common.webapps.read_log_stream`: a web or function app's Kudu log stream.
"""

from aml_azure_common.clients import credential_for, management_client
from aml_azure_common.errors import arm_errors, translate
from aml_azure_common.keys import new_service_key
from aml_azure_common.lro import wait_for

__all__ = ["arm_errors", "credential_for", "management_client", "new_service_key", "translate", "wait_for"]
