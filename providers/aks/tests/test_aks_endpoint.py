"""AksEndpoint: versions, default and control/treatment flips, the 6-version and 100 % rules,
and the front door splitting traffic by the versions' percentages."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import requests
from aml_core.compute import ComputeTarget
from aml_core.errors import InvalidConfig, NotFound
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_core.records import ServiceRecord, TrafficSplit
from aml_core.webservice import Webservice
from aml_provider_aks import AksCompute, AksEndpoint
from aml_provider_aks.endpoint import VersionChange, apply_change

SCORE = """
def init():
    pass


def run(raw_data):
    return {{"version": "{label}"}}
"""


def _app(tmp_path, label: str) -> InferenceConfig:
    folder = tmp_path / f"app-{label}"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE.format(label=label))
    return InferenceConfig(entry_script="score.py", source_directory=str(folder))


def _record(versions: dict[str, dict]) -> ServiceRecord:
    table = {n: {"traffic_percentile": v.get("traffic_percentile"), "is_default": v.get("is_default", False),
                 "type": "Treatment", "config": {"num_replicas": 1}, "models": ["m:1"], "inference_config": {}}
             for n, v in versions.items()}
    return ServiceRecord(name="ep", kind="aksendpoint", state="Healthy", details={
        "namespace": "default", "kubeconfig": "/nonexistent/kubeconfig", "versions": table,
        "endpoint_config": {"num_replicas": 1}})


@pytest.mark.parametrize("kwargs, message", [
    ({"traffic_percentile": 101}, "traffic_percentile must be an integer from 0 to 100"),
    ({"traffic_percentile": True}, "traffic_percentile must be an integer"),
    ({"version_name": "Blue_1"}, "Invalid version name"),
])
def test_endpoint_configuration_rules(kwargs, message):
    with pytest.raises(InvalidConfig, match=message):
        AksEndpoint.deploy_configuration(**kwargs)


def test_a_seventh_version_is_refused_before_the_cluster_is_touched():
    record = _record({f"v{i}": {"is_default": i == 0} for i in range(6)})
    change = VersionChange(name="v6", action="create", settings={"num_replicas": 1}, models=None,
                           inference_config=None)
    with pytest.raises(InvalidConfig, match="at most 6"):
        apply_change(None, record, change, {}, print, first_config=None)  # type: ignore[arg-type]


def test_percentages_over_100_are_refused_naming_the_versions():
    record = _record({"a": {"is_default": True, "traffic_percentile": 70}, "b": {"traffic_percentile": 20}})
    change = VersionChange(name="b", action="update", traffic_percentile=40)
    with pytest.raises(InvalidConfig, match=r"add up to 110.*a=70%, b=40%"):
        apply_change(None, record, change, {}, print)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="has no version 'c'"):
        apply_change(None, record, VersionChange(name="c", action="update", traffic_percentile=1), {}, print)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="is the default"):
        apply_change(None, record, VersionChange(name="a", action="delete"), {}, print)  # type: ignore[arg-type]


def _shares(endpoint, key: str, n: int) -> Counter:
    seen: Counter = Counter()
    with requests.Session() as session:
        for _ in range(n):
            resp = session.post(endpoint.scoring_uri, json={"data": []}, timeout=30,
                                headers={"Authorization": f"Bearer {key}"})
            assert resp.status_code == 200, resp.text
            # the body names the version that answered; the front door's header must agree
            assert resp.headers["x-ms-version"] == resp.json()["version"]
            seen[resp.json()["version"]] += 1
    return seen


def _within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_endpoint_versions_split_traffic_and_flip_default_and_control(emulator, ws, tmp_path):
    from kubernetes import client, config

    target = ComputeTarget.create(ws, "aks-ep", AksCompute.provisioning_configuration(cluster_purpose="DevTest",
                                                                                      agent_count=1))
    target.wait_for_completion()
    model_file = tmp_path / "model.txt"
    model_file.write_text("weights")
    model = Model.register(ws, str(model_file), "ep-model")
    endpoint = Model.deploy(ws, "ep-rollout", [model], _app(tmp_path, "blue"),
                            AksEndpoint.deploy_configuration(version_name="blue", num_replicas=1), target)
    endpoint.wait_for_deployment()
    try:
        assert isinstance(endpoint, AksEndpoint) and isinstance(Webservice(ws, "ep-rollout"), AksEndpoint)
        blue = endpoint.versions["blue"]
        assert blue.is_default and blue.version_type == AksEndpoint.VersionType.control
        assert endpoint.run({"data": []}) == {"version": "blue"}

        endpoint.create_version("green", inference_config=_app(tmp_path, "green"), traffic_percentile=30,
                                num_replicas=1)
        green = endpoint.versions["green"]
        assert (green.is_default, green.version_type, green.traffic_percentile) == (False, "Treatment", 30)
        assert green.models == (model.id,)

        key = endpoint.get_keys()[0]
        n = 1500
        seen = _shares(endpoint, key, n)
        assert set(seen) == {"blue", "green"}
        # 30 % to green; the unassigned 70 % goes to the default version, blue
        assert _within_binomial(seen["green"], n, 0.30), seen

        with pytest.raises(InvalidConfig, match="add up to 110"):
            endpoint.update_version("blue", traffic_percentile=80)
        assert endpoint.versions["blue"].traffic_percentile is None  # nothing changed

        # flips: default and control move to green; traffic goes to the new default
        endpoint.update_version("green", is_default=True, is_control_version_type=True, traffic_percentile=None)
        versions = endpoint.versions
        assert versions["green"].is_default and not versions["blue"].is_default
        assert (versions["green"].version_type, versions["blue"].version_type) == ("Control", "Treatment")
        assert _shares(endpoint, key, 50) == Counter({"green": 50})

        # the traffic hook: an exact split, atomically
        from aml_core.plugins import default_hooks

        record = default_hooks().traffic(workspace=ws, service=Webservice(ws, "ep-rollout")._reload(),
                                         split=TrafficSplit(weights={"blue": 100}, default="green"))
        assert record.details["versions"]["blue"]["traffic_percentile"] == 100

        with pytest.raises(InvalidConfig, match="is the default"):
            endpoint.delete_version("green")
        endpoint.update_version("green", traffic_percentile=0)
        endpoint.update_version("blue", traffic_percentile=0)
        endpoint.delete_version("blue")
        assert list(endpoint.versions) == ["green"]
        assert _shares(endpoint, key, 20) == Counter({"green": 20})
        api = config.new_client_from_config(config_file=endpoint._record.details["kubeconfig"])
        names = [d.metadata.name for d in client.AppsV1Api(api).list_namespaced_deployment("default").items]
        assert "ep-rollout-green" in names and "ep-rollout-blue" not in names
        with pytest.raises(InvalidConfig, match="last version"):
            endpoint.delete_version("green")
        api.close()
        uri = endpoint.scoring_uri
    finally:
        endpoint.delete()
    assert requests.post(uri, json={"data": []}, timeout=10).status_code == 404
