"""The official kubernetes Python client against the emulated API server: CRUD, the four
patch types, watch (resume, 410, bookmarks), selectors, Status errors, subresources."""

from __future__ import annotations

import json

import pytest
from cluster_testing import api_request, deployment, wait_for
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_configmap_crud_and_errors(k8s):
    v1 = client.CoreV1Api(k8s)
    body = {"metadata": {"name": "cfg", "labels": {"tier": "web"}}, "data": {"a": "1"}}
    created = v1.create_namespaced_config_map("default", body)
    assert created.metadata.resource_version and created.metadata.uid
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("default", body)
    st = _status(e.value)
    assert (e.value.status, st["reason"], st["kind"], st["details"]["name"]) == (409, "AlreadyExists", "Status", "cfg")

    got = v1.read_namespaced_config_map("cfg", "default")
    got.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("cfg", "default", got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    stale = got  # still carries the old resourceVersion
    stale.data["c"] = "3"
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("cfg", "default", stale)
    st = _status(e.value)
    assert e.value.status == 409 and st["reason"] == "Conflict" and "the object has been modified" in st["message"]

    v1.delete_namespaced_config_map("cfg", "default")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("cfg", "default")
    assert e.value.status == 404 and _status(e.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as e:
        v1.delete_namespaced_config_map("cfg", "default")
    assert e.value.status == 404


def test_invalid_object_is_422_with_causes(k8s):
    apps = client.AppsV1Api(k8s)
    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment("default", bad)
    st = _status(e.value)
    assert e.value.status == 422 and st["reason"] == "Invalid"
    assert any(c["field"] == "spec.template.metadata.labels" for c in st["details"]["causes"])


def test_missing_namespace_and_unknown_path(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert e.value.status == 404 and 'namespaces "nowhere" not found' in _status(e.value)["message"]
    code, body = api_request(cluster, "GET", "/apis/batch/v1/jobs")
    assert code == 404 and body["kind"] == "Status"
    code, body = api_request(cluster, "GET", "/api/v1/pods", token=None)
    assert code == 401 and body["reason"] == "Unauthorized"
    code, body = api_request(cluster, "POST", "/api/v1/namespaces/default/pods/x")
    assert code == 405 and body["reason"] == "MethodNotAllowed"


def test_patch_types(k8s):
    apps = client.AppsV1Api(k8s)
    d = deployment("p", probe=False, replicas=0)
    d["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "KEEP", "value": "yes"})
    apps.create_namespaced_deployment("default", d)

    # strategic merge (the client's default for dict bodies): env merged by name
    patched = apps.patch_namespaced_deployment("p", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "VERSION", "value": "v9"}]}]}}}})
    env = {e.name: e.value for e in patched.spec.template.spec.containers[0].env}
    assert env == {"VERSION": "v9", "KEEP": "yes"}
    assert patched.spec.template.spec.containers[0].image == HOST_PROCESS_IMAGE
    assert patched.metadata.generation == 2

    # JSON patch
    patched = apps.patch_namespaced_deployment("p", "default", [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "python:3.12"},
        {"op": "add", "path": "/metadata/labels/extra", "value": "1"}])
    assert patched.spec.template.spec.containers[0].image == "python:3.12"
    assert patched.metadata.labels["extra"] == "1"

    # merge patch replaces lists wholesale
    raw = apps.patch_namespaced_deployment("p", "default", {"metadata": {"labels": {"extra": None}}},
                                           _content_type="application/merge-patch+json").to_dict()
    assert "extra" not in raw["metadata"]["labels"]

    # a metadata-only change does not bump the generation
    gen = raw["metadata"]["generation"]
    again = apps.patch_namespaced_deployment("p", "default", {"metadata": {"annotations": {"x": "y"}}})
    assert again.metadata.generation == gen


def _settled(apps, name: str) -> None:
    """Wait until the deployment controller has observed the object (it writes status)."""
    wait_for(lambda: (apps.read_namespaced_deployment(name, "default").status or client.V1DeploymentStatus()).observed_generation,
             what="controller observed the deployment")
    import time
    time.sleep(0.3)


