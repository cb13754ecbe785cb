"""A rolling update of an AKS service under a running load: no request fails, and the
answers move from the old code to the new."""

from __future__ import annotations

import threading
import time

import requests

from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_provider_aks import AksCompute, AksWebservice

SCORE = """
def init():
    pass


def run(raw_data):
    return {{"code": "{label}"}}
"""


def _app(tmp_path, label: str) -> InferenceConfig:
    folder = tmp_path / label
    folder.mkdir()
    (folder / "score.py").write_text(SCORE.format(label=label))
    return InferenceConfig(entry_script="score.py", source_directory=str(folder))


def test_a_rolling_update_under_load_fails_no_request(emulator, ws, tmp_path):
    (tmp_path / "model.txt").write_text("no weights needed")
    model = Model.register(ws, str(tmp_path / "model.txt"), "rolling")
    target = ComputeTarget.create(ws, "aks-roll", AksCompute.provisioning_configuration(cluster_purpose="DevTest",
                                                                                        agent_count=1))
    target.wait_for_completion()
    service = Model.deploy(ws, "rolling", [model], _app(tmp_path, "old"),
                           AksWebservice.deploy_configuration(num_replicas=2, replica_max_concurrent_requests=4),
                           target)
    service.wait_for_deployment()
    headers = {"Authorization": f"Bearer {service.get_keys()[0]}"}
    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            deadline = time.monotonic() + 180  # bounded even if the update hangs
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = session.post(service.scoring_uri, json={}, headers=headers, timeout=30)
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                    continue
                if resp.status_code == 200:
                    answers.append(resp.json()["code"])
                else:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")

    threads = [threading.Thread(target=load) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        service.update(inference_config=_app(tmp_path, "new"))
        seen_after_update = len(answers)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    try:
        assert failures == [], failures[:5]
        assert answers[0] == "old" and answers[-1] == "new"
        # once update() returned, only the new code answers
        assert set(answers[seen_after_update + 4:]) == {"new"}
        assert len(answers) > 50
    finally:
        service.delete()
