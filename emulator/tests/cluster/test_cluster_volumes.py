"""Pod volumes on a kubelet whose containers are host processes: the mount-path rewriting,
the kinds of volume, and the image runtime getting the same volumes and its args."""

from __future__ import annotations

import io
import sys
import tarfile

import pytest
from aml_core.oci import EnvironmentSpec, Image
from aml_core.oci.layers import Blob, gzip_bytes
from aml_core.oci.media import OCI_LAYER_GZIP
from aml_emulator.cluster import ClusterService
from aml_emulator.cluster.imageruntime import ImagePodRuntime
from aml_emulator.cluster.volumes import MountError, key_payload, rewrite_paths, write_atomically
from cluster_testing import wait_for
from kubernetes import client, config
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

MOUNTS = [("/etc/app", "/pods/p/volumes/app"), ("/etc/app/nested", "/pods/p/volumes/nested"), ("/data/", "/pods/p/d")]


@pytest.mark.parametrize("text, expected", [
    ("/etc/app", "/pods/p/volumes/app"),
    ("/etc/app/key", "/pods/p/volumes/app/key"),
    ("--token-file=/etc/app/key", "--token-file=/pods/p/volumes/app/key"),
    ("/etc/app/nested/x", "/pods/p/volumes/nested/x"),          # the longer mount path wins
    ("/etc/app2/key", "/etc/app2/key"),                         # not a path prefix
    ("/x/etc/app/key", "/x/etc/app/key"),                       # not at the start of a path
    ("a:/etc/app:/data/f", "a:/pods/p/volumes/app:/pods/p/d/f"),  # PATH-like lists; trailing slash ignored
    ("cat /etc/app/k && ls /data", "cat /pods/p/volumes/app/k && ls /pods/p/d"),
    ("", ""),
])
def test_mount_paths_are_rewritten_where_they_are_paths(text, expected):
    assert rewrite_paths(text, MOUNTS) == expected


def test_payloads_and_the_atomic_writer(tmp_path):
    data = {"a": b"1", "b": b"2"}
    assert key_payload(data, None, 0o644, False, "{key}") == {"a": (b"1", 0o644), "b": (b"2", 0o644)}
    assert key_payload(data, [{"key": "a", "path": "sub/x", "mode": 0o600}], 0o644, False, "{key}") == \
        {"sub/x": (b"1", 0o600)}
    assert key_payload(data, [{"key": "zz"}], 0o644, True, "{key}") == {}
    with pytest.raises(MountError, match="references non-existent secret key: zz"):
        key_payload(data, [{"key": "zz"}], 0o644, False, "references non-existent secret key: {key}")
    with pytest.raises(MountError, match="must be relative"):
        key_payload(data, [{"key": "a", "path": "../escape"}], 0o644, False, "{key}")
    target = tmp_path / "vol"
    write_atomically(target, {"sub/x": (b"1", 0o600), "y": (b"2", 0o644)})
    assert (target / "sub" / "x").read_bytes() == b"1" and (target / "y").is_symlink()
    assert (target / "sub" / "x").stat().st_mode & 0o777 == 0o600
    write_atomically(target, {"y": (b"3", 0o644)})
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == ["y"]
    assert (target / "y").read_bytes() == b"3"
    assert len([p for p in target.iterdir() if p.name.startswith("..") and p.name != "..data"]) == 1


def test_config_map_items_sub_path_and_downward_api(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "settings"},
                                                "data": {"app.ini": "level=debug", "other": "x"}})
    script = ("import sys; print(open(sys.argv[1]).read(), open(sys.argv[2]).read(), open(sys.argv[3]).read(), "
              "sys.argv[4], flush=True)")
    v1.create_namespaced_pod("default", {"metadata": {"name": "cfg", "labels": {"tier": "web"}}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": HOST_PROCESS_IMAGE, "command": [sys.executable, "-c", script],
                        "args": ["/config/conf/app.ini", "/only-ini", "/meta/labels", "$(CONF)"],
                        "env": [{"name": "CONF", "value": "/config/conf"}],
                        "volumeMounts": [{"name": "settings", "mountPath": "/config"},
                                         {"name": "settings", "mountPath": "/only-ini", "subPath": "conf/app.ini"},
                                         {"name": "meta", "mountPath": "/meta"}]}],
        "volumes": [{"name": "settings", "configMap": {"name": "settings", "items": [
                        {"key": "app.ini", "path": "conf/app.ini"}]}},
                    {"name": "meta", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}})
    out = wait_for(lambda: (cluster.kubelet.read_logs("default", "cfg", "c") or b"").decode().strip(),
                   timeout=15, what="the pod's output")
    worker = cluster.kubelet.workers[("default", "cfg")]
    assert out == f'level=debug level=debug tier="web" {worker.mounted["settings"]}/conf'


def _image() -> Image:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    entrypoint = ["/bin/sh", "-c",
                  'echo "$(cat "$1") $2 api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; exec sleep 30', "tool"]
    return Image.assemble({"config": {"Entrypoint": entrypoint, "Cmd": ["/never/used", "cmd"], "Labels": {
        "org.aml.environment": EnvironmentSpec(name="tool").to_label()}}}, [layer])


class _LocalImages(ImagePodRuntime):
    """The image runtime with the registry pull replaced by one in-memory image."""

    def __init__(self, image: Image, **kw) -> None:
        super().__init__(**kw)
        self.image = image

    def _pull(self, image_ref, pull_auth):
        return self.image


def test_the_image_runtime_gets_args_as_the_cmd_and_the_volumes(tmp_path):
    runtime = _LocalImages(_image(), cache_dir=tmp_path / "cache")
    with ClusterService(pod_runtime=runtime, backoff_base=0.3) as c:
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        try:
            v1 = client.CoreV1Api(k8s)
            v1.create_namespaced_secret("default", {"metadata": {"name": "tool"}, "stringData": {"value": "v4lue"}})
            v1.create_namespaced_pod("default", {"metadata": {"name": "tool"}, "spec": {
                "containers": [{"name": "tool", "image": "registry.example/tool:1",
                                "args": ["/etc/tool/value", "$(GREETING)"],
                                "env": [{"name": "GREETING", "value": "hello"}],
                                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/tool"}]}],
                "volumes": [{"name": "cfg", "secret": {"secretName": "tool"}}]}})
            out = wait_for(lambda: (c.kubelet.read_logs("default", "tool", "tool") or b"").decode().strip(),
                           timeout=30, what="the image's output")
            assert out == f"v4lue hello api=127.0.0.1:{c.server.port}"
        finally:
            k8s.close()


def test_a_volume_mount_must_name_a_declared_volume(k8s):
    import json as _json

    from kubernetes.client.exceptions import ApiException
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(k8s).create_namespaced_pod("default", {"metadata": {"name": "bad"}, "spec": {
            "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}],
            "volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]}})
    body = _json.loads(e.value.body)
    assert e.value.status == 422
    assert body["message"] == ('Pod "bad" is invalid: [spec.volumes[1].name: Duplicate value: "a", '
                               'spec.containers[0].volumeMounts[0].name: Not found: "nope"]')
