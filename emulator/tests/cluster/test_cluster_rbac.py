"""ServiceAccounts, RBAC and service-account tokens: rule matching, the API's answers
(checked with kubectl and the official client), and the error paths."""

from __future__ import annotations

import base64
import json
import sys

import pytest
from aml_emulator.cluster import ClusterService
from aml_emulator.cluster.auth import UserInfo
from aml_emulator.cluster.models import lookup
from aml_emulator.cluster.rbac import Attributes, Authorizer, rule_allows
from aml_emulator.cluster.store import Store
from cluster_testing import api_request, wait_for
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

RBAC = "rbac.authorization.k8s.io"


# ------------------------------------------------------------------ rule matching
@pytest.mark.parametrize("rule, attrs, allowed", [
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}, Attributes("list", "secrets"), True),
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}, Attributes("watch", "secrets"), False),
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}, Attributes("delete", "secrets", name="x"), True),
    ({"apiGroups": ["apps"], "resources": ["secrets"], "verbs": ["*"]}, Attributes("get", "secrets"), False),
    ({"apiGroups": ["*"], "resources": ["deployments"], "verbs": ["get"]}, Attributes("get", "deployments", "apps"), True),
    # a subresource is its own resource: pods does not grant pods/log, pods/log does
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, Attributes("get", "pods", subresource="log"), False),
    ({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}, Attributes("get", "pods", subresource="log"), True),
    ({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}, Attributes("get", "pods"), False),
    ({"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]},
     Attributes("patch", "deployments", "apps", subresource="scale"), True),
    ({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["patch"]},
     Attributes("patch", "deployments", "apps", subresource="scale"), True),
    # resourceNames restrict to those names; a list has no name
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]},
     Attributes("get", "configmaps", name="a"), True),
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]},
     Attributes("get", "configmaps", name="b"), False),
    ({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["list"]},
     Attributes("list", "configmaps"), False),
    ({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}, Attributes("get", path="/metrics"), True),
    ({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}, Attributes("get", path="/logs/x"), True),
    ({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}, Attributes("get", path="/metrics"), False),
    ({"nonResourceURLs": ["*"], "verbs": ["*"]}, Attributes("get", "secrets"), False),
])
def test_rule_matching(rule, attrs, allowed):
    assert rule_allows(rule, attrs) is allowed


def _sa(ns: str, name: str) -> UserInfo:
    return UserInfo(f"system:serviceaccount:{ns}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"))


