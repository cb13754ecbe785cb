"""Extended resources on the emulated node (what an FPGA device plugin advertises): the node's
capacity and allocatable as kubectl shows them, and pods that request more than is free kept
Pending with the scheduler's condition and event until a holder goes."""

from __future__ import annotations

import json

from cluster_testing import wait_for

FPGA = "microsoft.com/fpga"


def fpga_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "60"],
                                     "resources": {"requests": {FPGA: "1"}, "limits": {FPGA: "1"}}}]}}


def test_the_node_advertises_what_it_is_given_and_forgets_a_zero(cluster, kubectl):
    cluster.set_extended_resources({FPGA: 2})
    node = kubectl.json("get", "node", "emulator-node", "-o", "json")
    assert node["status"]["capacity"][FPGA] == "2" and node["status"]["allocatable"][FPGA] == "2"
    cluster.set_extended_resources({FPGA: 0})
    node = kubectl.json("get", "node", "emulator-node", "-o", "json")
    assert FPGA not in node["status"].get("allocatable", {})


def test_a_pod_beyond_the_free_fpgas_waits_unschedulable_until_one_is_released(cluster, kubectl):
    cluster.set_extended_resources({FPGA: 1})
    kubectl.run("apply", "-f", "-", input=json.dumps(fpga_pod("holder")))
    wait_for(lambda: kubectl.json("get", "pod", "holder", "-o", "json")["spec"].get("nodeName"),
             what="the holder bound to the node")
    kubectl.run("apply", "-f", "-", input=json.dumps(fpga_pod("waiter")))

    def unschedulable():
        pod = kubectl.json("get", "pod", "waiter", "-o", "json")
        return next((c for c in pod["status"].get("conditions") or []
                     if c["type"] == "PodScheduled" and c["status"] == "False"), None)
    condition = wait_for(unschedulable, what="the waiter marked Unschedulable")
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == f"0/1 nodes are available: 1 Insufficient {FPGA}."
    events = kubectl.run("get", "events", "--field-selector", "involvedObject.name=waiter").stdout
    assert "FailedScheduling" in events
    kubectl.run("delete", "pod", "holder", "--grace-period=0", "--force")
    wait_for(lambda: kubectl.json("get", "pod", "waiter", "-o", "json")["spec"].get("nodeName"),
             what="the waiter bound once the FPGA was released")
