"""Strict images: a pod's image is pulled whatever its command; one that cannot be pulled
gives ``ErrImagePull``, then ``ImagePullBackOff`` on the controllers' clock, with the pull
error in the events. Only the named pseudo-image runs a command on the host."""

from __future__ import annotations

import socket
import sys

import yaml
from cluster_testing import Kubectl, wait_for
from kubernetes import client, config
from test_cluster_volumes import _image, _LocalImages

from aml_emulator.cluster import ClusterService
from aml_emulator.cluster.imageruntime import ImagePodRuntime
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _waiting(v1: client.CoreV1Api, name: str) -> client.V1ContainerStateWaiting | None:
    st = v1.read_namespaced_pod(name, "default").status
    cs = st.container_statuses if st else None
    return cs[0].state.waiting if cs and cs[0].state.waiting else None


def _events(v1: client.CoreV1Api, name: str) -> list[tuple[str, str]]:
    return [(e.reason, e.message) for e in v1.list_namespaced_event("default").items
            if e.involved_object.name == name]


def test_an_image_that_cannot_be_pulled_backs_off_on_the_clock_even_with_a_command(tmp_path):
    clock = FakeClock()
    with ClusterService(clock=clock, backoff_base=10.0) as c:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        try:
            v1 = client.CoreV1Api(k8s)
            v1.create_namespaced_pod("default", {"metadata": {"name": "typo"}, "spec": {"containers": [
                {"name": "app", "image": "pyhton:3.11", "command": [sys.executable, "-c", "print('ran on the host')"]}]}})
            first = wait_for(lambda: _waiting(v1, "typo") if (_waiting(v1, "typo") or client.V1ContainerStateWaiting()).reason
                             == "ErrImagePull" else None, what="ErrImagePull")
            assert 'failed to pull and unpack image "pyhton:3.11"' in first.message
            assert HOST_PROCESS_IMAGE in first.message  # the opt-in is named
            assert c.kubelet.process_groups() == []  # nothing ran on the host
            wait_for(lambda: any(r == "Failed" and m.startswith('Failed to pull image "pyhton:3.11": failed to pull')
                                 for r, m in _events(v1, "typo")), what="the pull error in the events")

            # the retry waits for the back-off on the cluster's clock, not on wall time
            pulls = len([r for r, _ in _events(v1, "typo") if r == "Failed"])
            assert (_waiting(v1, "typo")).reason == "ErrImagePull"
            clock.t += 10.5
            wait_for(lambda: (_waiting(v1, "typo") or client.V1ContainerStateWaiting()).reason == "ImagePullBackOff",
                     what="ImagePullBackOff")
            wait_for(lambda: any(r == "BackOff" and m == 'Back-off pulling image "pyhton:3.11"'
                                 for r, m in _events(v1, "typo")), what="the BackOff event")
            events = _events(v1, "typo")
            assert len([r for r, _ in events if r == "Failed"]) >= pulls
            assert c.kubelet.process_groups() == []
        finally:
            k8s.close()


def test_the_image_runtime_pulls_the_image_of_a_container_with_a_command(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    runtime = ImagePodRuntime(cache_dir=tmp_path / "cache")
    with ClusterService(pod_runtime=runtime, backoff_base=0.3) as c:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        try:
            v1 = client.CoreV1Api(k8s)
            image = f"127.0.0.1:{closed}/models/scorer:1"
            v1.create_namespaced_pod("default", {"metadata": {"name": "unreachable"}, "spec": {"containers": [
                {"name": "app", "image": image, "command": ["sleep", "30"]}]}})
            waiting = wait_for(lambda: _waiting(v1, "unreachable"), what="the pull failure")
            assert waiting.reason in ("ErrImagePull", "ImagePullBackOff")
            assert "cannot reach registry" in waiting.message and "Connection refused" in waiting.message
            assert c.kubelet.process_groups() == []

            # the opt-in still runs a host process in the same cluster
            v1.create_namespaced_pod("default", {"metadata": {"name": "host"}, "spec": {"containers": [
                {"name": "app", "image": HOST_PROCESS_IMAGE, "command": ["sleep", "30"]}]}})
            wait_for(lambda: (v1.read_namespaced_pod("host", "default").status or client.V1PodStatus()).phase == "Running",
                     what="the host-process pod running")
        finally:
            k8s.close()


def test_a_command_runs_inside_the_pulled_image_and_exec_and_cp_see_its_root(tmp_path):
    runtime = _LocalImages(_image(), cache_dir=tmp_path / "cache")
    with ClusterService(pod_runtime=runtime, backoff_base=0.3) as c:
        kubectl = Kubectl(c.kubeconfig_path, tmp_path / "kube-cache")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tool"}, "spec": {"containers": [
            {"name": "tool", "image": "registry.example/tool:1", "command": ["/bin/sh", "-c", "echo started; exec sleep 60"]}]}}
        kubectl.run("apply", "-f", "-", input=yaml.safe_dump(pod))
        kubectl.run("wait", "--for=condition=Ready", "pod/tool", "--timeout=60s")
        assert kubectl.run("logs", "tool").stdout == "started\n"  # the command replaced the image's entrypoint
        root = runtime.engine.cache_dir / "images"
        cwd = kubectl.run("exec", "tool", "--", "pwd").stdout.strip()
        assert cwd.startswith(str(root))  # the image's working directory, in its unpacked root
        # kubectl cp reads and writes the image's root, not the host's
        (tmp_path / "note.txt").write_text("hello")
        kubectl.run("cp", str(tmp_path / "note.txt"), "tool:/app/note.txt")
        kubectl.run("cp", "tool:/app/README", str(tmp_path / "README"))
        assert (tmp_path / "README").read_text() == "hi"
        written = list(root.glob("*/rootfs/app/note.txt")) or list(root.rglob("app/note.txt"))
        assert written and written[0].read_text() == "hello"
