"""Unit checks of the pure parts: patch flavours, selectors, store semantics."""

from __future__ import annotations

import pytest
from aml_emulator.cluster import exceptions as err
from aml_emulator.cluster import patch as p
from aml_emulator.cluster.models import lookup
from aml_emulator.cluster.selectors import (
    label_selector_object,
    parse_field_selector,
    parse_label_selector,
    selector_to_string,
)
from aml_emulator.cluster.store import Store

POD = {"spec": {"containers": [
    {"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
     "ports": [{"containerPort": 80, "name": "http"}]},
    {"name": "b", "image": "y:1"}]}}


def test_strategic_merge_merges_lists_by_key():
    out = p.strategic_merge(POD, {"spec": {"containers": [
        {"name": "a", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
         "ports": [{"containerPort": 81}]}]}})
    a = out["spec"]["containers"][0]
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "b"]
    assert a["image"] == "x:1"
    assert a["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert [x["containerPort"] for x in a["ports"]] == [80, 81]


def test_strategic_merge_directives():
    out = p.strategic_merge(POD, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["a"]
    out = p.strategic_merge(POD, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                           "containers": [{"name": "a", "image": "x:2"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]
    out = p.strategic_merge({"metadata": {"finalizers": ["x"]}}, {"metadata": {"finalizers": ["y"]}})
    assert out["metadata"]["finalizers"] == ["x", "y"]
    out = p.strategic_merge({"spec": {"a": {"b": 1}, "c": 2}}, {"spec": {"a": {"$patch": "replace", "z": 1}, "c": None}})
    assert out == {"spec": {"a": {"z": 1}}}


def test_merge_patch_replaces_lists_and_deletes_nulls():
    out = p.merge_patch(POD, {"spec": {"containers": [{"name": "only"}]}, "metadata": {"x": None}})
    assert out == {"spec": {"containers": [{"name": "only"}]}, "metadata": {}}


def test_json_patch_ops_and_failures():
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = p.json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"},
                             {"op": "copy", "from": "/a", "path": "/d"}, {"op": "move", "from": "/d", "path": "/e"},
                             {"op": "test", "path": "/a/0", "value": 1}, {"op": "replace", "path": "/a/1", "value": 9}])
    assert out == {"a": [1, 9, 3], "b": {}, "e": [1, 2, 3]}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # untouched
    with pytest.raises(err.ApiError) as e:
        p.json_patch(doc, [{"op": "test", "path": "/a/0", "value": 5}])
    assert e.value.code == 422
    with pytest.raises(err.ApiError) as e:
        p.json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert e.value.code == 400


def test_server_side_apply_removes_dropped_fields_and_detects_conflicts():
    cur, _ = p.apply({}, {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}, "m1", {}, False)
    owners = {"m1": {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}}
    cur, conflicts = p.apply(cur, {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}, "m1", owners, False)
    assert conflicts == [] and cur["metadata"]["labels"] == {"a": "1"}
    owners["m1"] = {"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}
    _, conflicts = p.apply(cur, {"spec": {"replicas": 3}}, "m2", owners, False)
    assert conflicts == [("m1", ".spec.replicas")]
    forced, _ = p.apply(cur, {"spec": {"replicas": 3}}, "m2", owners, True)
    assert forced["spec"]["replicas"] == 3


def test_label_selectors():
    s = parse_label_selector("app in (a, b),tier!=db,!canary,env")
    assert s({"app": "a", "env": "x"})
    assert not s({"app": "a", "env": "x", "canary": "1"})
    assert not s({"app": "c", "env": "x"})
    assert not s({"app": "a", "tier": "db", "env": "x"})
    with pytest.raises(err.ApiError):
        parse_label_selector("app in (a")
    obj = {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["x"]},
                                                           {"key": "c", "operator": "Exists"}]}
    assert label_selector_object(obj)({"a": "1", "c": ""})
    assert not label_selector_object(obj)({"a": "1", "b": "x", "c": ""})
    assert selector_to_string(obj) == "a=1,b notin (x),c"


def test_field_selectors():
    f = parse_field_selector("status.phase=Running,metadata.name!=x", "pods", "Pod")
    assert f({"metadata": {"name": "y"}, "status": {"phase": "Running"}})
    assert not f({"metadata": {"name": "x"}, "status": {"phase": "Running"}})
    with pytest.raises(err.ApiError) as e:
        parse_field_selector("spec.foo=1", "pods", "Pod")
    assert e.value.code == 400


def test_store_rv_generation_and_status_rules():
    s = Store()
    d = lookup("apps", "v1", "deployments")
    created = s.create(d, {"metadata": {"name": "a", "namespace": "n"}, "spec": {"replicas": 1}, "status": {"x": 1}})
    assert created["metadata"]["generation"] == 1
    rv = int(created["metadata"]["resourceVersion"])
    same = s.update(d, created)
    assert int(same["metadata"]["resourceVersion"]) == rv  # a no-op write keeps the RV
    meta_only = dict(created, metadata={**created["metadata"], "labels": {"l": "1"}})
    out = s.update(d, meta_only)
    assert out["metadata"]["generation"] == 1 and int(out["metadata"]["resourceVersion"]) == rv + 1
    spec = dict(out, spec={"replicas": 2}, status={"hacked": True})
    out = s.update(d, spec)
    assert out["metadata"]["generation"] == 2 and out.get("status") == {"x": 1}
    with pytest.raises(err.ApiError) as e:
        s.update(d, created)  # stale resourceVersion
    assert e.value.reason == "Conflict"
    st = s.update(d, dict(out, spec={"replicas": 9}, status={"y": 2}), subresource="status")
    assert st["spec"] == {"replicas": 2} and st["status"] == {"y": 2} and st["metadata"]["generation"] == 2


def test_implementation_coverage_file_is_current():
    from pathlib import Path

    import aml_emulator.cluster as pkg
    from aml_emulator.cluster.coverage import render
    checked_in = (Path(pkg.__file__).parent / "IMPLEMENTATION_COVERAGE.md").read_text()
    assert checked_in == render(), "regenerate with: python -m aml_emulator.cluster.coverage"


def test_the_readme_lists_every_kubectl_verb_as_the_coverage_does():
    from pathlib import Path

    import aml_emulator.cluster as pkg
    from aml_emulator.cluster.coverage import VERBS
    readme = (Path(pkg.__file__).parent / "README.md").read_text()
    missing = [verb for verb, differs in VERBS if f"| `kubectl {verb}` | {differs} |" not in readme]
    assert not missing, f"the README's verb table lacks (or words differently): {missing}"


def test_protobuf_envelope_for_an_unknown_kind_is_refused_by_name():
    from aml_emulator.cluster import protobuf

    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload
    body = protobuf.MAGIC + field(1, field(1, b"batch/v1") + field(2, b"Job")) + field(2, b"")
    with pytest.raises(err.ApiError) as e:
        protobuf.decode(body)
    assert e.value.code == 415 and "batch/v1 Job" in e.value.message
    cm = protobuf.MAGIC + field(1, field(1, b"v1") + field(2, b"ConfigMap")) + field(2, field(1, field(1, b"c")) + field(2, field(1, b"k") + field(2, b"v")))
    assert protobuf.decode(cm) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}


