"""What App Service and Functions share about ``Microsoft.Web`` sites: their Kudu log stream."""

from __future__ import annotations

import time
from typing import Any

import requests

from aml_core.errors import AuthError, NotFound, ProvisioningFailed

from aml_azure_common.errors import arm_errors

#: seconds of silence after which the log stream has shown what it has
LOG_QUIET = 0.5
#: the longest a read of the log stream goes on, however chatty the app
LOG_MAX_SECONDS = 10.0


def read_log_stream(client: Any, resource_group: str, app: str, verify: Any, *, slot: str | None = None,
                    what: str = "web app") -> str:
    """What the site's (or slot's) Kudu log stream (``/api/logstream``, with the publishing
    credentials) shows now: read until it has been quiet for :data:`LOG_QUIET` seconds.

    :param client: an azure-mgmt-web ``WebSiteManagementClient``.
    :param what: how messages name the site (``"web app"``, ``"function app"``).
    """
    with arm_errors(f"Reading the publishing credentials of {what} {app!r}"):
        if slot is None:
            site = client.web_apps.get(resource_group, app)
            creds = client.web_apps.begin_list_publishing_credentials(resource_group, app).result()
        else:
            site = client.web_apps.get_slot(resource_group, app, slot)
            creds = client.web_apps.begin_list_publishing_credentials_slot(resource_group, app, slot).result()
    scm = next((s.name for s in site.host_name_ssl_states or [] if s.host_type == "Repository"), None)
    if scm is None:
        raise NotFound(f"{what[0].upper()}{what[1:]} {app!r} shows no SCM (Kudu) host, so no log stream.")
    url = f"https://{scm}/api/logstream"
    chunks: list[bytes] = []
    deadline = time.monotonic() + LOG_MAX_SECONDS
    try:
        with requests.get(url, auth=(creds.publishing_user_name, creds.publishing_password), verify=verify,
                          stream=True, timeout=(10, LOG_QUIET)) as response:
            if response.status_code == 401:
                raise AuthError(f"The log stream of {what} {app!r} refused its publishing credentials.")
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=None):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    break
    except (requests.ConnectionError, requests.Timeout) as exc:
        if not chunks:  # quiet before the banner even arrived: the stream is not there
            raise ProvisioningFailed(f"The log stream of {what} {app!r} at {url} did not answer: {exc}") from exc
    return b"".join(chunks).decode("utf-8", "replace")
