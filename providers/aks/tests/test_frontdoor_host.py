"""``python -m aml_provider_aks.frontdoor_host``: the front door as it runs on a real cluster,
fed by list + watch of the cluster's objects through the official ``kubernetes`` client.

Here it runs as a local process against the emulator's cluster, next to (and without
replacing) the emulator's in-process front door. Every wait is bounded; nothing asserts a
duration.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from aks_testing import wait_until
from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_provider_aks import AksCompute, AksWebservice

SCORE = """
import os


def init():
    pass


def run(raw_data):
    return {"pid": os.getpid()}
"""

ADMIN = "host-admin-token"


@contextmanager
def frontdoor_host(kubeconfig: str, tmp_path, *extra: str) -> Iterator[str]:
    """Run the host on an ephemeral port; yields its URL; stops it with SIGTERM and checks
    that it exits 0."""
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN + "\n")
    log = open(tmp_path / "frontdoor-host.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "aml_provider_aks.frontdoor_host", "--kubeconfig", kubeconfig,
                             "--host", "127.0.0.1", "--port", "0", "--admin-token-file", str(token_file), *extra],
                            stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)$", line.strip())
        if not match:
            proc.wait(10)
            log.seek(0)
            raise AssertionError(f"the host did not start: {line!r} {log.read()}")
        url = f"http://127.0.0.1:{match.group(1)}"
        wait_until("the host answers", lambda: _healthy(url), timeout=30)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.seek(0)
        output = log.read()
        log.close()
    assert proc.returncode == 0, output


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _replicas(url: str, service: str) -> list[str] | None:
    resp = requests.get(f"{url}/-/services/{service}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return resp.json()["versions"][service]["replicas"]


def test_the_host_routes_an_aks_service_from_the_cluster_objects(emulator, ws, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(SCORE)
    (tmp_path / "model.txt").write_text("weights")
    model = Model.register(ws, str(tmp_path / "model.txt"), "host-model")
    target = ComputeTarget.create(ws, "aks-host", AksCompute.provisioning_configuration(
        cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion()
    kubeconfig = ComputeTarget(ws, "aks-host").record.details["kubeconfig"]
    service = Model.deploy(ws, "via-host", [model], InferenceConfig(entry_script="score.py", source_directory=str(app)),
                           AksWebservice.deploy_configuration(num_replicas=2), target)
    service.wait_for_deployment()
    deleted = False
    try:
        assert service.state == "Healthy", service.error
        key = service.get_keys()[0]
        with frontdoor_host(kubeconfig, tmp_path) as url:
            score = f"{url}/api/v1/service/via-host/score"
            assert len(wait_until("two replicas routed", lambda: len(_replicas(url, "via-host") or []) == 2 and
                              _replicas(url, "via-host"))) == 2

            with requests.Session() as http:
                resp = http.post(score, json={"data": []}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
                assert resp.status_code == 200, resp.text
                assert "pid" in resp.json()
                wrong = http.post(score, json={"data": []}, headers={"Authorization": "Bearer not-the-key"},
                                  timeout=30)
                assert wrong.status_code == 401
                # the clients' front door (the emulator's) is another one, and still serves it
                assert service.scoring_uri != score and service.run({"data": []})["pid"]

            service.update(num_replicas=3)
            wait_until("three replicas routed", lambda: len(_replicas(url, "via-host") or []) == 3)

            service.delete()
            deleted = True
            wait_until("route gone", lambda: _replicas(url, "via-host") is None)
            gone = requests.post(score, json={"data": []}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert gone.status_code == 404
    finally:
        if not deleted:
            service.delete()


# -------------------------------------------------------------- a cluster without services
@pytest.fixture
def cluster():
    from aml_emulator.cluster import ClusterService

    with ClusterService() as started:
        yield started


def test_the_host_publishes_where_it_is_so_that_clients_locate_it(cluster, tmp_path):
    from aml_provider_aks.deploy import Cluster
    from aml_provider_aks.frontdoor import locate

    kubeconfig = str(cluster.kubeconfig_path)
    with frontdoor_host(kubeconfig, tmp_path, "--publish", "http://frontdoor.example:80/") as url:
        with Cluster(kubeconfig) as c:
            found = wait_until("published", lambda: locate(c.core).url == "http://frontdoor.example:80", timeout=30)
            found = locate(c.core)
            assert found.admin_token == ADMIN
            secret = c.core.read_namespaced_secret("azureml-fe", "azureml")
            assert base64.b64decode(secret.data["admin-token"]).decode() == ADMIN
        assert requests.get(f"{url}/-/services", headers={"Authorization": f"Bearer {ADMIN}"},
                            timeout=5).json() == {"services": []}


def test_without_a_kubeconfig_outside_a_pod_it_says_what_to_give(tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "AML_FRONTDOOR_KUBECONFIG")}
    result = subprocess.run([sys.executable, "-m", "aml_provider_aks.frontdoor_host", "--admin-token-file",
                             str(token_file)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 2 and "--kubeconfig" in result.stderr, result.stderr


def test_a_watch_that_ends_or_expires_is_followed_by_a_relist_that_drops_what_was_missed(cluster, monkeypatch):
    """In process, to miss events on purpose: a resync after the relist must drop the route
    whose Secret was deleted while nobody listened, and a 410 Gone must lead to a relist."""
    from aml_core.frontdoor import FrontDoor
    from aml_core.frontdoor.kube import RouteSync, entry_secret
    from aml_provider_aks.frontdoor_host import ClusterWatch, api_client
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    expired = []
    real_stream = watch.Watch.stream

    def stream_expiring_once(self, func, *args, **kwargs):
        if not expired:
            expired.append(func)
            raise ApiException(status=410, reason="Expired: too old resource version")
        return real_stream(self, func, *args, **kwargs)

    monkeypatch.setattr(watch.Watch, "stream", stream_expiring_once)
    api = api_client(str(cluster.kubeconfig_path))
    core = client.CoreV1Api(api)
    frontdoor = FrontDoor(ADMIN)
    watcher = ClusterWatch(api, RouteSync(frontdoor), watch_seconds=1)
    secrets_kind = next(k for k in watcher.kinds if k.name == "secrets")
    lists = []
    real_list = secrets_kind.list_fn
    secrets_kind.list_fn = lambda **kw: lists.append(kw) or real_list(**kw)
    watcher.start()
    try:
        assert watcher.synced.wait(30)
        payload = {"auth": "none", "versions": {"v": {"upstream": "default/v", "is_default": True}}}
        core.create_namespaced_secret("default", entry_secret("missed", "default", payload))
        wait_until("route from the watch", lambda: frontdoor.describe("missed"), timeout=30)
        assert expired  # the first watch answered 410, and the host listed again

        # from now on the watch's events are lost: only a relist can see the deletion
        real_on_event = secrets_kind.on_event
        secrets_kind.on_event = lambda obj, deleted: None
        core.delete_namespaced_secret("missed-frontdoor", "default")
        listed = len(lists)
        wait_until("a relist after the watch ended", lambda: len(lists) > listed, timeout=30)
        wait_until("route dropped by the resync", lambda: frontdoor.describe("missed") is None, timeout=30)
        secrets_kind.on_event = real_on_event
    finally:
        watcher.stop()
        api.close()
    assert not any(t.is_alive() for t in watcher._threads)
