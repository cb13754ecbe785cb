"""Scale and faults on the emulator's cluster: a fixed replica count, autoscale under load,
``kubectl scale`` seen by the service, the ``aml_scale`` hook, a replica killed under load,
an ``init()`` that raises, and no pod process outliving the emulator.

One emulator serves the module, with a 1 s autoscaler sync, a 3 s scale-down window and a
1 s CrashLoopBackOff base, so autoscale and restarts show within seconds. Loads are a few
threads for a bounded time; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aks_testing import emulator_with_profile, wait_until
from aml_core.errors import InvalidConfig, ProvisioningFailed
from aml_core.records import ScaleRequest

SCORE = """\
import json
import os
import time

SLEEP = {sleep}


def init():
    print("scale-faults model ready", flush=True)


def run(raw_data):
    if SLEEP:
        time.sleep(SLEEP)
    return {{"pid": os.getpid(), "echo": json.loads(raw_data)}}
"""

BROKEN = """\
def init():
    raise RuntimeError("scale-faults: the model file is unreadable")


def run(raw_data):
    return raw_data
"""


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with emulator_with_profile(tmp_path_factory.mktemp("profiles"), hpa_sync_period=1.0,
                               hpa_downscale_window=3.0, backoff_base=1.0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def ws(emu, tmp_path_factory):
    from aml_core.workspace import Workspace

    return Workspace.create(tmp_path_factory.mktemp("ws") / "ws", container_registry="profile:emulator")


@pytest.fixture(scope="module")
def target(ws):
    from aml_core.compute import ComputeTarget
    from aml_provider_aks import AksCompute

    target = ComputeTarget.create(ws, "aks-scale", AksCompute.provisioning_configuration(
        cluster_purpose="DevTest", agent_count=1))
    target.wait_for_completion(timeout_sec=60)
    return target


@pytest.fixture(scope="module")
def model(ws, tmp_path_factory):
    from aml_core.model import Model

    path = tmp_path_factory.mktemp("model") / "model.txt"
    path.write_text("a model\n")
    return Model.register(ws, path, "scale-model")


def _inference(tmp_path_factory, name: str, script: str):
    from aml_core.inference import InferenceConfig

    app = tmp_path_factory.mktemp(name)
    (app / "score.py").write_text(script)
    return InferenceConfig(entry_script="score.py", source_directory=str(app))


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    return _inference(tmp_path_factory, "fast", SCORE.format(sleep=0))


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """run() takes 0.25 s, so a few concurrent clients keep a replica busy."""
    return _inference(tmp_path_factory, "slow", SCORE.format(sleep=0.25))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return _inference(tmp_path_factory, "broken", BROKEN)


@pytest.fixture
def deploy(ws, model, target):
    """Deploy and wait; every service made is deleted after the test."""
    from aml_core.model import Model

    made = []

    def run(name, inference_config, config, wait=True):
        service = Model.deploy(ws, name, [model], inference_config, config, target)
        made.append(service)
        if wait:
            service.wait_for_deployment()
        return service

    yield run
    for service in made:
        try:
            service.delete()
        except Exception:  # noqa: BLE001, S110 - best effort: the test may have deleted it
            pass


@pytest.fixture
def kubectl(ws, target, tmp_path):
    from aml_core.compute import ComputeTarget

    kubeconfig = ComputeTarget(ws, target.name).record.details["kubeconfig"]

    def run(*args: str) -> str:
        out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path / "kube-cache"),
                              *args], capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout

    return run


def _pods(kubectl, name: str) -> list[dict]:
    """The service's live pods (not terminating)."""
    items = json.loads(kubectl("get", "pods", "-l", f"app={name}", "-o", "json"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def _ready_count(kubectl, name: str) -> int:
    return sum(1 for p in _pods(kubectl, name) if _ready(p))


def _desired(kubectl, name: str) -> int:
    return json.loads(kubectl("get", "deployment", name, "-o", "json"))["spec"].get("replicas", 1)


class Load:
    """``threads`` clients scoring in a loop until stopped (or ``limit_s`` passes); every
    answer other than a 200 is kept in ``failures``."""

    def __init__(self, ws, name: str, threads: int, limit_s: float = 90.0) -> None:
        from aml_core.webservice import Webservice

        self.services = [Webservice(ws, name) for _ in range(threads)]
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._threads = [threading.Thread(target=self._loop, args=(s, i), daemon=True)
                         for i, s in enumerate(self.services)]

    def _loop(self, service, index: int) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            n += 1
            try:
                answer = service.run({"client": index, "n": n})
                good = answer.get("echo") == {"client": index, "n": n}
                problem = None if good else f"wrong answer {answer!r}"
            except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever it is
                text = str(exc)
                code, content = re.search(r"Response Code: (\d+)", text), re.search(r"Content: (.*)", text)
                problem = (f"{code.group(1)} {content.group(1)[:300] if content else ''}" if code
                           else f"{type(exc).__name__}: {text[:300]}")
            with self._lock:
                if problem:
                    self.failures.append(problem)
                else:
                    self.ok += 1

    def __enter__(self) -> Load:  # noqa: PYI034 - not subclassed
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ 6. scale
def test_capabilities_declare_scale_and_autoscale():
    from aml_core.plugins import default_hooks

    caps = default_hooks().target("aks").capabilities
    assert caps.scale and caps.autoscale


@pytest.mark.parametrize("request_, message", [
    (ScaleRequest(), "No scale parameters provided"),
    (ScaleRequest(num_replicas=0), "num_replicas must be a positive integer"),
    (ScaleRequest(num_replicas=True), "num_replicas must be a positive integer"),
    (ScaleRequest(autoscale_max_replicas=-1), "autoscale_max_replicas must be a positive integer"),
    (ScaleRequest(autoscale_target_utilization=150), "between 1 and 100"),
    (ScaleRequest(num_replicas=2, autoscale_enabled=True), "either num_replicas or the autoscale settings"),
    (ScaleRequest(num_replicas=2, autoscale_max_replicas=4), "cannot be combined with autoscale_max_replicas"),
    (ScaleRequest(autoscale_enabled=False, autoscale_min_replicas=2), "drop them, or pass autoscale_enabled=True"),
    (ScaleRequest(autoscale_min_replicas=5, autoscale_max_replicas=2), "lower the minimum or raise the maximum"),
])
def test_scale_requests_are_validated_with_the_fix_named(request_, message):
    from aml_provider_aks.scale import validate

    with pytest.raises(InvalidConfig, match=message) as info:
        validate(request_)
    assert info.value.code == "InvalidConfig"


def test_with_scale_follows_the_deploy_configuration_rules():
    from aml_provider_aks import AksWebservice

    fixed = AksWebservice.deploy_configuration(num_replicas=2, description="kept")
    assert fixed.with_scale(ScaleRequest(num_replicas=3), 2).num_replicas == 3
    with pytest.raises(InvalidConfig, match="pass autoscale_enabled=True"):
        fixed.with_scale(ScaleRequest(autoscale_max_replicas=4), 2)
    auto = fixed.with_scale(ScaleRequest(autoscale_enabled=True, autoscale_max_replicas=4), 2)
    assert auto.effective_autoscale_enabled and auto.num_replicas is None and auto.description == "kept"
    assert (auto.effective_min_replicas, auto.effective_max_replicas) == (1, 4)
    with pytest.raises(InvalidConfig, match=r"autoscale_min_replicas \(5\) cannot be greater than .*\(4\)"):
        auto.with_scale(ScaleRequest(autoscale_min_replicas=5), 2)
    # autoscale off without a count keeps the count the autoscaler had reached
    off = auto.with_scale(ScaleRequest(autoscale_enabled=False), 3)
    assert not off.effective_autoscale_enabled and off.num_replicas == 3
    assert off.autoscale_max_replicas is None


def test_num_replicas_gives_that_many_ready_pods_and_update_changes_it(deploy, fast, kubectl):
    from aml_provider_aks import AksWebservice

    service = deploy("scale-manual", fast, AksWebservice.deploy_configuration(num_replicas=2))
    assert service.state == "Healthy"
    assert _ready_count(kubectl, "scale-manual") == 2
    assert (service.num_replicas, service.ready_replicas) == (2, 2)
    assert service.run({"x": 1})["echo"] == {"x": 1}

    service.update(num_replicas=3)
    assert _ready_count(kubectl, "scale-manual") == 3
    assert len(_pods(kubectl, "scale-manual")) == 3
    assert service.update_deployment_state() == "Healthy"
    assert (service.num_replicas, service.ready_replicas) == (3, 3)
    # the three replicas all serve
    pids = {service.run({"x": i})["pid"] for i in range(30)}
    assert len(pids) == 3


def test_kubectl_scale_is_reflected_in_the_service_state(deploy, fast, kubectl):
    from aml_provider_aks import AksWebservice

    service = deploy("scale-kubectl", fast, AksWebservice.deploy_configuration(num_replicas=1))
    assert (service.num_replicas, service.ready_replicas) == (1, 1)

    kubectl("scale", "deployment", "scale-kubectl", "--replicas=3")
    state = service.update_deployment_state()
    assert service.num_replicas == 3
    assert state in ("Transitioning", "Healthy")
    if service.ready_replicas < 3:
        assert state == "Transitioning"
    wait_until("3 ready replicas, Healthy",
                lambda: service.update_deployment_state() == "Healthy" and service.ready_replicas == 3)
    assert service.num_replicas == 3 and service.error is None

    kubectl("scale", "deployment", "scale-kubectl", "--replicas=1")
    wait_until("back to 1 replica", lambda: service.update_deployment_state() == "Healthy"
                and (service.num_replicas, service.ready_replicas) == (1, 1))
    # a fresh handle reads the same from the workspace
    from aml_core.webservice import Webservice

    assert Webservice(service.workspace, "scale-kubectl").num_replicas == 1


def test_scale_sets_the_count_then_autoscale_bounds_and_update_keeps_them(deploy, fast, kubectl, ws):
    from aml_core.webservice import Webservice, _load_row
    from aml_provider_aks import AksWebservice

    service = deploy("scale-hook", fast, AksWebservice.deploy_configuration(num_replicas=1, description="v1"))

    service.scale(num_replicas=2)
    assert service.num_replicas == 2 and _desired(kubectl, "scale-hook") == 2
    wait_until("2 ready replicas", lambda: _ready_count(kubectl, "scale-hook") == 2)
    stored = _load_row(ws, "scale-hook")[1]["deployment_config"]
    assert stored["num_replicas"] == 2 and stored["description"] == "v1"

    # a later update re-applies the stored configuration: the scale stays
    service = Webservice(ws, "scale-hook")
    service.update(description="v2")
    assert _desired(kubectl, "scale-hook") == 2
    assert _ready_count(kubectl, "scale-hook") == 2

    with pytest.raises(InvalidConfig, match="pass autoscale_enabled=True"):
        service.scale(autoscale_max_replicas=3)

    service.scale(autoscale_enabled=True, autoscale_min_replicas=3, autoscale_max_replicas=4)
    hpa = json.loads(kubectl("get", "hpa", "scale-hook", "-o", "json"))["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 4)
    # autoscale_refresh_seconds (default 1) is the period of the HPA's scaling policies
    assert {pol["periodSeconds"] for rules in hpa["behavior"].values() for pol in rules["policies"]} == {1}
    assert service.num_replicas == 3 and _desired(kubectl, "scale-hook") == 3  # raised to the minimum
    stored = _load_row(ws, "scale-hook")[1]["deployment_config"]
    assert stored["autoscale_enabled"] is True and stored["num_replicas"] is None
    assert (stored["autoscale_min_replicas"], stored["autoscale_max_replicas"]) == (3, 4)

    with pytest.raises(InvalidConfig, match=r"autoscale_min_replicas \(5\) cannot be greater than"):
        service.scale(autoscale_min_replicas=5)
    assert (json.loads(kubectl("get", "hpa", "scale-hook", "-o", "json"))["spec"]["minReplicas"]) == 3

    # the hook alone (no stored configuration given) reads the settings from the cluster
    from aml_core.plugins import default_hooks

    record = default_hooks().scale(workspace=ws, service=service._reload(), request=ScaleRequest(num_replicas=1))
    assert record.details["replicas"] == 1
    assert "scale-hook" not in kubectl("get", "hpa", "-o", "name")
    assert _desired(kubectl, "scale-hook") == 1
    wait_until("1 ready replica", lambda: service.update_deployment_state() == "Healthy"
                and (service.num_replicas, service.ready_replicas) == (1, 1))


def test_autoscale_goes_up_under_load_and_back_down_within_bounds(deploy, slow, kubectl, ws):
    from aml_provider_aks import AksWebservice

    config = AksWebservice.deploy_configuration(autoscale_enabled=True, autoscale_min_replicas=1,
                                                autoscale_max_replicas=3, max_request_wait_time=10000)
    service = deploy("scale-auto", slow, config)
    assert _desired(kubectl, "scale-auto") == 1
    seen = []

    def grown() -> bool:
        service.update_deployment_state()
        seen.append(service.num_replicas)
        return service.ready_replicas >= 2

    # four clients against one replica that serves one request at a time: ~400 % of target 70 %
    with Load(ws, "scale-auto", threads=4, limit_s=60) as load:
        wait_until("a scale-up under load", grown, timeout=45, interval=0.5)
        time.sleep(2)  # a little load on the grown service
    assert load.ok > 0
    assert not load.failures, load.failures[:5]

    def shrunk() -> bool:
        service.update_deployment_state()
        seen.append(service.num_replicas)
        return service.num_replicas == 1

    wait_until("the scale-down after the load", shrunk, timeout=45, interval=0.5)
    assert max(seen) >= 2
    assert all(1 <= n <= 3 for n in seen), seen
    wait_until("one ready replica", lambda: service.update_deployment_state() == "Healthy"
                and service.ready_replicas == 1)
    hpa = json.loads(kubectl("get", "hpa", "scale-auto", "-o", "json"))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)


# ------------------------------------------------------------------ 7. faults
def _pgid(pod: dict) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("aml-process://"), container_id
    return int(container_id.removeprefix("aml-process://"))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_replica_is_replaced_while_the_other_serves(deploy, fast, kubectl, ws):
    from aml_provider_aks import AksWebservice

    service = deploy("fault-kill", fast, AksWebservice.deploy_configuration(num_replicas=2,
                                                                           max_request_wait_time=5000))
    pods = _pods(kubectl, "fault-kill")
    assert len(pods) == 2 and all(_ready(p) for p in pods)
    victim = pods[0]
    pgid = _pgid(victim)

    with Load(ws, "fault-kill", threads=3, limit_s=60) as load:
        time.sleep(1)
        before = load.ok
        os.killpg(pgid, signal.SIGKILL)  # the whole container: its runtime and the workers it forked
        wait_until("the killed container gone", lambda: not _group_alive(pgid), timeout=10)

        def replaced():
            now = {p["metadata"]["name"]: p for p in _pods(kubectl, "fault-kill")}
            pod = now.get(victim["metadata"]["name"])
            return (pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] >= 1
                    and len(now) == 2 and all(_ready(p) for p in now.values()))

        wait_until("the killed replica restarted and both ready", replaced, timeout=60)
        time.sleep(1)  # and both serving
    assert load.ok > before > 0
    assert not load.failures, load.failures[:5]

    pod = next(p for p in _pods(kubectl, "fault-kill") if p["metadata"]["name"] == victim["metadata"]["name"])
    assert _pgid(pod) != pgid
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last.get("signal") == signal.SIGKILL
    # the Deployment's status follows the pods' a moment later
    wait_until("the service Healthy with 2 of 2 ready", lambda: service.update_deployment_state() == "Healthy"
                and (service.num_replicas, service.ready_replicas) == (2, 2), timeout=30)


def test_an_init_that_raises_fails_the_deploy_with_crashloopbackoff_and_the_traceback(deploy, broken, ws):
    from aml_core.webservice import Webservice
    from aml_provider_aks import AksWebservice

    service = deploy("fault-init", broken, AksWebservice.deploy_configuration(num_replicas=1), wait=False)
    with pytest.raises(ProvisioningFailed, match="CrashLoopBackOff") as info:
        service.wait_for_deployment()
    assert "get_logs" in str(info.value)

    again = Webservice(ws, "fault-init")
    assert again.state == "Failed" and "CrashLoopBackOff" in again.error
    assert again.update_deployment_state() == "Failed"
    assert "CrashLoopBackOff" in again.error
    assert again.ready_replicas == 0
    logs = again.get_logs()
    assert "Traceback (most recent call last)" in logs
    assert "RuntimeError: scale-faults: the model file is unreadable" in logs


# ------------------------------------------------------------------ no process outlives the emulator
def _proc_stat(pid: int) -> tuple[int, int, str, str] | None:
    """``(ppid, pgid, state, start time)`` of a process, ``None`` if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[2]), fields[0], fields[19]


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _descendants(root: int) -> dict[int, tuple[int, int, str, str]]:
    stats = {pid: st for pid in _all_pids() if (st := _proc_stat(pid)) is not None}
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st[0], []).append(pid)
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = stats[child]
            todo.append(child)
    return out


def test_stopping_the_emulator_leaves_no_pod_process(tmp_path, monkeypatch, fast):
    from aml_core.compute import ComputeTarget
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    from aml_emulator import Emulator
    from aml_provider_aks import AksCompute, AksWebservice

    monkeypatch.setenv("AML_PROFILE_DIR", str(tmp_path / "profiles"))
    with Emulator() as emulator:
        emulator.profile().save()
        ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
        target = ComputeTarget.create(ws, "aks-stop", AksCompute.provisioning_configuration(
            cluster_purpose="DevTest", agent_count=1))
        target.wait_for_completion(timeout_sec=60)
        path = tmp_path / "model.txt"
        path.write_text("a model\n")
        registered = Model.register(ws, path, "stop-model")
        service = Model.deploy(ws, "stop-svc", [registered], fast,
                               AksWebservice.deploy_configuration(num_replicas=2), target)
        service.wait_for_deployment()
        assert service.run({"x": 1})["echo"] == {"x": 1}
        groups = set(emulator.cluster.kubelet.process_groups())
        assert len(groups) == 2
        started = {pid: st for pid, st in _descendants(os.getpid()).items() if st[1] in groups}
        # each container is its scoring runtime and the worker it forked
        assert len(started) >= 4, started
    survivors = [pid for pid, st in started.items()
                 if (now := _proc_stat(pid)) is not None and now[3] == st[3] and now[2] not in "ZX"]
    assert not survivors, survivors
    in_groups = [pid for pid in _all_pids()
                 if (st := _proc_stat(pid)) is not None and st[1] in groups and st[2] not in "ZX"]
    assert not in_groups, in_groups