def test_scale_subresource_with_strategic_merge_patch(k8s):
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("s", probe=False, replicas=0))
    _settled(apps, "s")
    scale = apps.patch_namespaced_deployment_scale("s", "default", {"spec": {"replicas": 0}})
    assert scale.kind == "Scale" and scale.spec.replicas == 0 and scale.status.selector == "app=s"
    read = apps.read_namespaced_deployment_scale("s", "default")
    read.spec.replicas = 0
    assert apps.replace_namespaced_deployment_scale("s", "default", read).spec.replicas == 0
    read.metadata.resource_version = "1"
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment_scale("s", "default", read)
    assert e.value.status == 409


def test_status_subresource_semantics(k8s):
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("st", probe=False, replicas=0))
    _settled(apps, "st")
    d = apps.read_namespaced_deployment("st", "default")
    # a main-resource update ignores .status
    d.status = client.V1DeploymentStatus(replicas=42)
    after = apps.replace_namespaced_deployment("st", "default", d)
    assert after.status is None or after.status.replicas != 42
    # /status ignores .spec and does not bump the generation
    body = apps.read_namespaced_deployment("st", "default")
    body.spec.replicas = 7
    body.status = client.V1DeploymentStatus(replicas=0, observed_generation=1, collision_count=3)
    body.metadata.resource_version = None  # an unconditional status write
    out = apps.replace_namespaced_deployment_status("st", "default", body)
    assert out.spec.replicas == 0 and out.status.collision_count == 3 and out.metadata.generation == 1


def test_label_and_field_selectors(k8s):
    v1 = client.CoreV1Api(k8s)
    for name, labels in (("a", {"env": "prod", "tier": "web"}), ("b", {"env": "dev", "tier": "web"}),
                         ("c", {"env": "test"}), ("d", {})):
        v1.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kw) -> list[str]:
        return sorted(i.metadata.name for i in v1.list_namespaced_config_map("default", **kw).items)
    assert names(label_selector="env=prod") == ["a"]
    assert names(label_selector="env!=prod") == ["b", "c", "d"]
    assert names(label_selector="env in (prod,dev)") == ["a", "b"]
    assert names(label_selector="env notin (prod,dev)") == ["c", "d"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(label_selector="tier=web,env=dev") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="metadata.name!=c,metadata.namespace=default") == ["a", "b", "d"]
    with pytest.raises(ApiException) as e:
        v1.list_namespaced_config_map("default", field_selector="data.x=1")
    assert e.value.status == 400 and "field label not supported" in _status(e.value)["message"]
    page = v1.list_namespaced_config_map("default", limit=2)
    assert len(page.items) == 2 and page.metadata.var_continue
    rest = v1.list_namespaced_config_map("default", limit=2, _continue=page.metadata.var_continue)
    assert len(rest.items) == 2 and not rest.metadata.var_continue


def test_pod_phase_field_selector(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("ph", replicas=1))
    wait_for(lambda: v1.list_namespaced_pod("default", field_selector="status.phase=Running").items, what="running pod")
    assert v1.list_namespaced_pod("default", field_selector="status.phase=Pending").items == []


def test_watch_resume_and_expired(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    listed = v1.list_namespaced_config_map("default")
    rv = listed.metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    v1.patch_namespaced_config_map("w1", "default", {"data": {"k": "v"}})
    v1.delete_namespaced_config_map("w1", "default")
    w = watch.Watch()
    events = [(e["type"], e["object"].metadata.name) for e in
              w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1)]
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]

    cluster.store.compact()
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1):
            pass
    assert e.value.status == 410


