"""Container limits on the emulated node: a container over its memory limit is OOMKilled
(exit 137) and restarted, with ``lastState`` and an event saying so, as on a real node; a CPU
limit, which the emulator cannot enforce, is reported as such in the pod's conditions."""

from __future__ import annotations

import sys
import time

from kubernetes import client

from aml_emulator.cluster.kubelet import CPU_LIMIT_CONDITION, HOST_PROCESS_IMAGE

LEAK = ("import time\n"
        "hoard = []\n"
        "while True:\n"
        "    hoard.append(b'x' * (8 << 20))\n"  # 8 MiB a step, every page touched
        "    time.sleep(0.02)\n")


def _pod(name: str, command: list[str], limits: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": HOST_PROCESS_IMAGE, "command": command,
                                     "resources": {"limits": limits}}]}}


def _wait(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_container_over_its_memory_limit_is_oom_killed_and_restarted(k8s):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", _pod("leaky", [sys.executable, "-c", LEAK], {"memory": "120Mi"}))

    def oom_recorded():
        status = v1.read_namespaced_pod("leaky", "default").status
        cs = ((status and status.container_statuses) or [None])[0]
        last = cs and cs.last_state and cs.last_state.terminated
        return cs if last and last.reason == "OOMKilled" and cs.restart_count >= 1 else None

    cs = _wait("the container to be OOMKilled and restarted", oom_recorded)
    assert cs.last_state.terminated.exit_code == 137
    assert cs.restart_count >= 1
    events = v1.list_namespaced_event("default", field_selector="involvedObject.name=leaky").items
    assert any(e.reason == "OOMKilling" and "120Mi" not in e.message and str(120 * 2 ** 20) in e.message
               for e in events), [(e.reason, e.message) for e in events]


def test_a_container_under_its_limit_runs_and_a_cpu_limit_is_reported_not_enforced(k8s):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", _pod("calm", [sys.executable, "-c", "import time; time.sleep(60)"],
                                             {"memory": "200Mi", "cpu": "500m"}))

    def running():
        status = v1.read_namespaced_pod("calm", "default").status
        ok = status and status.phase == "Running" and status.container_statuses[0].ready
        return status if ok else None

    status = _wait("the pod to run", running)
    cond = next(c for c in status.conditions if c.type == CPU_LIMIT_CONDITION)
    assert cond.status == "False" and cond.reason == "NotEnforced"
    assert "CPU limit (0.5 cores) is not enforced" in cond.message
    assert status.container_statuses[0].restart_count == 0