def test_bindings_grant_where_they_live_and_to_whom_they_name():
    store = Store()
    roles, crs = lookup(RBAC, "v1", "roles"), lookup(RBAC, "v1", "clusterroles")
    rbs, crbs = lookup(RBAC, "v1", "rolebindings"), lookup(RBAC, "v1", "clusterrolebindings")
    read = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    store.create(crs, {"metadata": {"name": "cm-reader"}, "rules": read})
    store.create(roles, {"metadata": {"name": "pod-lister", "namespace": "a"},
                         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    ref = {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cm-reader"}
    # a RoleBinding to a ClusterRole grants it in its namespace only; the subject's namespace
    # defaults to the binding's
    store.create(rbs, {"metadata": {"name": "b1", "namespace": "a"}, "roleRef": ref,
                       "subjects": [{"kind": "ServiceAccount", "name": "bot"}]})
    store.create(rbs, {"metadata": {"name": "b2", "namespace": "a"},
                       "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "pod-lister"},
                       "subjects": [{"kind": "Group", "apiGroup": RBAC, "name": "system:serviceaccounts:b"}]})
    store.create(rbs, {"metadata": {"name": "dangling", "namespace": "a"},
                       "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "gone"},
                       "subjects": [{"kind": "Group", "apiGroup": RBAC, "name": "system:authenticated"}]})
    store.create(crbs, {"metadata": {"name": "everyone-reads-cm"}, "roleRef": ref,
                        "subjects": [{"kind": "User", "apiGroup": RBAC, "name": "alice"}]})
    authz = Authorizer(store)
    get_cm = lambda ns: Attributes("get", "configmaps", name="x", namespace=ns)
    assert authz.authorize(_sa("a", "bot"), get_cm("a"))[0]
    assert not authz.authorize(_sa("a", "bot"), get_cm("c"))[0]
    assert not authz.authorize(_sa("c", "bot"), get_cm("a"))[0]
    assert authz.authorize(UserInfo("alice", ("system:authenticated",)), get_cm("c"))[0]
    assert authz.authorize(UserInfo("alice", ()), get_cm(""))[0]  # cluster-wide via the ClusterRoleBinding
    assert authz.authorize(_sa("b", "anyone"), Attributes("list", "pods", namespace="a"))[0]
    assert not authz.authorize(_sa("b", "anyone"), Attributes("list", "pods", namespace="b"))[0]
    allowed, reason = authz.authorize(_sa("c", "x"), Attributes("list", "pods", namespace="a"))
    assert not allowed and reason == 'RBAC: role.rbac.authorization.k8s.io "gone" not found'
    # discovery is open to every authenticated identity; other paths are not
    assert authz.authorize(_sa("c", "x"), Attributes("get", path="/apis/apps/v1"))[0]
    assert not authz.authorize(_sa("c", "x"), Attributes("get", path="/metrics"))[0]
    assert authz.authorize(UserInfo("admin", ("system:masters",)), Attributes("delete", "nodes", name="n"))[0]


# ------------------------------------------------------------------ the API, with real clients
def _token(k8s, ns: str, name: str, **spec) -> str:
    req = client.CoreV1Api(k8s).create_namespaced_service_account_token(name, ns, {"spec": spec})
    return req.status.token


def _client_for(cluster, token: str):
    cfg = client.Configuration()
    cfg.host = cluster.url
    cfg.ssl_ca_cert = str(cluster.ca_path)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


def test_every_namespace_gets_a_default_service_account(k8s, kubectl):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespace({"metadata": {"name": "fresh"}})
    assert v1.read_namespaced_service_account("default", "fresh").metadata.name == "default"
    v1.delete_namespaced_service_account("default", "fresh")
    wait_for(lambda: any(s.metadata.name == "default" for s in v1.list_namespaced_service_account("fresh").items),
             timeout=10, what="the serviceaccount controller to recreate default")
    table = kubectl.run("get", "serviceaccounts", "-n", "fresh").stdout
    assert table.split("\n")[0].split() == ["NAME", "SECRETS", "AGE"] and "default" in table


def test_kubectl_creates_and_prints_the_rbac_kinds(kubectl, tmp_path):
    # the typed `kubectl create` helpers send protobuf bodies
    kubectl.run("create", "namespace", "team")
    kubectl.run("create", "serviceaccount", "bot", "-n", "team")
    kubectl.run("create", "role", "reader", "-n", "team", "--verb=get,list", "--resource=pods,pods/log")
    kubectl.run("create", "rolebinding", "bot-reads", "-n", "team", "--role=reader", "--serviceaccount=team:bot")
    kubectl.run("create", "clusterrole", "cm-reader", "--verb=get", "--resource=configmaps")
    kubectl.run("create", "clusterrolebinding", "bot-cm", "--clusterrole=cm-reader", "--serviceaccount=team:bot",
                "--group=devs")
    role = kubectl.json("get", "role", "reader", "-n", "team")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]
    wide = kubectl.run("get", "rolebinding", "-n", "team", "-o", "wide").stdout.split("\n")
    assert wide[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert "Role/reader" in wide[1] and "team/bot" in wide[1]
    crb = kubectl.run("get", "clusterrolebinding", "bot-cm", "-o", "wide").stdout
    assert "ClusterRole/cm-reader" in crb and "devs" in crb
    assert kubectl.run("get", "clusterroles").stdout.split("\n")[0].split() == ["NAME", "CREATED", "AT"]
    # client-side apply goes through OpenAPI v3, then a strategic merge patch
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(json.dumps({"apiVersion": f"{RBAC}/v1", "kind": "Role",
                                    "metadata": {"name": "applied", "namespace": "team"},
                                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}))
    kubectl.run("apply", "-f", str(manifest))
    manifest.write_text(manifest.read_text().replace('"get"', '"get", "watch"'))
    assert "configured" in kubectl.run("apply", "-f", str(manifest)).stdout
    assert kubectl.json("get", "role", "applied", "-n", "team")["rules"][0]["verbs"] == ["get", "watch"]
    # a token for the service account, used by kubectl itself
    token = kubectl.run("create", "token", "bot", "-n", "team").stdout.strip()
    assert token.count(".") == 2
    ok = kubectl.run("--token", token, "get", "pods", "-n", "team")
    assert "No resources found" in ok.stderr
    denied = kubectl.run("--token", token, "get", "secrets", "-n", "team", check=False)
    assert denied.returncode != 0
    assert ('Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:team:bot" cannot '
            'list resource "secrets" in API group "" in the namespace "team"') in denied.stderr
    # impersonation, as cluster-admin may
    impersonated = kubectl.run("--as", "system:serviceaccount:team:bot", "get", "configmaps", "cm-x", "-n", "other",
                               check=False)
    assert "NotFound" in impersonated.stderr  # allowed by the ClusterRoleBinding: the map just does not exist
    assert "Forbidden" in kubectl.run("--as", "someone", "get", "pods", check=False).stderr


def test_invalid_rbac_objects_are_422_with_causes(k8s, cluster, kubectl, tmp_path):
    rbac = client.RbacAuthorizationV1Api(k8s)
    no_ref = {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "no-ref"},
              "subjects": [{"kind": "ServiceAccount", "name": "x"}]}
    # the typed client refuses to send a RoleBinding without roleRef, so send it raw
    status, body = api_request(cluster, "POST", f"/apis/{RBAC}/v1/namespaces/default/rolebindings", body=no_ref)
    assert status == 422 and body["reason"] == "Invalid"
    message = ('RoleBinding.rbac.authorization.k8s.io "no-ref" is invalid: [roleRef.kind: Unsupported '
               'value: "": supported values: "Role", "ClusterRole", roleRef.name: Required value]')
    assert body["message"] == message
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [
        ("roleRef.kind", "FieldValueNotSupported"), ("roleRef.name", "FieldValueRequired")]
    manifest = tmp_path / "no-ref.json"
    manifest.write_text(json.dumps(no_ref))
    printed = kubectl.run("create", "-f", str(manifest), check=False)
    assert printed.returncode != 0  # kubectl prints a 422's causes one per line
    assert printed.stderr.splitlines() == ['The RoleBinding "no-ref" is invalid: ',
                                           '* roleRef.kind: Unsupported value: "": supported values: "Role", "ClusterRole"',
                                           "* roleRef.name: Required value"]
    with pytest.raises(ApiException) as e:
        rbac.create_cluster_role_binding({"metadata": {"name": "sa-no-ns"}, "roleRef": {
            "apiGroup": RBAC, "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "ServiceAccount", "name": "x"}]})
    assert e.value.status == 422 and "subjects[0].namespace: Required value" in json.loads(e.value.body)["message"]
    status, body = api_request(cluster, "POST", f"/apis/{RBAC}/v1/clusterroles", body={
        "metadata": {"name": "no-verbs"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]})
    assert status == 422 and body["message"] == ('ClusterRole.rbac.authorization.k8s.io "no-verbs" is invalid: '
                                                 'rules[0].verbs: Required value: verbs must contain at least one value')
    rbac.create_namespaced_role_binding("default", {"metadata": {"name": "b"}, "roleRef": {
        "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]})
    stored = rbac.read_namespaced_role_binding("b", "default")
    assert stored.role_ref.api_group == RBAC and stored.subjects[0].api_group == RBAC  # defaulted
    stored.role_ref.name = "other"
    with pytest.raises(ApiException) as e:
        rbac.replace_namespaced_role_binding("b", "default", stored)
    assert e.value.status == 422 and "cannot change roleRef" in json.loads(e.value.body)["message"]
    # RBAC names are path segments: colons are fine
    rbac.create_cluster_role({"metadata": {"name": "system:aml:reader"},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})


def test_a_service_account_token_is_authorized_by_rbac(cluster, k8s):
    v1, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    v1.create_namespace({"metadata": {"name": "apps"}})
    v1.create_namespaced_service_account("apps", {"metadata": {"name": "bot"}})
    rbac.create_namespaced_role("apps", {"metadata": {"name": "cm"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "watch"]}]})
    rbac.create_namespaced_role_binding("apps", {"metadata": {"name": "bot-cm"}, "roleRef": {
        "apiGroup": RBAC, "kind": "Role", "name": "cm"}, "subjects": [{"kind": "ServiceAccount", "name": "bot"}]})
    v1.create_namespaced_config_map("apps", {"metadata": {"name": "one"}, "data": {"k": "v"}})
    token = _token(k8s, "apps", "bot")
    with _client_for(cluster, token) as api:
        bot = client.CoreV1Api(api)
        assert [c.metadata.name for c in bot.list_namespaced_config_map("apps").items] == ["one"]
        assert bot.read_namespaced_config_map("one", "apps").data == {"k": "v"}
        # discovery is allowed to any authenticated identity
        assert client.CoreApi(api).get_api_versions().versions == ["v1"]
        with pytest.raises(ApiException) as e:
            bot.list_config_map_for_all_namespaces()
        body = json.loads(e.value.body)
        assert e.value.status == 403 and body["reason"] == "Forbidden"
        assert body["message"] == ('configmaps is forbidden: User "system:serviceaccount:apps:bot" cannot list '
                                   'resource "configmaps" in API group "" at the cluster scope')
        assert body["details"] == {"kind": "configmaps"}
        with pytest.raises(ApiException) as e:
            bot.read_namespaced_config_map("two", "apps")
        assert json.loads(e.value.body)["message"].startswith('configmaps "two" is forbidden: User')
        with pytest.raises(ApiException) as e:
            bot.delete_namespaced_config_map("one", "apps")
        assert e.value.status == 403
    # a watch is authorized as "watch": of the one name (fieldSelector) it may, of all it may not
    status, _ = api_request(cluster, "GET", "/api/v1/namespaces/apps/configmaps?watch=true&timeoutSeconds=1",
                            token=token)
    assert status == 403
    status, stream = api_request(cluster, "GET", "/api/v1/namespaces/apps/configmaps?watch=true&timeoutSeconds=1"
                                 "&fieldSelector=metadata.name%3Done", token=token, stream=True)
    assert status == 200 and b'"ADDED"' in stream.read()
    # the service account goes away: so does its token
    v1.delete_namespaced_service_account("bot", "apps")
    status, body = api_request(cluster, "GET", "/api/v1/namespaces/apps/configmaps", token=token)
    assert status == 401 and body["reason"] == "Unauthorized"
    # and a recreated account of the same name does not revive it
    v1.create_namespaced_service_account("apps", {"metadata": {"name": "bot"}})
    assert api_request(cluster, "GET", "/api/v1/namespaces/apps/configmaps", token=token)[0] == 401
    assert api_request(cluster, "GET", "/api/v1/namespaces/apps/configmaps", token=token[:-2] + "xx")[0] == 401


def test_token_requests_are_validated_and_audiences_respected(cluster, k8s):
    with pytest.raises(ApiException) as e:
        _token(k8s, "default", "default", expiration_seconds=60)
    assert e.value.status == 422 and "may not specify a duration less than 10 minutes" in e.value.body
    with pytest.raises(ApiException) as e:
        _token(k8s, "default", "nobody")
    assert e.value.status == 404
    other = _token(k8s, "default", "default", audiences=["https://vault.example"])
    assert api_request(cluster, "GET", "/api/v1/namespaces/default/pods", token=other)[0] == 401
    claims = json.loads(base64.urlsafe_b64decode(other.split(".")[1] + "=="))
    assert claims["sub"] == "system:serviceaccount:default:default" and claims["aud"] == ["https://vault.example"]


def test_tokens_survive_a_restart_with_a_state_dir(tmp_path):
    state = tmp_path / "state"
    c = ClusterService(state_dir=state).start()
    try:
        from kubernetes import config
        k8s = config.new_client_from_config(config_file=str(c.kubeconfig_path))
        token = _token(k8s, "default", "default")
        k8s.close()
        # the default account may read nothing: a 403 proves the token authenticated
        assert api_request(c, "GET", "/api/v1/namespaces/default/secrets", token=token)[0] == 403
    finally:
        c.stop()
    c = ClusterService(state_dir=state).start()
    try:
        assert api_request(c, "GET", "/api/v1/namespaces/default/secrets", token=token)[0] == 403
    finally:
        c.stop()


# ------------------------------------------------------------------ pods and service accounts
def _pod(name: str, script: str, **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": HOST_PROCESS_IMAGE,
                                                  "command": [sys.executable, "-c", script]}], **spec}}


def test_a_pod_naming_a_missing_service_account_is_refused(k8s):
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(k8s).create_namespaced_pod("default", _pod("p", "pass", serviceAccountName="ghost"))
    body = json.loads(e.value.body)
    assert e.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('pods "p" is forbidden: error looking up service account default/ghost: '
                               'serviceaccount "ghost" not found')


def test_a_deployment_without_its_service_account_reports_failed_create_then_recovers(k8s):
    apps, v1 = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    tmpl = _pod("x", "import time; time.sleep(60)", serviceAccountName="late")
    tmpl["spec"]["restartPolicy"] = "Always"
    apps.create_namespaced_deployment("default", {"metadata": {"name": "late"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "late"}},
        "template": {"metadata": {"labels": {"app": "late"}}, "spec": tmpl["spec"]}}})

    def failure():
        for rs in apps.list_namespaced_replica_set("default", label_selector="app=late").items:
            for c in (rs.status.conditions or []) if rs.status else []:
                if c.type == "ReplicaFailure":
                    return rs, c
        return None
    rs, cond = wait_for(failure, timeout=10, what="ReplicaFailure on the replica set")
    assert cond.reason == "FailedCreate" and cond.status == "True"
    assert cond.message == (f'pods "{rs.metadata.name}-" is forbidden: error looking up service account '
                            'default/late: serviceaccount "late" not found')
    events = v1.list_namespaced_event("default", field_selector=f"involvedObject.name={rs.metadata.name}").items
    assert any(e.reason == "FailedCreate" and e.type == "Warning" and e.message == f"Error creating: {cond.message}"
               for e in events)
    dep = wait_for(lambda: next((c for c in apps.read_namespaced_deployment("late", "default").status.conditions or []
                                 if c.type == "ReplicaFailure"), None), timeout=10, what="ReplicaFailure on the deployment")
    assert dep.reason == "FailedCreate" and dep.message == cond.message
    v1.create_namespaced_service_account("default", {"metadata": {"name": "late"}})
    wait_for(lambda: (apps.read_namespaced_deployment("late", "default").status.available_replicas or 0) == 1
             and failure() is None, timeout=30, what="the pod created and the condition cleared")


def test_a_missing_secret_volume_holds_the_pod_in_container_creating_until_it_appears(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    script = "import sys, time; print('got', open(sys.argv[1]).read(), flush=True); time.sleep(60)"
    pod = _pod("mounts", script, volumes=[{"name": "creds", "secret": {"secretName": "later"}},
                                          {"name": "scratch", "emptyDir": {}}])
    pod["spec"]["containers"][0]["args"] = ["/creds/password"]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "creds", "mountPath": "/creds"},
                                                    {"name": "scratch", "mountPath": "/tmp/scratch"}]
    v1.create_namespaced_pod("default", pod)

    def failed_mount():
        return [e for e in v1.list_namespaced_event("default", field_selector="involvedObject.name=mounts").items
                if e.reason == "FailedMount"]
    (event,) = wait_for(failed_mount, timeout=10, what="FailedMount")
    assert event.type == "Warning"
    assert event.message == 'MountVolume.SetUp failed for volume "creds" : secret "later" not found'
    def reported():
        st = v1.read_namespaced_pod("mounts", "default").status
        return st if st is not None and st.container_statuses else None
    status = wait_for(reported, timeout=10, what="the pod's status")
    assert status.phase == "Pending"
    assert status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert {c.type: c.status for c in status.conditions}["PodReadyToStartContainers"] == "False"
    v1.create_namespaced_secret("default", {"metadata": {"name": "later"}, "stringData": {"password": "pw1"}})
    wait_for(lambda: "got pw1" in (cluster.kubelet.read_logs("default", "mounts", "c") or b"").decode(),
             timeout=15, what="the pod started with the secret")
    assert v1.read_namespaced_pod("mounts", "default").status.phase == "Running"
    # an updated Secret reaches the mounted file (atomically, through the ..data link)
    worker = cluster.kubelet.workers[("default", "mounts")]
    v1.patch_namespaced_secret("later", "default", {"stringData": {"password": "pw2"}})
    wait_for(lambda: (worker.mounted["creds"] / "password").read_text() == "pw2", timeout=10, what="the update")
    assert (worker.mounted["scratch"]).is_dir()