def test_watch_initial_events_and_bookmark(cluster):
    api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "init"}})
    code, resp = api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
                             "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2", stream=True)
    assert code == 200
    lines = [json.loads(l) for l in resp.read().splitlines() if l.strip()]
    assert lines[0]["type"] == "ADDED" and lines[0]["object"]["metadata"]["name"] == "init"
    assert lines[1]["type"] == "BOOKMARK"
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_label_selector_transitions(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "t", "labels": {"sel": "no"}}})
    v1.patch_namespaced_config_map("t", "default", {"metadata": {"labels": {"sel": "yes"}}})
    v1.patch_namespaced_config_map("t", "default", {"metadata": {"labels": {"sel": "no"}}})
    events = [e["type"] for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", label_selector="sel=yes",
                                                       resource_version=rv, timeout_seconds=1)]
    assert events == ["ADDED", "DELETED"]


def test_table_output(cluster):
    api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "tab"}, "data": {"a": "b"}})
    code, table = api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps",
                              headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert code == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["tab", 1]
    assert table["metadata"]["resourceVersion"]


def test_cascading_delete_and_orphan(k8s, cluster):
    apps = client.AppsV1Api(k8s)
    v1 = client.CoreV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("gc", replicas=1, probe=False))
    wait_for(lambda: v1.list_namespaced_pod("default", label_selector="app=gc").items, what="pod")
    apps.delete_namespaced_deployment("gc", "default", propagation_policy="Orphan")
    wait_for(lambda: not apps.list_namespaced_deployment("default").items, what="deployment gone")
    rs = apps.list_namespaced_replica_set("default").items
    assert len(rs) == 1 and not rs[0].metadata.owner_references
    apps.delete_namespaced_replica_set(rs[0].metadata.name, "default", propagation_policy="Foreground")
    wait_for(lambda: not apps.list_namespaced_replica_set("default").items and
             not v1.list_namespaced_pod("default", label_selector="app=gc").items, timeout=30, what="cascade")


