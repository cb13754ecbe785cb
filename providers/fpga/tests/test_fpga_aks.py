"""The documents' FPGA flow on the emulated AKS cluster: an FPGA node pool (Standard_PB6s)
whose node advertises ``microsoft.com/fpga``, ``Image.create`` with
``AccelContainerImage.image_configuration()``, ``Webservice.deploy_from_image`` with an
``AksWebservice`` configuration, the pod requesting the FPGA, and ``PredictionClient``
calling the service's LoadBalancer address with the service key as ``access_token``."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np
import pytest
from test_fpga_image import converted_model

from aml_core import InvalidConfig, Model, Workspace
from aml_core.compute import ComputeTarget
from aml_core.errors import AmlError
from aml_core.images import Image
from aml_core.webservice import Webservice
from aml_provider_aks import AksCompute, AksWebservice
from aml_provider_fpga import AccelContainerImage, PredictionClient, PredictionError
from aml_provider_fpga.accelerator import AcceleratedModel


@contextmanager
def emulator_with_profile(profiles):
    from aml_emulator import Emulator

    saved = os.environ.get("AML_PROFILE_DIR")
    os.environ["AML_PROFILE_DIR"] = str(profiles)
    try:
        with Emulator() as emu:
            profile = emu.profile()
            profile = type(profile).from_dict({**profile.to_dict(), "extra": {
                **profile.extra, "arm_polling_interval": 0.2}})
            profile.save()
            yield emu
    finally:
        if saved is None:
            os.environ.pop("AML_PROFILE_DIR", None)
        else:
            os.environ["AML_PROFILE_DIR"] = saved


@pytest.fixture
def emulator(tmp_path):
    with emulator_with_profile(tmp_path / "profiles") as emu:
        yield emu


@pytest.fixture
def ws(emulator, tmp_path):
    return Workspace.create(tmp_path / "ws", container_registry="profile:emulator")


def provision(ws, name, **config):
    target = ComputeTarget.create(ws, name, AksCompute.provisioning_configuration(
        agent_count=1, cluster_purpose="DevTest", **config))
    target.wait_for_completion(timeout_sec=60)
    return target


def kube(target):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=target.record.details["kubeconfig"])
    return client.CoreV1Api(api)


def test_the_documents_flow_serves_the_model_from_an_fpga_node(ws, tmp_path):
    target = provision(ws, "fpga-aks", vm_size="Standard_PB6s", location="eastus")
    core = kube(target)
    (node,) = core.list_node().items
    assert node.status.capacity["microsoft.com/fpga"] == "1"
    assert node.status.allocatable["microsoft.com/fpga"] == "1"

    converted = converted_model(ws, tmp_path)
    image = Image.create(ws, "small-accel", [converted], AccelContainerImage.image_configuration())
    config = AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=1,
                                                auth_enabled=True)
    service = Webservice.deploy_from_image(ws, "small-fpga", image, config, target)
    service.wait_for_deployment()
    assert service.state == "Healthy", service.error

    (pod,) = core.list_namespaced_pod("default", label_selector="app=small-fpga").items
    (container,) = pod.spec.containers
    assert container.resources.requests == {"microsoft.com/fpga": "1"}
    assert container.image == image.image_location

    primary, secondary = service.get_keys()
    # the documents' way from scoring_uri to the client's address
    address = service.scoring_uri
    use_ssl = address.startswith("https")
    host, port = address[address.find("/") + 2:].strip("/").rsplit(":", 1)
    client = PredictionClient(host, int(port), use_ssl=use_ssl, access_token=primary,
                              service_name=service.name)
    batch = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    expected = AcceleratedModel.load(tmp_path / "small.onnx", "MSFP16").run(
        {"images": batch}).outputs["probabilities"]
    np.testing.assert_array_equal(np.asarray(client.score_numpy_array(batch)), expected)
    np.testing.assert_array_equal(np.asarray(PredictionClient(
        host, int(port), access_token=secondary, service_name=service.name).score_numpy_array(batch)),
        expected)
    with pytest.raises(PredictionError, match="UNAUTHENTICATED"):
        PredictionClient(host, int(port), access_token="wrong", service_name=service.name
                         ).score_numpy_array(batch)
    service.regen_key("Primary")
    new_primary, still_secondary = service.get_keys()
    assert new_primary != primary and still_secondary == secondary
    with pytest.raises(PredictionError, match="UNAUTHENTICATED"):
        PredictionClient(host, int(port), access_token=primary, service_name=service.name
                         ).score_numpy_array(batch)
    np.testing.assert_array_equal(np.asarray(PredictionClient(
        host, int(port), access_token=new_primary, service_name=service.name
    ).score_numpy_array(batch)), expected)
    primary = new_primary
    assert "accelerator serving 1 model(s)" in service.get_logs()
    assert primary not in service.get_logs()

    service.delete()
    assert core.list_namespaced_pod("default", label_selector="app=small-fpga").items == []
    with pytest.raises(AmlError):
        Webservice(ws, "small-fpga")

    # Model.deploy with the image configuration packages and deploys in one step
    again = Model.deploy(ws, "small-fpga2", [converted], AccelContainerImage.image_configuration(),
                         AksWebservice.deploy_configuration(autoscale_enabled=False,
                                                            num_replicas=1, auth_enabled=False),
                         target)
    again.wait_for_deployment()
    assert again.state == "Healthy", again.error
    host, port = again.scoring_uri.removeprefix("http://").rsplit(":", 1)
    np.testing.assert_array_equal(np.asarray(PredictionClient(
        host, int(port), service_name=again.name).score_numpy_array(batch)), expected)
    again.delete()


def test_a_pool_without_fpgas_is_refused_naming_the_vm_size_and_the_fix(ws, tmp_path):
    target = provision(ws, "cpu-aks", vm_size="Standard_D3_v2")
    image = Image.create(ws, "small-accel", [converted_model(ws, tmp_path)],
                         AccelContainerImage.image_configuration())
    config = AksWebservice.deploy_configuration(autoscale_enabled=False, num_replicas=1)
    service = Webservice.deploy_from_image(ws, "small-fpga", image, config, target)
    with pytest.raises(InvalidConfig, match=r"Standard_D3_v2 nodes.*vm_size='Standard_PB6s'"):
        service.wait_for_deployment()


def test_a_pod_asking_for_more_fpgas_than_the_node_has_stays_pending(ws, tmp_path):
    """The kubelet's scheduling check, through the official client: a second FPGA pod on a
    one-FPGA node is Unschedulable, as the real scheduler says it."""
    from kubernetes import client

    target = provision(ws, "fpga-aks", vm_size="Standard_PB6s", location="westus2")
    core = kube(target)

    def pod(name):
        return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
            containers=[client.V1Container(
                name="c", image="busybox", command=["sleep", "60"],
                resources=client.V1ResourceRequirements(requests={"microsoft.com/fpga": "1"},
                                                        limits={"microsoft.com/fpga": "1"}))]))
    deadline = time.monotonic() + 30
    core.create_namespaced_pod("default", pod("first"))
    while core.read_namespaced_pod("first", "default").spec.node_name != "emulator-node":
        assert time.monotonic() < deadline, "the first FPGA pod was never bound to the node"
        time.sleep(0.2)
    core.create_namespaced_pod("default", pod("second"))
    while True:
        second = core.read_namespaced_pod("second", "default")
        scheduled = [c for c in second.status.conditions or [] if c.type == "PodScheduled"]
        if scheduled and scheduled[0].status == "False":
            break
        assert time.monotonic() < deadline, second.status
        time.sleep(0.2)
    assert scheduled[0].reason == "Unschedulable"
    assert scheduled[0].message == "0/1 nodes are available: 1 Insufficient microsoft.com/fpga."
    assert second.spec.node_name is None
    # the FPGA is released when the first pod goes, and the second one then runs
    core.delete_namespaced_pod("first", "default", grace_period_seconds=0)
    while core.read_namespaced_pod("second", "default").spec.node_name != "emulator-node":
        assert time.monotonic() < deadline + 30, "the second pod never got the released FPGA"
        time.sleep(0.2)