def test_service_account_token_automount_and_opt_out(k8s, cluster):
    v1 = client.CoreV1Api(k8s)
    v1.create_namespaced_service_account("default", {"metadata": {"name": "quiet"},
                                                     "automountServiceAccountToken": False})
    sa_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    # prints whether the in-pod path was rewritten to a mounted token dir, and what is there
    # (the path is spelled in two parts in the script, or the kubelet would rewrite it there too)
    script = (f"import os, sys; d = sys.argv[1]; mounted = d != '/var/run/' + {sa_path[len('/var/run/'):]!r}; "
              "print('token' if mounted and os.path.exists(d + '/token') else 'none', "
              "os.environ['KUBERNETES_SERVICE_PORT'], open(d + '/namespace').read() if mounted else '-', flush=True)")
    specs = {"plain": {}, "quiet-sa": {"serviceAccountName": "quiet"},
             "quiet-pod": {"automountServiceAccountToken": False},
             "loud-pod": {"serviceAccountName": "quiet", "automountServiceAccountToken": True}}
    for name, spec in specs.items():
        body = _pod(name, script, **spec)
        body["spec"]["containers"][0]["args"] = [sa_path]
        v1.create_namespaced_pod("default", body)
    port = str(cluster.server.port)

    def output(name: str) -> str:
        return (cluster.kubelet.read_logs("default", name, "c") or b"").decode().strip()
    for name, expected in (("plain", f"token {port} default"), ("quiet-sa", f"none {port} -"),
                           ("quiet-pod", f"none {port} -"), ("loud-pod", f"token {port} default")):
        wait_for(lambda name=name: output(name), timeout=15, what=f"{name}'s output")
        assert output(name) == expected, name
