"""``RouteSync``: cluster objects (plain dicts) in, front door routes out.

The front door here is a real, unserved :class:`FrontDoor` (calls apply at once), so what is
checked is what the admin API would show.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from aml_core.frontdoor import FrontDoor
from aml_core.frontdoor.kube import ENTRY_KEY, ENTRY_LABEL, RouteSync, entry_secret


def payload(upstream: str = "default/web", key: str = "k1") -> dict:
    return {"auth": "key", "keys": {"primary": key, "secondary": ""},
            "versions": {"web": {"upstream": upstream, "is_default": True}}}


def endpoints(name: str, ready: list[str], not_ready: list[str] = (), namespace: str = "default") -> dict:
    subset: dict = {"ports": [{"name": "http", "port": 5001}]}
    if ready:
        subset["addresses"] = [{"ip": ip} for ip in ready]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"metadata": {"name": name, "namespace": namespace}, "subsets": [subset]}


def replicas(fd: FrontDoor, service: str, version: str = "web") -> list[str] | None:
    described = fd.describe(service)
    return None if described is None else described["versions"][version]["replicas"]


@pytest.fixture
def fd() -> FrontDoor:
    return FrontDoor("admin-token")


@pytest.fixture
def sync(fd) -> RouteSync:
    return RouteSync(fd)


def test_an_entry_is_added_changed_and_deleted(fd, sync):
    secret = entry_secret("web", "default", payload(key="k1"))
    sync.on_secret(secret)
    assert fd.describe("web")["keys"]["primary"] != "k1"  # masked, but present
    assert sync.services == {("default", "web-frontdoor"): "web"}
    first = fd.describe("web")["revision"]

    sync.on_secret(entry_secret("web", "default", payload(key="k2")))
    assert fd.describe("web")["revision"] not in (None, first)

    sync.on_secret(secret | {}, deleted=True)
    assert fd.describe("web") is None and sync.services == {}


def test_a_relabelled_secret_moves_the_route_to_the_new_service(fd, sync):
    secret = entry_secret("web", "default", payload())
    sync.on_secret(secret)
    relabelled = json.loads(json.dumps(secret))
    relabelled["metadata"]["labels"][ENTRY_LABEL] = "web2"
    sync.on_secret(relabelled)
    assert fd.describe("web") is None and fd.describe("web2") is not None
    # the label removed: the Secret no longer carries an entry, so the route goes
    unlabelled = json.loads(json.dumps(relabelled))
    del unlabelled["metadata"]["labels"][ENTRY_LABEL]
    sync.on_secret(unlabelled)
    assert fd.describe("web2") is None and sync.services == {}


def test_other_secrets_are_ignored(fd, sync):
    sync.on_secret({"metadata": {"name": "db", "namespace": "default"}, "data": {"password": "eA=="}})
    sync.on_secret({"metadata": {"name": "db", "namespace": "default"}}, deleted=True)
    assert sync.services == {} and fd.describe("db") is None


def test_endpoints_follow_ready_and_not_ready_addresses(fd, sync):
    sync.on_secret(entry_secret("web", "default", payload()))
    assert replicas(fd, "web") == []
    sync.on_endpoints(endpoints("web", ["10.0.0.1"], not_ready=["10.0.0.2"]))
    assert replicas(fd, "web") == ["http://10.0.0.1:5001"]
    sync.on_endpoints(endpoints("web", ["10.0.0.1", "10.0.0.2"]))
    assert replicas(fd, "web") == ["http://10.0.0.1:5001", "http://10.0.0.2:5001"]
    sync.on_endpoints(endpoints("web", [], not_ready=["10.0.0.1", "10.0.0.2"]))
    assert replicas(fd, "web") == []
    sync.on_endpoints(endpoints("web", ["10.0.0.3"]))
    sync.on_endpoints(endpoints("web", ["10.0.0.3"]), deleted=True)
    assert replicas(fd, "web") == []


def test_endpoints_seen_before_the_entry_are_used_by_it(fd, sync):
    sync.on_endpoints(endpoints("web", ["10.0.0.1"]))
    sync.on_endpoints(endpoints("web", ["10.0.0.9"], namespace="other"))
    sync.on_secret(entry_secret("web", "default", payload()))
    assert replicas(fd, "web") == ["http://10.0.0.1:5001"]


def test_an_invalid_entry_is_not_routed_and_logged(fd, sync, caplog):
    caplog.set_level(logging.WARNING, logger="aml_core.frontdoor.kube")
    sync.on_secret(entry_secret("web", "default", payload()))
    assert fd.describe("web") is not None
    # valid JSON, invalid entry: the route goes (as it would after a restart), with a log line
    bad = entry_secret("web", "default", {"auth": "key", "versions": {}})
    sync.on_secret(bad)
    assert fd.describe("web") is None and sync.services == {}
    assert any("default/web-frontdoor" in r.getMessage() and "invalid" in r.getMessage() for r in caplog.records)

    caplog.clear()
    unreadable = entry_secret("other", "default", payload())
    unreadable["data"][ENTRY_KEY] = base64.b64encode(b"{not json").decode()
    sync.on_secret(unreadable)
    assert fd.describe("other") is None
    assert any("default/other-frontdoor" in r.getMessage() for r in caplog.records)

    sync.on_secret(entry_secret("web", "default", payload()))  # fixed: routed again
    assert fd.describe("web") is not None


def test_resync_applies_a_list_and_drops_what_is_gone(fd, sync):
    sync.resync([entry_secret("a", "default", payload("default/a")), entry_secret("b", "ns2", payload("ns2/b"))],
                [endpoints("a", ["10.0.0.1"]), endpoints("b", ["10.0.0.2"], namespace="ns2")])
    assert replicas(fd, "a") == ["http://10.0.0.1:5001"] and replicas(fd, "b") == ["http://10.0.0.2:5001"]

    # a route put over the admin API is not this sync's to drop
    fd.put_service("manual", {"auth": "none", "versions": {"v": {"backends": ["http://h:1"], "is_default": True}}})
    # after a watch gap: b's Secret and Endpoints are gone, a changed its replicas
    sync.resync([entry_secret("a", "default", payload("default/a"))], [endpoints("a", ["10.0.0.3"])])
    assert fd.describe("b") is None
    assert replicas(fd, "a") == ["http://10.0.0.3:5001"]
    assert fd.describe("manual") is not None
    assert sync.services == {("default", "a-frontdoor"): "a"}

    # b's entry comes back: its upstream was emptied, not left with the stale replica
    sync.resync_secrets([entry_secret("a", "default", payload("default/a")), entry_secret("b", "ns2", payload("ns2/b"))])
    assert replicas(fd, "b") == []
