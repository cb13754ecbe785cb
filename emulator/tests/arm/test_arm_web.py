"""``Microsoft.Web`` plans, sites and slots through the real azure-mgmt-web client: a Linux
web app whose container runs (pulled with its DOCKER_REGISTRY_SERVER_* settings) and answers
at its https host, its Kudu log stream, app settings and config, a slot swap no caller
notices, errors in App Service's codes, and sites that come back after an emulator restart."""

from __future__ import annotations

import io
import tarfile
import threading
import time

import pytest
import requests
from arm_testing import SCOPES, FixedToken

from aml_emulator import Emulator

pytest.importorskip("azure.mgmt.web")

_SERVER = r'''
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (os.environ.get("VERSION", "?") + " " + os.environ.get("GREETING", "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("hello", os.environ.get("GREETING"), flush=True)
http.server.ThreadingHTTPServer((os.environ["AML_HOST"], int(os.environ["AML_PORT"])), Handler).serve_forever()
'''


def _image(version: str):
    from aml_core.oci.image import EnvironmentSpec, Image
    from aml_core.oci.layers import Blob, gzip_bytes
    from aml_core.oci.media import OCI_LAYER_GZIP

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = _SERVER.encode()
        info = tarfile.TarInfo("app/server.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    return Image.assemble({"config": {"Entrypoint": ["python3", "-c", _SERVER], "Env": [f"VERSION={version}"],
                                      "Labels": {"org.aml.environment": EnvironmentSpec(name="web").to_label()}}},
                          [layer])


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    from aml_core.oci.registry import RegistryClient

    with Emulator(tmp_path_factory.mktemp("web"), services=["registry", "arm"], arm_retry_after=0.05) as emulator:
        creds = emulator.registry.credentials
        client = RegistryClient(emulator.registry.login_server, username=creds.username,
                                password=creds.passwords["password"])
        client.push_image("site", _image("v1"), tags=("1",))
        client.push_image("site", _image("v2"), tags=("2",))
        yield emulator


@pytest.fixture
def client(emu):
    from azure.mgmt.web import WebSiteManagementClient

    yield WebSiteManagementClient(FixedToken(emu.arm_token), emu.subscription_id, base_url=emu.arm.url,
                                  credential_scopes=SCOPES, connection_verify=str(emu.ca_bundle), retry_total=0)
    emu.arm.clear_operation_scripts()


def _plan(client, emu, name="plan1", sku="S1"):
    return client.app_service_plans.begin_create_or_update(emu.resource_group, name, {
        "location": "westus", "kind": "linux", "sku": {"name": sku}, "properties": {"reserved": True},
    }).result(timeout=30)


def _settings(emu, password=None, **extra):
    creds = emu.registry.credentials
    return {"DOCKER_REGISTRY_SERVER_URL": f"https://{emu.registry.login_server}",
            "DOCKER_REGISTRY_SERVER_USERNAME": creds.username,
            "DOCKER_REGISTRY_SERVER_PASSWORD": password or creds.passwords["password"],
            "WEBSITES_PORT": "5001", **extra}


def _site(client, emu, name, plan, tag="1", password=None, kind="app,linux,container", **extra):
    settings = _settings(emu, password, **extra)
    return client.web_apps.begin_create_or_update(emu.resource_group, name, {
        "location": "westus", "kind": kind, "properties": {
            "serverFarmId": plan.id, "httpsOnly": True,
            "siteConfig": {"linuxFxVersion": f"DOCKER|{emu.registry.login_server}/site:{tag}",
                           "appSettings": [{"name": k, "value": v} for k, v in settings.items()]}},
    }).result(timeout=60)


def _get(emu, host, path="/"):
    return requests.get(f"https://{host}{path}", verify=str(emu.ca_bundle), timeout=10)


def _log_stream(client, emu, name, *, until: str, path="/api/logstream", timeout=30.0) -> str:
    site = client.web_apps.get(emu.resource_group, name)
    scm = next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
    creds = client.web_apps.begin_list_publishing_credentials(emu.resource_group, name).result()
    seen = ""
    with requests.get(f"https://{scm}{path}", auth=(creds.publishing_user_name, creds.publishing_password),
                      verify=str(emu.ca_bundle), stream=True, timeout=10) as response:
        assert response.status_code == 200 and response.headers["Transfer-Encoding"] == "chunked"
        assert response.headers["Content-Type"].startswith("text/plain")
        deadline = time.monotonic() + timeout
        for chunk in response.iter_content(chunk_size=None):
            seen += chunk.decode()
            if until in seen or time.monotonic() > deadline:
                break
    return seen


