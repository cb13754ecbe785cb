"""Traffic split, per-replica limits and the queue (R7), timeouts (R6), unreachable replicas,
pass-through (R8), metrics under load (R5) and replacing an entry under load."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import requests
from frontdoor_testkit import plain


async def _burst(url: str, n: int, concurrency: int) -> list[tuple[int, str | None]]:
    """POST ``n`` times with ``concurrency`` connections; ``(status, x-ms-version)`` each."""
    out: list[tuple[int, str | None]] = []
    queue = list(range(n))
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            while queue:
                queue.pop()
                async with session.post(url, data=b"{}") as resp:
                    await resp.read()
                    out.append((resp.status, resp.headers.get("x-ms-version")))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def test_traffic_follows_the_percentiles_and_the_remainder_goes_to_the_default(frontdoor, backends):
    urls = {tag: backends(tag)[1] for tag in ("blue", "green", "red")}
    frontdoor.put_ok("ep", {"auth": "none", "max_concurrent_requests_per_replica": 64, "versions": {
        "blue": {"backends": [urls["blue"]], "traffic_percentile": 50},
        "green": {"backends": [urls["green"]], "traffic_percentile": 20},
        # red is the default with 10% of its own plus the unassigned 20%
        "red": {"backends": [urls["red"]], "traffic_percentile": 10, "is_default": True},
    }})
    n = 3000
    results = asyncio.run(_burst(frontdoor.score_url("ep"), n, 16))
    assert all(status == 200 for status, _ in results)
    counts = {tag: sum(1 for _, v in results if v == tag) for tag in urls}
    assert sum(counts.values()) == n
    for tag, p in (("blue", 0.5), ("green", 0.2), ("red", 0.3)):
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(counts[tag] - n * p) <= 3.5 * sigma, (tag, counts)


def test_a_version_without_percentile_gets_nothing_unless_default(frontdoor, backends):
    _, a = backends("a")
    _, b = backends("b")
    frontdoor.put_ok("ep", {"auth": "none", "max_concurrent_requests_per_replica": 8, "versions": {
        "a": {"backends": [a], "traffic_percentile": None, "is_default": True},
        "b": {"backends": [b], "traffic_percentile": None}}})
    results = asyncio.run(_burst(frontdoor.score_url("ep"), 200, 4))
    assert {v for _, v in results} == {"a"}


def test_replicas_of_a_version_share_the_load(frontdoor, backends):
    made = [backends(f"r{i}") for i in range(3)]
    frontdoor.put_ok("svc", plain("svc", [url for _, url in made]))
    for _ in range(30):
        assert frontdoor.score("svc").status_code == 200
    assert [b.calls for b, _ in made] == [10, 10, 10]  # idle replicas: round robin


def test_one_request_per_replica_then_queue_then_503(frontdoor, backends):
    backend, url = backends("slow", delay=1.5)
    frontdoor.put_ok("svc", plain("svc", [url]))  # AKS defaults: 1 per replica, 500 ms queue
    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(resp=requests.post(frontdoor.score_url("svc"), timeout=10)))
    thread.start()
    deadline = time.monotonic() + 5
    while backend.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    second = requests.post(frontdoor.score_url("svc"), timeout=10)
    waited = time.monotonic() - started
    thread.join(10)
    assert first["resp"].status_code == 200
    assert second.status_code == 503, second.text
    assert second.json()["error"]["code"] == "ServiceUnavailable"
    assert 0.45 <= waited < 1.4, waited
    assert backend.calls == 1
    m = frontdoor.metrics()["services"]["svc"]["versions"]["svc"]
    assert m["rejected_503"] == 1 and m["requests"] == 2 and m["busy"] == 0


def test_a_queued_request_is_served_when_a_slot_frees(frontdoor, backends):
    backend, url = backends("slow", delay=0.3)
    frontdoor.put_ok("svc", plain("svc", [url], max_queue_wait_ms=3000))
    with ThreadPoolExecutor(3) as pool:
        statuses = [f.result().status_code for f in
                    [pool.submit(requests.post, frontdoor.score_url("svc"), timeout=10) for _ in range(3)]]
    assert statuses == [200, 200, 200] and backend.calls == 3


def test_scoring_timeout_gives_504(frontdoor, backends):
    _, url = backends("stuck", delay=1.2)
    frontdoor.put_ok("svc", plain("svc", [url], scoring_timeout_ms=300))
    started = time.monotonic()
    resp = frontdoor.score("svc")
    elapsed = time.monotonic() - started
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "GatewayTimeout"
    assert 0.25 <= elapsed < 1.1
    m = frontdoor.metrics()["services"]["svc"]["versions"]["svc"]
    assert m["timeouts_504"] == 1 and m["busy"] == 0


def test_an_unreachable_replica_is_retried_on_another_else_502(frontdoor, backends, dead_url):
    live, url = backends("live")
    frontdoor.put_ok("svc", plain("svc", [dead_url, url]))
    statuses = [frontdoor.score("svc").status_code for _ in range(6)]
    assert statuses == [200] * 6 and live.calls == 6
    frontdoor.put_ok("solo", plain("solo", [dead_url]))
    resp = frontdoor.score("solo")
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "BadGateway"
    assert frontdoor.metrics()["services"]["solo"]["versions"]["solo"]["busy"] == 0


def test_bodies_headers_and_backend_errors_pass_through(frontdoor, backends):
    _, url = backends("b")
    frontdoor.put_ok("svc", plain("svc", [url]))
    resp = frontdoor.score("svc", data=b'{"data": [1, 2]}', params={"a": "1"},
                           headers={"x-ms-request-id": "rid-1", "x-request-id": "rid-2",
                                    "content-type": "application/json"})
    assert resp.status_code == 200
    assert resp.json() == {"backend": "b", "method": "POST", "path": "/score", "query": "a=1",
                           "body": '{"data": [1, 2]}'}
    assert resp.headers["x-ms-request-id"] == "rid-1" and resp.headers["x-request-id"] == "rid-2"
    assert resp.headers["x-ms-version"] == "svc"
    crashed = frontdoor.score("svc", headers={"x-status": "500"})  # run() raised (R8)
    assert crashed.status_code == 500 and crashed.headers["x-backend"] == "b"
    assert crashed.json()["backend"] == "b"
    get = frontdoor.http.get(frontdoor.score_url("svc"), params={"x": "2"})
    assert get.status_code == 200 and get.json()["method"] == "GET"
    options = frontdoor.http.options(frontdoor.score_url("svc"))
    assert options.status_code == 200 and options.json()["method"] == "OPTIONS"
    swagger = frontdoor.http.get(f"{frontdoor.url}/api/v1/service/svc/swagger.json")
    assert swagger.status_code == 200 and swagger.json()["path"] == "/swagger.json"


def test_metrics_under_a_bounded_concurrent_load(frontdoor, backends):
    made = [backends(f"r{i}", delay=0.8) for i in range(2)]
    frontdoor.put_ok("svc", plain("svc", [u for _, u in made], max_queue_wait_ms=5000))
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(requests.post, frontdoor.score_url("svc"), timeout=10) for _ in range(4)]
        deadline = time.monotonic() + 5
        m = {}
        while time.monotonic() < deadline:
            m = frontdoor.metrics()["services"]["svc"]["versions"]["svc"]
            if m["busy"] + m["queued"] == 4:
                break
            time.sleep(0.02)
        assert m["replicas"] == 2 and m["busy"] == 2 and m["queued"] == 2, m
        assert m["utilization"] == 200.0
        assert [f.result().status_code for f in futures] == [200] * 4
    m = frontdoor.metrics()["services"]["svc"]["versions"]["svc"]
    assert m == {"replicas": 2, "busy": 0, "queued": 0, "utilization": 0.0, "requests": 4,
                 "rejected_503": 0, "timeouts_504": 0}


def test_replacing_the_entry_lets_in_flight_requests_finish_on_the_old_one(frontdoor, backends):
    old, old_url = backends("old", delay=0.6)
    new, new_url = backends("new")
    frontdoor.put_ok("svc", plain("svc", [old_url], max_queue_wait_ms=3000))
    with ThreadPoolExecutor(2) as pool:
        in_flight = [pool.submit(requests.post, frontdoor.score_url("svc"), timeout=10) for _ in range(2)]
        deadline = time.monotonic() + 5
        while old.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        frontdoor.put_ok("svc", plain("svc", [new_url]))
        assert frontdoor.score("svc").json()["backend"] == "new"
        answers = [f.result() for f in in_flight]
    assert [a.status_code for a in answers] == [200, 200]
    # the one on the old replica finished there; the queued one moved to the new replica
    assert sorted(a.json()["backend"] for a in answers) == ["new", "old"]
    assert old.calls == 1 and new.calls == 2


def test_utilization_by_deployment_follows_the_naming_convention(frontdoor, backends):
    _, url = backends("b")
    frontdoor.put_ok("plain", plain("plain", [url]))
    frontdoor.put_ok("ep", {"auth": "none", "versions": {
        "v1": {"backends": [url], "traffic_percentile": 100, "is_default": True},
        "v2": {"backends": [], "traffic_percentile": 0}}})
    assert frontdoor.app.utilization_by_deployment() == {"plain": 0.0, "ep-v1": 0.0, "ep-v2": 0.0}