def test_container_log_is_bounded_and_rotated(tmp_path):
    from aml_emulator.cluster import ContainerLog
    log = ContainerLog(tmp_path / "c", max_bytes=1000)
    for i in range(500):
        log.write(f"line {i:04d}\n".encode())
    data = log.read()
    assert len(data) <= 2000 and data.endswith(b"line 0499\n")
    log.new_instance()
    log.write(b"fresh\n")
    assert log.read() == b"fresh\n" and log.read_previous().endswith(b"line 0499\n")
    log.close()


def test_spdy_frames_round_trip_between_two_codecs():
    from aml_emulator.cluster import spdy

    client_side, server_side = spdy.Codec(), spdy.Codec()
    wire = client_side.syn_stream(1, {"streamType": "error", "port": "8080", "requestID": "0"})
    wire += client_side.syn_stream(3, {"streamtype": "data", "port": "8080", "requestid": "0"})
    wire += spdy.Codec.data(3, b"GET / HTTP/1.0\r\n\r\n", fin=True) + client_side.ping(7)
    # frames split anywhere across messages, as a WebSocket tunnel may deliver them
    frames = [f for i in range(0, len(wire), 5) for f in server_side.feed(wire[i:i + 5])]
    assert [f.kind for f in frames] == [spdy.SYN_STREAM, spdy.SYN_STREAM, 0, spdy.PING]
    assert frames[0].headers == {"streamtype": "error", "port": "8080", "requestid": "0"}
    assert frames[1].headers["streamtype"] == "data"  # the shared compression context carries on
    assert frames[2].stream_id == 3 and frames[2].fin and frames[2].data.startswith(b"GET /")
    assert frames[3].status == 7
    reply = list(client_side.feed(server_side.syn_reply(3) + server_side.rst_stream(1, spdy.RST_CANCEL)))
    assert (reply[0].kind, reply[0].stream_id) == (spdy.SYN_REPLY, 3)
    assert (reply[1].kind, reply[1].stream_id, reply[1].status) == (spdy.RST_STREAM, 1, spdy.RST_CANCEL)


def test_spdy_refuses_another_version_and_a_corrupt_header_block():
    import struct

    from aml_emulator.cluster import spdy

    with pytest.raises(spdy.ProtocolError, match="version 2"):
        list(spdy.Codec().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1"))
    corrupt = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 14) + struct.pack(">IIH", 1, 0, 0) + b"nope"
    with pytest.raises(spdy.ProtocolError, match="header block"):
        list(spdy.Codec().feed(corrupt))


def test_paths_resolve_inside_the_container_root(tmp_path):
    import os

    from aml_emulator.cluster.streaming import OutsideRoot, resolve_in_root

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("x")
    os.symlink("/etc", root / "abs")  # absolute: the root's /etc, not the host's
    os.symlink("../../..", root / "etc" / "up")
    os.symlink("loop", root / "loop")
    assert resolve_in_root(root, "/../../etc/app.conf") == root / "etc" / "app.conf"
    assert resolve_in_root(root, "/abs/app.conf") == root / "etc" / "app.conf"
    assert resolve_in_root(root, "etc/up/etc/app.conf") == root / "etc" / "app.conf"
    assert resolve_in_root(root, "app.conf", cwd="/etc") == root / "etc" / "app.conf"
    with pytest.raises(OutsideRoot, match="No such file"):
        resolve_in_root(root, "/abs/passwd")
    with pytest.raises(OutsideRoot, match="symbolic links"):
        resolve_in_root(root, "/loop")
    assert resolve_in_root(root, "/abs/new", must_exist=False) == root / "etc" / "new"