def test_a_linux_web_app_runs_its_container_at_its_https_host(client, emu):
    plan = _plan(client, emu)
    assert plan.reserved is True and plan.sku.tier == "Standard" and plan.kind == "linux"
    site = _site(client, emu, "web1", plan, GREETING="world")
    try:
        assert site.default_host_name.startswith("127.0.0.1:")
        assert site.availability_state == "Normal" and site.state == "Running"
        answer = _get(emu, site.default_host_name)
        assert answer.status_code == 200 and answer.text == "v1 world"
        settings = client.web_apps.list_application_settings(emu.resource_group, "web1").properties
        assert settings["GREETING"] == "world" and settings["WEBSITES_PORT"] == "5001"
        config = client.web_apps.get_configuration(emu.resource_group, "web1")
        assert config.linux_fx_version == f"DOCKER|{emu.registry.login_server}/site:1"
        assert [s.name for s in client.web_apps.list_by_resource_group(emu.resource_group)] == ["web1"]
    finally:
        client.web_apps.delete(emu.resource_group, "web1")


def test_the_log_stream_needs_the_publishing_credentials_and_shows_the_container_output(client, emu):
    site = _site(client, emu, "web2", _plan(client, emu), GREETING="logs")
    try:
        text = _log_stream(client, emu, "web2", until="hello logs")
        assert text.splitlines()[0].endswith("Welcome, you are now connected to log-streaming service. The default "
                                             "timeout is 2 hours. Change the timeout with the App Setting "
                                             "SCM_LOGSTREAM_TIMEOUT (in seconds).")
        assert "Pulling image" in text and "hello logs" in text
        assert "hello logs" in _log_stream(client, emu, "web2", until="hello logs", path="/logstream")
        scm = next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
        refused = requests.get(f"https://{scm}/logstream", auth=("$web2", "wrong"), verify=str(emu.ca_bundle),
                               timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    finally:
        client.web_apps.delete(emu.resource_group, "web2")


def test_changing_app_settings_restarts_the_container_with_them(client, emu):
    site = _site(client, emu, "web3", _plan(client, emu), GREETING="before")
    try:
        settings = client.web_apps.list_application_settings(emu.resource_group, "web3")
        settings.properties["GREETING"] = "after"
        client.web_apps.update_application_settings(emu.resource_group, "web3", settings)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(emu, site.default_host_name).text == "v1 after":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        assert _get(emu, site.default_host_name).text == "v1 after"
    finally:
        client.web_apps.delete(emu.resource_group, "web3")


def test_a_wrong_registry_password_shows_in_the_site_state_and_logs_without_hanging(client, emu):
    started = time.monotonic()
    site = _site(client, emu, "web4", _plan(client, emu), password="not-the-password")
    try:
        assert time.monotonic() - started < 30
        assert site.availability_state == "Limited"
        text = _log_stream(client, emu, "web4", until="failed")
        assert "Pulling image" in text and "failed" in text and "DOCKER_REGISTRY_SERVER_" in text
        assert "not-the-password" not in text
        assert _get(emu, site.default_host_name).status_code == 503
    finally:
        client.web_apps.delete(emu.resource_group, "web4")


def test_a_missing_image_shows_in_the_logs(client, emu):
    site = _site(client, emu, "web5", _plan(client, emu), tag="404")
    try:
        assert site.availability_state == "Limited"
        assert "site:404" in _log_stream(client, emu, "web5", until="failed")
    finally:
        client.web_apps.delete(emu.resource_group, "web5")


def test_errors_carry_app_service_codes(client, emu):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    with pytest.raises(HttpResponseError) as bad_sku:
        _plan(client, emu, "badplan", sku="Z9")
    assert bad_sku.value.error.code == "BadRequest" and "'Z9'" in bad_sku.value.error.message
    with pytest.raises(ResourceNotFoundError) as missing:
        client.web_apps.get(emu.resource_group, "nosuchsite")
    assert missing.value.error.code == "ResourceNotFound"
    windows = client.app_service_plans.begin_create_or_update(emu.resource_group, "winplan", {
        "location": "westus", "sku": {"name": "B1"}}).result()
    with pytest.raises(HttpResponseError) as linux_on_windows:
        _site(client, emu, "web6", windows)
    assert "kind 'linux'" in linux_on_windows.value.error.message
    with pytest.raises(HttpResponseError) as no_slots:
        client.web_apps.begin_create_or_update_slot(emu.resource_group, "x", "staging", {"location": "westus"})
    assert no_slots.value.status_code == 404
    site = _site(client, emu, "web7", _plan(client, emu))
    try:
        with pytest.raises(HttpResponseError) as in_use:
            client.app_service_plans.delete(emu.resource_group, "plan1")
        assert in_use.value.error.code == "Conflict" and "web7" in in_use.value.error.message
    finally:
        client.web_apps.delete(emu.resource_group, site.name)
    client.app_service_plans.delete(emu.resource_group, "winplan")


def test_a_basic_plan_has_no_slots(client, emu):
    from azure.core.exceptions import HttpResponseError

    plan = _plan(client, emu, "basic", sku="B1")
    _site(client, emu, "web8", plan)
    try:
        with pytest.raises(HttpResponseError) as refused:
            client.web_apps.begin_create_or_update_slot(emu.resource_group, "web8", "staging",
                                                        {"location": "westus"}).result()
        assert refused.value.error.code == "Conflict" and "Standard" in refused.value.error.message
    finally:
        client.web_apps.delete(emu.resource_group, "web8")


def test_a_slot_swap_moves_traffic_to_the_new_image_without_a_failed_request(client, emu):
    plan = _plan(client, emu)
    site = _site(client, emu, "web9", plan, tag="1")
    settings = _settings(emu)
    try:
        slot = client.web_apps.begin_create_or_update_slot(emu.resource_group, "web9", "staging", {
            "location": "westus", "kind": "app,linux,container", "properties": {
                "serverFarmId": plan.id, "siteConfig": {
                    "linuxFxVersion": f"DOCKER|{emu.registry.login_server}/site:2",
                    "appSettings": [{"name": k, "value": v} for k, v in settings.items()]}}}).result(timeout=60)
        assert slot.name == "web9/staging" and slot.default_host_name != site.default_host_name
        assert _get(emu, slot.default_host_name).text.startswith("v2")
        failures, answers, stop = [], [], threading.Event()

        def keep_calling() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        response = session.get(f"https://{site.default_host_name}/", verify=str(emu.ca_bundle),
                                               timeout=10)
                        (answers if response.status_code == 200 else failures).append(response.text[:2])
                    except requests.RequestException as exc:
                        failures.append(repr(exc))

        caller = threading.Thread(target=keep_calling)
        caller.start()
        try:
            deadline = time.monotonic() + 10
            while len(answers) < 3 and not failures and time.monotonic() < deadline:  # calling before the swap
                time.sleep(0.02)
            client.web_apps.begin_swap_slot_with_production(emu.resource_group, "web9",
                                                            {"targetSlot": "staging"}).result(timeout=60)
            deadline = time.monotonic() + 10
            while "v2" not in answers[-1:] and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            caller.join()
        assert failures == [] and answers[0] == "v1" and answers[-1] == "v2"
        assert client.web_apps.get_configuration(emu.resource_group, "web9").linux_fx_version.endswith("site:2")
        assert _get(emu, slot.default_host_name).text.startswith("v1")
        assert [s.name for s in client.web_apps.list_slots(emu.resource_group, "web9")] == ["web9/staging"]
        client.web_apps.delete_slot(emu.resource_group, "web9", "staging")
        assert list(client.web_apps.list_slots(emu.resource_group, "web9")) == []
    finally:
        client.web_apps.delete(emu.resource_group, "web9")


def test_a_stopped_site_answers_503_and_serves_again_once_started(client, emu):
    site = _site(client, emu, "web10", _plan(client, emu))
    try:
        client.web_apps.stop(emu.resource_group, "web10")
        assert client.web_apps.get(emu.resource_group, "web10").state == "Stopped"
        assert _get(emu, site.default_host_name).status_code == 503
        client.web_apps.start(emu.resource_group, "web10")
        deadline = time.monotonic() + 30
        while _get(emu, site.default_host_name).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get(emu, site.default_host_name).text.startswith("v1")
    finally:
        client.web_apps.delete(emu.resource_group, "web10")


def test_a_sites_repr_shows_no_secret(client, emu):
    site = _site(client, emu, "web11", _plan(client, emu))
    try:
        from aml_emulator.arm.web import SITES

        (_s, _g, resource), = [found for found in emu.arm.backend.resources(emu.subscription_id, None, SITES)
                               if found[2].name == "web11"]
        shown = repr(resource)
        assert emu.registry.credentials.passwords["password"] not in shown
        assert resource.publishing_password not in shown
    finally:
        client.web_apps.delete(emu.resource_group, site.name)


def test_a_scripted_create_is_in_progress_until_polled_enough(client, emu):
    from aml_emulator.arm import OperationScript

    plan = _plan(client, emu)
    emu.script_arm_operations("Microsoft.Web/sites", OperationScript.after_polls(3), operation="create", name="web12")
    from azure.core.exceptions import ResourceExistsError

    settings = _settings(emu)
    body = {"location": "westus", "kind": "app,linux,container", "properties": {
        "serverFarmId": plan.id, "siteConfig": {
            "linuxFxVersion": f"DOCKER|{emu.registry.login_server}/site:1",
            "appSettings": [{"name": k, "value": v} for k, v in settings.items()]}}}
    headers: dict = {}
    started = client.web_apps.begin_create_or_update(
        emu.resource_group, "web12", body, polling=False,
        cls=lambda response, deserialized, _headers: headers.update(answer=response.http_response.headers) or deserialized)
    try:
        assert started.result()["properties"]["provisioningState"] == "InProgress"
        seen = client.web_apps.get(emu.resource_group, "web12").as_dict()["properties"]["provisioningState"]
        assert seen == "InProgress"  # a read is not a poll: the script still holds
        with pytest.raises(ResourceExistsError) as busy:
            client.web_apps.begin_create_or_update(emu.resource_group, "web12", body)
        assert busy.value.error.code == "Conflict" and "in progress" in busy.value.error.message
        status_url = headers["answer"]["Azure-AsyncOperation"]
        statuses = []
        while not statuses or statuses[-1] == "InProgress":
            statuses.append(requests.get(status_url, headers={"Authorization": f"Bearer {emu.arm_token}"},
                                         verify=str(emu.ca_bundle), timeout=30).json()["status"])
            assert len(statuses) < 100
        assert statuses[:3] == ["InProgress"] * 3 and statuses[-1] == "Succeeded"
        assert client.web_apps.get(emu.resource_group, "web12").as_dict()["properties"]["provisioningState"] == \
            "Succeeded"
    finally:
        client.web_apps.delete(emu.resource_group, "web12")


def test_a_new_image_in_the_site_config_restarts_the_site_on_it(client, emu):
    site = _site(client, emu, "web13", _plan(client, emu))
    try:
        config = client.web_apps.update_configuration(emu.resource_group, "web13", {
            "properties": {"linuxFxVersion": f"DOCKER|{emu.registry.login_server}/site:2"}})
        assert config.linux_fx_version.endswith("site:2") and config.number_of_workers == 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(emu, site.default_host_name).text.startswith("v2"):
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        assert _get(emu, site.default_host_name).text.startswith("v2")
        patched = client.web_apps.update(emu.resource_group, "web13", {"properties": {"httpsOnly": False},
                                                                        "tags": {"team": "web"}})
        assert patched.tags == {"team": "web"} and patched.https_only is False
    finally:
        client.web_apps.delete(emu.resource_group, "web13")


def test_a_function_app_site_is_a_site_of_its_kind(client, emu):
    site = _site(client, emu, "func1", _plan(client, emu), kind="functionapp,linux,container")
    try:
        assert site.kind == "functionapp,linux,container" and _get(emu, site.default_host_name).status_code == 200
    finally:
        client.web_apps.delete(emu.resource_group, "func1")


def test_sites_survive_an_emulator_restart(tmp_path):
    from aml_core.oci.registry import RegistryClient
    from azure.mgmt.web import WebSiteManagementClient

    def make(emulator):
        return WebSiteManagementClient(FixedToken(emulator.arm_token), emulator.subscription_id,
                                       base_url=emulator.arm.url, credential_scopes=SCOPES,
                                       connection_verify=str(emulator.ca_bundle), retry_total=0)

    with Emulator(tmp_path, services=["registry", "arm"], arm_retry_after=0.05) as first:
        creds = first.registry.credentials
        RegistryClient(first.registry.login_server, username=creds.username,
                       password=creds.passwords["password"]).push_image("site", _image("v1"), tags=("1",))
        client = make(first)
        site = _site(client, first, "kept", _plan(client, first))
        host = site.default_host_name
        password = client.web_apps.begin_list_publishing_credentials(first.resource_group, "kept").result()
    with Emulator(tmp_path, services=["registry", "arm"], arm_retry_after=0.05) as second:
        client = make(second)
        again = client.web_apps.get(second.resource_group, "kept")
        assert again.default_host_name == host
        assert client.app_service_plans.get(second.resource_group, "plan1").sku.name == "S1"
        again_password = client.web_apps.begin_list_publishing_credentials(second.resource_group, "kept").result()
        assert again_password.publishing_password == password.publishing_password
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if _get(second, host).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        assert _get(second, host).text.startswith("v1")