def test_state_persists_across_restart(tmp_path):
    from aml_emulator.cluster import ClusterService, StateFormatError
    state = tmp_path / "state"
    c = ClusterService(state_dir=state).start()
    try:
        code, cm = api_request(c, "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "keep"}, "data": {"a": "1"}})
        assert code == 201
        rv1 = int(cm["metadata"]["resourceVersion"])
        first_url, first_token = c.url, c.token
    finally:
        c.stop()
    c = ClusterService(state_dir=state).start()
    try:
        # same address and token: a kubeconfig written before the restart still works
        assert (c.url, c.token) == (first_url, first_token)
        code, got = api_request(c, "GET", "/api/v1/namespaces/default/configmaps/keep")
        assert code == 200 and got["data"] == {"a": "1"}
        code, cm2 = api_request(c, "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "next"}})
        assert int(cm2["metadata"]["resourceVersion"]) > rv1
        # a watch from a pre-restart RV cannot be replayed: 410 in the stream
        code, resp = api_request(c, "GET", f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv1}", stream=True)
        first = json.loads(resp.readline())
        assert first["type"] == "ERROR" and first["object"]["code"] == 410
    finally:
        c.stop()
    data = json.loads((state / "cluster-state.json").read_text())
    data["format"] = 99
    (state / "cluster-state.json").write_text(json.dumps(data))
    with pytest.raises(StateFormatError, match="newer"):
        ClusterService(state_dir=state).start()


def test_autoscaling_v1_is_served_from_v2(k8s):
    v1hpa = client.AutoscalingV1Api(k8s)
    v2hpa = client.AutoscalingV2Api(k8s)
    v1hpa.create_namespaced_horizontal_pod_autoscaler("default", {
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60}})
    as_v2 = v2hpa.read_namespaced_horizontal_pod_autoscaler("h", "default")
    assert as_v2.spec.metrics[0].resource.target.average_utilization == 60
    v2hpa.patch_namespaced_horizontal_pod_autoscaler("h", "default", {"spec": {"maxReplicas": 7}})
    as_v1 = v1hpa.read_namespaced_horizontal_pod_autoscaler("h", "default")
    assert (as_v1.spec.max_replicas, as_v1.spec.target_cpu_utilization_percentage) == (7, 60)
    assert as_v1.api_version == "autoscaling/v1"


def test_unimplemented_subresource_is_named(cluster):
    code, body = api_request(cluster, "POST", "/api/v1/namespaces/default/pods/p/attach?stdout=true", body={})
    assert code == 501 and body["reason"] == "NotImplemented" and "pods/attach" in body["message"]


def test_pod_spec_is_immutable_except_image(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_pod("default", {"metadata": {"name": "imm"}, "spec": {"containers": [
        {"name": "c", "image": HOST_PROCESS_IMAGE, "command": ["sleep", "30"]}]}})
    wait_for(lambda: cluster.kubelet.process_groups(), timeout=15, what="container running")
    # the process runtime pulls no image: the container is stopped for the new image, which
    # then fails to pull
    v1.patch_namespaced_pod("imm", "default", {"spec": {"containers": [{"name": "c", "image": "python:3.12"}]}})

    def stopped_for_the_new_image():
        st = v1.read_namespaced_pod("imm", "default").status
        cs = st.container_statuses[0] if st and st.container_statuses else None
        return cs and cs.image == "python:3.12" and cs.state.waiting and cs.state.waiting.reason == "ErrImagePull"
    wait_for(stopped_for_the_new_image, timeout=15, what="the container stopped for the new image")
    assert cluster.kubelet.process_groups() == []
    with pytest.raises(ApiException) as e:
        v1.patch_namespaced_pod("imm", "default", {"spec": {"containers": [{"name": "c", "command": ["true"]}]}})
    assert e.value.status == 422 and "pod updates may not change fields" in _status(e.value)["message"]


def test_delete_collection_by_label(k8s):
    v1 = client.CoreV1Api(k8s)
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        v1.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": {"tier": tier}}})
    v1.delete_collection_namespaced_config_map("default", label_selector="tier=x")
    assert sorted(i.metadata.name for i in v1.list_namespaced_config_map("default").items) == ["c"]


def test_watch_sends_periodic_bookmarks(cluster):
    code, resp = api_request(cluster, "GET", "/api/v1/namespaces/default/configmaps?watch=true&allowWatchBookmarks=true"
                             "&resourceVersion=0&timeoutSeconds=2", stream=True)
    assert code == 200
    lines = [json.loads(l) for l in resp.read().splitlines() if l.strip()]
    bookmarks = [l for l in lines if l["type"] == "BOOKMARK"]
    assert bookmarks and all(b["object"]["metadata"]["resourceVersion"] for b in bookmarks)


def test_load_balancer_service_reports_ingress(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_service("default", {"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "selector": {"app": "lb"}, "ports": [{"port": 80, "targetPort": 8080}]}})

    def ingress():
        st = v1.read_namespaced_service("lb", "default").status
        return st and st.load_balancer and st.load_balancer.ingress
    ing = wait_for(ingress, timeout=10, what="ingress")
    svc = v1.read_namespaced_service("lb", "default")
    assert ing[0].ip == "127.0.0.1"
    assert svc.metadata.annotations["emulator.aml/url"] == f"http://127.0.0.1:{ing[0].ports[0].port}"


def test_racing_creates_give_exactly_one_201(cluster):
    import threading
    codes: list[int] = []

    def create() -> None:
        code, _ = api_request(cluster, "POST", "/api/v1/namespaces/default/configmaps", body={"metadata": {"name": "race"}})
        codes.append(code)
    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [201] + [409] * 7


def test_an_idle_cluster_does_not_churn_resource_versions(k8s, cluster):
    apps = client.AppsV1Api(k8s)
    apps.create_namespaced_deployment("default", deployment("idle", replicas=1))
    client.AutoscalingV2Api(k8s).create_namespaced_horizontal_pod_autoscaler("default", {
        "metadata": {"name": "idle"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "idle"},
                                               "maxReplicas": 2}})
    wait_for(lambda: (apps.read_namespaced_deployment("idle", "default").status or client.V1DeploymentStatus()).ready_replicas == 1,
             timeout=20, what="ready")
    import time
    time.sleep(1.0)
    rv = cluster.store.resource_version
    time.sleep(1.5)
    assert cluster.store.resource_version == rv
