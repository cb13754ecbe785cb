"""How long the AKS lifecycle takes on the emulator, next to the local target.

Against the in-process emulator (``aml_emulator.Emulator``: registry, Azure Resource Manager
and Kubernetes cluster on loopback, its cloud profile in a private ``AML_PROFILE_DIR``),
each round measures, through the public API only:

* **compute create**: ``ComputeTarget.create(ws, name, AksCompute.provisioning_configuration(
  agent_count, vm_size, cluster_purpose=DEV_TEST))`` until ``wait_for_completion()`` has
  returned with ``provisioning_state == "Succeeded"``;
* **compute attach**: ``ComputeTarget.attach`` of that cluster (by resource group and name)
  from a second workspace, to the same point (a cluster is attached once per workspace);
* **AKS deploy**: ``Model.deploy(..., AksWebservice.deploy_configuration(num_replicas=2, ...),
  aks_target)`` of a scikit-learn Ridge (bundled diabetes data) with a ``score.py`` written
  here, timed from the call to: the call returned / ``wait_for_deployment()`` done / the
  first 200 from ``service.run(...)``;
* **local deploy**: the same model and ``score.py`` with
  ``LocalWebservice.deploy_configuration(engine="process")``, timed the same way.

The two deployments take turns going first (the order flips every round). Reported: the
median of each phase over the rounds, and ``AKS / local`` as the median of the per-round
ratios (each compares two deployments made seconds apart, which suits a noisy machine).
Everything made is deleted (services, compute targets) and the emulator stopped, also when
a round fails. No time is asserted. Usage::

    python benchmarks/aks_lifecycle.py [--rounds 3] [--replicas 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCORE_PY = """\
import json, os
import joblib
import numpy as np

def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl"))

