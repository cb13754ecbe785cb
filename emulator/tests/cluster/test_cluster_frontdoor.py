"""The front door runs in-process in the cluster and feeds the HPA controller."""

from __future__ import annotations

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from aml_emulator.cluster import ClusterService
from cluster_testing import deployment, wait_for
from kubernetes import client


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(1.5)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_frontdoor_is_served_with_an_admin_token(cluster: ClusterService):
    assert requests.get(cluster.frontdoor_url + "/", timeout=5).status_code == 200
    admin = {"Authorization": f"Bearer {cluster.frontdoor_admin_token}"}
    assert requests.get(cluster.frontdoor_url + "/-/services", timeout=5).status_code == 401
    assert requests.get(cluster.frontdoor_url + "/-/services", headers=admin, timeout=5).json() == {"services": []}
    assert cluster.frontdoor_admin_token not in repr(cluster.frontdoor)


def test_hpa_scales_on_the_frontdoor_load(k8s, cluster: ClusterService):
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    try:
        apps, auto = client.AppsV1Api(k8s), client.AutoscalingV2Api(k8s)
        apps.create_namespaced_deployment("default", deployment("web", replicas=1, probe=False))
        auto.create_namespaced_horizontal_pod_autoscaler("default", {
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 3,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 70}}}]}})
        admin = {"Authorization": f"Bearer {cluster.frontdoor_admin_token}"}
        # a plain service "web" is served by the Deployment "web"
        resp = requests.put(f"{cluster.frontdoor_url}/-/services/web", headers=admin, timeout=5, json={
            "auth": "none", "max_queue_wait_ms": 5000, "versions": {"web": {
                "backends": [f"http://127.0.0.1:{backend.server_address[1]}"],
                "traffic_percentile": 100, "is_default": True}}})
        assert resp.status_code == 200, resp.text
        score = f"{cluster.frontdoor_url}/api/v1/service/web/score"
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(requests.post, score, json={}, timeout=15) for _ in range(3)]
            # (1 busy + 2 queued) / 1 replica = 300% of a 70% target: scale to the max
            wait_for(lambda: apps.read_namespaced_deployment("web", "default").spec.replicas == 3,
                     timeout=4, what="scale up on front door load")
            assert [f.result().status_code for f in futures] == [200, 200, 200]
        hpa = auto.read_namespaced_horizontal_pod_autoscaler("web", "default")
        assert hpa.status.desired_replicas == 3
    finally:
        backend.shutdown()
        backend.server_close()
