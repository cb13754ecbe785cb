"""Installing the front door on a real cluster (``install_frontdoor``, ``aml aks install-frontdoor``).

The objects, and the flow's ordering, idempotence and errors, against an in-memory cluster
behind the typed clients' method names; ``test_frontdoor_install_emulator.py`` runs the whole
install, with the image our packaging builds, on the emulator's cluster.
"""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from aml_core.errors import ProvisioningFailed
from aml_provider_aks import frontdoor_install
from aml_provider_aks.frontdoor_install import (
    _install,
    deployment_object,
    rbac_objects,
    service_object,
)
from kubernetes.client.exceptions import ApiException


# ------------------------------------------------------------------ the objects
def test_the_pod_runs_our_image_with_its_token_file_and_the_published_url():
    body = deployment_object("registry.example/azureml-fe:1", "azureml", 2, "http://20.1.2.3")
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container  # the image's entrypoint starts the host on its port
    args = container["args"]
    assert args[args.index("--publish") + 1] == "http://20.1.2.3"
    assert args[args.index("--service-account-dir") + 1] == "/var/run/secrets/kubernetes.io/serviceaccount"
    token_file = Path(args[args.index("--admin-token-file") + 1])
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount["name"] == volume["name"] and Path(mount["mountPath"]) == token_file.parent and mount["readOnly"]
    assert volume["secret"]["secretName"] == "azureml-fe"
    assert volume["secret"]["items"] == [{"key": "admin-token", "path": token_file.name}]
    assert pod["serviceAccountName"] == "azureml-fe" and body["spec"]["replicas"] == 2
    assert pod["imagePullSecrets"] == [{"name": "azureml-fe-pull"}]
    assert container["readinessProbe"]["httpGet"]["port"] == 8080 == container["ports"][0]["containerPort"]

    own = deployment_object("registry.example/yours:1", "azureml", 1, "http://20.1.2.3", own_image=False)
    (container,) = own["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "aml_provider_aks.frontdoor_host"]
    assert container["args"][:4] == ["--host", "0.0.0.0", "--port", "8080"]
    assert "imagePullSecrets" not in own["spec"]["template"]["spec"]

    service = service_object("azureml")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= body["spec"]["template"]["metadata"]["labels"].items()


def test_the_roles_read_entries_and_replicas_and_write_only_where_clients_look():
    objects = dict(rbac_objects("fe-system"))
    assert objects["ServiceAccount"]["metadata"]["namespace"] == "fe-system"
    (cluster_rule,) = objects["ClusterRole"]["rules"]
    assert sorted(cluster_rule["resources"]) == ["endpoints", "secrets"]
    assert sorted(cluster_rule["verbs"]) == ["get", "list", "watch"]
    assert objects["Role"]["metadata"]["namespace"] == "azureml"
    (role_rule,) = objects["Role"]["rules"]
    assert sorted(role_rule["resources"]) == ["configmaps", "secrets"] and "delete" not in role_rule["verbs"]
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert objects[binding]["subjects"] == [{"kind": "ServiceAccount", "name": "azureml-fe",
                                                 "namespace": "fe-system"}]


# ------------------------------------------------------------------ the flow, on an in-memory cluster
class MemoryCluster:
    """Objects by (kind, namespace, name) behind CoreV1Api/AppsV1Api/RbacAuthorizationV1Api's
    method names; a load balancer address and available pods appear when read."""

    def __init__(self, lb_address: str | None = "20.1.2.3") -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.lb_address = lb_address
        self.api_client = SimpleNamespace(sanitize_for_serialization=copy.deepcopy)

    def apis(self) -> SimpleNamespace:
        return SimpleNamespace(core=self, apps=self, rbac=self, plain=copy.deepcopy)

    def __getattr__(self, method: str):
        verb, _, rest = method.partition("_")
        namespaced = rest.startswith("namespaced_")
        kind = rest.removeprefix("namespaced_")

        def call(*args, **kwargs):
            if verb == "create":
                ns, body = (args[0], args[1]) if namespaced else ("", args[0])
                key = (kind, ns, body["metadata"]["name"])
                self.calls.append(("create", kind, key[2]))
                if key in self.objects:
                    raise ApiException(status=409, reason="Conflict")
                body = copy.deepcopy(body)
                body["metadata"].update(generation=1, resourceVersion="1")
                if kind == "service":
                    body["spec"]["clusterIP"] = "10.0.0.10"
                self.objects[key] = body
                return body
            name, ns = (args[0], args[1]) if namespaced else (args[0], "")
            key = (kind, ns, name)
            self.calls.append((verb, kind, name))
            if key not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            current = self.objects[key]
            if verb == "read":
                if kind == "service" and self.lb_address:
                    current["status"] = {"loadBalancer": {"ingress": [{"ip": self.lb_address}]}}
                if kind == "deployment":
                    n = current["spec"]["replicas"]
                    current["status"] = {"observedGeneration": current["metadata"]["generation"], "replicas": n,
                                         "updatedReplicas": n, "availableReplicas": n}
                return copy.deepcopy(current)
            if verb == "replace":
                body = copy.deepcopy(args[2] if namespaced else args[1])
                body["metadata"]["generation"] = current["metadata"]["generation"] + 1
                self.objects[key] = body
                return body
            raise AssertionError(f"unexpected call {method}")

        return call


def test_install_creates_everything_publishes_and_a_second_run_keeps_the_token():
    cluster = MemoryCluster()
    notes: list[str] = []
    first = _install(cluster.apis(), "registry.example/fe:1", namespace="azureml", replicas=1, timeout=5,
                     progress=notes.append, sleep=lambda s: None)
    assert first.url == "http://20.1.2.3" and first.admin_token
    kinds = {k for k, _, _ in cluster.objects}
    assert {"namespace", "service_account", "cluster_role", "cluster_role_binding", "role", "role_binding",
            "secret", "service", "deployment", "config_map"} <= kinds
    creates = [kind for verb, kind, _ in cluster.calls if verb == "create"]
    assert creates.index("service") < creates.index("deployment")  # its address goes into the pod's args
    deployment = cluster.objects[("deployment", "azureml", "azureml-fe")]
    assert "http://20.1.2.3" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cluster.objects[("config_map", "azureml", "azureml-fe")]["data"] == {"url": "http://20.1.2.3"}
    secret = cluster.objects[("secret", "azureml", "azureml-fe")]
    assert base64.b64decode(secret["data"]["admin-token"]).decode() == first.admin_token
    assert any("http://20.1.2.3" in n for n in notes)

    second = _install(cluster.apis(), "registry.example/fe:2", namespace="azureml", replicas=1, timeout=5,
                      progress=notes.append, sleep=lambda s: None)
    assert second.admin_token == first.admin_token
    assert cluster.objects[("service", "azureml", "azureml-fe")]["spec"]["clusterIP"] == "10.0.0.10"
    updated = cluster.objects[("deployment", "azureml", "azureml-fe")]
    assert updated["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/fe:2"


def test_pods_in_another_namespace_still_publish_where_clients_look():
    cluster = MemoryCluster()
    found = _install(cluster.apis(), "img", namespace="fe-system", replicas=1, timeout=5, progress=lambda t: None,
                     sleep=lambda s: None)
    assert ("deployment", "fe-system", "azureml-fe") in cluster.objects
    assert ("secret", "fe-system", "azureml-fe") in cluster.objects  # mounted by the pods
    assert cluster.objects[("config_map", "azureml", "azureml-fe")]["data"]["url"] == found.url
    published = cluster.objects[("secret", "azureml", "azureml-fe")]
    assert base64.b64decode(published["data"]["admin-token"]).decode() == found.admin_token


def test_no_load_balancer_address_is_a_clear_error():
    with pytest.raises(ProvisioningFailed, match=r"no load balancer address within 0 s.*LoadBalancer"):
        _install(MemoryCluster(lb_address=None).apis(), "img", namespace="azureml", replicas=1, timeout=0,
                 progress=lambda t: None, sleep=lambda s: None)


def test_without_an_image_or_a_registry_to_push_ours_to_the_error_says_which():
    from aml_core.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match=r"needs registry=.*or image="):
        frontdoor_install.install_frontdoor("unused-kubeconfig", timeout=5)


# ------------------------------------------------------------------ the CLI
def test_aml_aks_install_frontdoor_is_a_cli_command_that_finds_the_compute(tmp_path):
    from aml_core.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    aml = Path(sys.executable).parent / "aml"
    result = subprocess.run([str(aml), "--workspace", str(ws.root), "aks", "install-frontdoor", "--compute", "nope",
                             "--image", "img"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 3, result.stderr  # NotFound
    assert "no AKS compute target 'nope'" in result.stderr
    helped = subprocess.run([str(aml), "aks", "install-frontdoor", "--help"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert helped.returncode == 0 and "--image" in helped.stdout


def test_the_base_image_is_an_oci_layout_or_a_rootfs_tarball(tmp_path):
    import tarfile

    from aml_core.errors import InvalidConfig
    from aml_core.oci import write_layout
    from aml_provider_aks.cli import _base_image

    (tmp_path / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "rootfs" / "usr" / "bin" / "python3").write_text("#!/bin/sh\n")
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(tmp_path / "rootfs", arcname=".")
    from_tar = _base_image(str(tmp_path / "rootfs.tar"))
    assert len(from_tar.layers) == 1
    write_layout(from_tar, tmp_path / "layout", tag="base")
    assert _base_image(f"oci:{tmp_path / 'layout'}:base").digest == from_tar.digest
    with pytest.raises(InvalidConfig, match=r"neither an OCI layout .* nor an existing root file system"):
        _base_image(str(tmp_path / "missing.tar"))