def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()
"""

SAMPLE = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]})

#: (key, label) of the deployment phases, each in seconds since the ``Model.deploy`` call
DEPLOY_PHASES = (
    ("returned", "deploy call returned"),
    ("ready", "wait_for_deployment done"),
    ("first_score", "first 200 score"),
)


class Cleanup:
    """Undo actions, run last-in first-out; a failing one is reported and the rest still run."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], Any]]] = []

    def push(self, what: str, action: Callable[[], Any]) -> None:
        self._actions.append((what, action))

    def run(self) -> bool:
        ok = True
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - report and go on with the rest
                ok = False
                print(f"# cleanup: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ok


def make_model_and_app(root: Path) -> tuple[Path, Path]:
    """The Ridge model (diabetes data bundled with scikit-learn) and a folder with score.py."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    root.mkdir(parents=True, exist_ok=True)
    x, y = load_diabetes(return_X_y=True)
    model_path = root / "sklearn_regression_model.pkl"
    joblib.dump(Ridge().fit(x, y), model_path)
    app = root / "app"
    app.mkdir()
    (app / "score.py").write_text(SCORE_PY)
    return model_path, app


def timed_compute(start: Callable[[], Any], timeout: float) -> tuple[Any, float]:
    """Seconds from ``ComputeTarget.create/attach`` to a Succeeded target."""
    t0 = time.perf_counter()
    target = start()
    target.wait_for_completion(show_output=False, timeout_sec=timeout)
    elapsed = time.perf_counter() - t0
    if target.provisioning_state != "Succeeded":
        raise RuntimeError(f"compute {target.name!r} ended {target.provisioning_state}")
    return target, elapsed


def deploy_to_first_score(
    ws,
    name: str,
    model,
    inference_config,
    deployment_config,
    target,
    cleanup: Cleanup,
    timeout: float,
) -> dict[str, float]:
    """Seconds since ``Model.deploy`` at which it returned, the deployment was done, and the
    first ``service.run`` answered 200; ``failed_runs`` counts the runs before that one."""
    from aml_core.errors import WebserviceException
    from aml_core.model import Model

    t0 = time.perf_counter()
    service = Model.deploy(ws, name, [model], inference_config, deployment_config, target)
    returned = time.perf_counter() - t0
    cleanup.push(f"delete service {name!r}", service.delete)
    service.wait_for_deployment(show_output=False, timeout_sec=timeout)
    ready = time.perf_counter() - t0
    failed_runs = 0
    while True:
        try:
            predictions = service.run(SAMPLE)
            break
        except WebserviceException:
            failed_runs += 1
            if time.perf_counter() - t0 > timeout:
                raise
            time.sleep(0.05)
    first_score = time.perf_counter() - t0
    if not (isinstance(predictions, list) and len(predictions) == 2):
        raise RuntimeError(f"service {name!r} answered {predictions!r}, not two predictions")
    return {
        "returned": returned,
        "ready": ready,
        "first_score": first_score,
        "failed_runs": failed_runs,
    }


def one_round(
    index: int, root: Path, emu, args, model_path: Path, app: Path, cleanup: Cleanup
) -> dict[str, Any]:
    from aml_core.compute import ComputeTarget
    from aml_core.inference import InferenceConfig
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    from aml_provider_aks import AksCompute, AksWebservice
    from aml_provider_local import LocalWebservice

    ws = Workspace.create(root / f"round{index}" / "ws", container_registry="profile:emulator")
    model = Model.register(ws, model_path=str(model_path), model_name="diabetes-ridge")
    inference_config = InferenceConfig(entry_script="score.py", source_directory=str(app))
    result: dict[str, Any] = {"round": index}

    cluster = f"aks-bench-{index}"
    config = AksCompute.provisioning_configuration(
        agent_count=args.agent_count,
        vm_size=args.vm_size,
        cluster_purpose=AksCompute.ClusterPurpose.DEV_TEST,
    )
    target, result["compute_create"] = timed_compute(
        lambda: ComputeTarget.create(ws, cluster, config), args.timeout
    )
    cleanup.push(f"delete compute {cluster!r}", target.delete)

    # A cluster is attached once per workspace (the creating workspace already holds it),
    # so the attach is timed from a second workspace, as a colleague's would be.
    ws_attach = Workspace.create(
        root / f"round{index}" / "ws-attach", container_registry="profile:emulator"
    )
    attach = AksCompute.attach_configuration(
        resource_group=emu.resource_group, cluster_name=cluster
    )
    attached, result["compute_attach"] = timed_compute(
        lambda: ComputeTarget.attach(ws_attach, "attached", attach), args.timeout
    )
    cleanup.push("detach compute 'attached'", attached.detach)

    # auth is left at its default: the provider currently serves it without auth, and once
    # key auth is on by default service.run() fetches the key itself.
    aks_config = AksWebservice.deploy_configuration(
        num_replicas=args.replicas, cpu_cores=0.1, memory_gb=0.5
    )
    plans = {
        "aks": (aks_config, target),
        "local": (LocalWebservice.deploy_configuration(engine="process"), None),
    }
    result["order"] = ["aks", "local"] if index % 2 else ["local", "aks"]
    for kind in result["order"]:
        deployment_config, deployment_target = plans[kind]
        result[kind] = deploy_to_first_score(
            ws,
            f"bench-{kind}-{index}",
            model,
            inference_config,
            deployment_config,
            deployment_target,
            cleanup,
            args.timeout,
        )
    return result


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "compute_create_s": median([r["compute_create"] for r in rounds]),
        "compute_attach_s": median([r["compute_attach"] for r in rounds]),
    }
    for key, _ in DEPLOY_PHASES:
        aks = [r["aks"][key] for r in rounds]
        local = [r["local"][key] for r in rounds]
        summary[f"aks_{key}_s"] = median(aks)
        summary[f"local_{key}_s"] = median(local)
        summary[f"ratio_{key}"] = median([a / b for a, b in zip(aks, local) if b > 0])
    return summary


def print_table(summary: dict[str, Any], rounds: int) -> None:
    from rich.console import Console
    from rich.table import Table

    def seconds(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    table = Table(title=f"AKS lifecycle on the emulator vs local, median of {rounds} round(s)")
    table.add_column("phase", no_wrap=True)
    table.add_column("AKS", justify="right", no_wrap=True)
    table.add_column("local (process)", justify="right", no_wrap=True)
    table.add_column("AKS / local", justify="right", no_wrap=True)
    table.add_row("compute create -> Succeeded", seconds(summary["compute_create_s"]), "-", "-")
    table.add_row("compute attach -> Succeeded", seconds(summary["compute_attach_s"]), "-", "-")
    for key, label in DEPLOY_PHASES:
        table.add_row(
            label,
            seconds(summary[f"aks_{key}_s"]),
            seconds(summary[f"local_{key}_s"]),
            ratio(summary[f"ratio_{key}"]),
        )
    Console(width=max(100, Console().width)).print(table)
    print("(deploy phases: seconds since Model.deploy; AKS / local: median of per-round ratios)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument("--replicas", type=int, default=2, help="num_replicas of the AKS service")
    parser.add_argument("--agent-count", type=int, default=1)
    parser.add_argument("--vm-size", default="Standard_D3_v2")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds any one create/attach/deploy may take before the round fails",
    )
    parser.add_argument("--json", type=Path, help="also write the per-round results here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    cleanup = Cleanup()
    rounds: list[dict[str, Any]] = []
    failure: BaseException | None = None
    with tempfile.TemporaryDirectory(prefix="aml-bench-aks-") as tmp:
        root = Path(tmp)
        # A private profile directory: the emulator's profile must not replace the user's.
        os.environ["AML_PROFILE_DIR"] = str(root / "profiles")
        os.environ.pop("AML_PROFILE", None)
        from aml_emulator import Emulator

        emu = Emulator()  # state in its own temporary directory, removed by stop()
        try:
            emu.start()
            emu.profile().save()
            model_path, app = make_model_and_app(root / "inputs")
            for index in range(1, args.rounds + 1):
                result = one_round(index, root, emu, args, model_path, app, cleanup)
                rounds.append(result)
                print(
                    f"round {index}: create {result['compute_create']:.2f} s, "
                    f"attach {result['compute_attach']:.2f} s, "
                    + ", ".join(
                        f"{kind} deploy/ready/score "
                        + "/".join(f"{result[kind][k]:.2f}" for k, _ in DEPLOY_PHASES)
                        + f" s ({result[kind]['failed_runs']} failed runs)"
                        for kind in result["order"]
                    ),
                    flush=True,
                )
        except BaseException as exc:  # noqa: BLE001 - cleaned up below, then reported
            failure = exc
        finally:
            cleaned = cleanup.run()  # services, then computes, while the emulator still runs
            emu.stop()

    if failure is not None:
        traceback.print_exception(failure)
        return 130 if isinstance(failure, KeyboardInterrupt) else 1
    summary = summarize(rounds)
    print_table(summary, len(rounds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "rounds": rounds,
                    "summary": summary,
                    "settings": {
                        "replicas": args.replicas,
                        "agent_count": args.agent_count,
                        "vm_size": args.vm_size,
                        "cpu_count": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                },
                indent=2,
            )
        )
    return 0 if cleaned else 1


if __name__ == "__main__":
    sys.exit(main())
