"""ACI on the emulator next to the local target: deploy-to-first-score, and scoring throughput.

Against the in-process emulator (``aml_emulator.Emulator`` with registry and Azure Resource
Manager on loopback, its cloud profile in a private ``AML_PROFILE_DIR``), through the public
API only, with a scikit-learn Ridge (bundled diabetes data) and a ``score.py`` written here:

* **deploy-to-first-score**: from the ``Model.deploy`` call until ``service.run(...)`` first
  returns predictions, for ``AciWebservice.deploy_configuration()`` (image built and pushed,
  container group created through azure-mgmt-containerinstance, pulled and started on the
  process engine) and for ``LocalWebservice.deploy_configuration(engine="process")``. The two
  take turns going first (the order flips every round); both are deleted after each round.
  Reported: the median of each, and ``ACI / local`` as the median of the per-round ratios
  (target ≤ 1.5).
* **scoring throughput**: requests/s of ``POST /score`` (2 rows) through the ACI service's
  ``scoring_uri`` against the same ``score.py`` and model served by
  ``python -m aml_core.runtime serve`` started directly, from ``--clients`` Python threads
  with keep-alive sessions for ``--duration`` seconds each, alternating over the rounds.
  Reported: medians and ``ACI / direct`` (target ≥ 0.9).

``--arm-retry-after`` is the seconds ARM asks clients to wait between polls (Azure sends whole
seconds; 1 is the emulator's default). No time is asserted. Usage::

    python benchmarks/aci_deploy.py [--rounds 3] [--duration 5] [--clients 4] [--arm-retry-after 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

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


def deploy_to_first_score(ws: Any, name: str, model: Any, inference: Any, config: Any) -> tuple[float, Any]:
    from aml_core.model import Model

    started = time.perf_counter()
    service = Model.deploy(ws, name, [model], inference, config)
    service.wait_for_deployment()
    while True:
        try:
            service.run(SAMPLE)
            return time.perf_counter() - started, service
        except Exception:  # noqa: BLE001 - not serving yet: try again until it does
            if time.perf_counter() - started > 300:
                raise
            time.sleep(0.02)


def throughput(url: str, headers: dict[str, str], duration: float, clients: int) -> float:
    """Requests/s of ``clients`` threads posting SAMPLE for ``duration`` seconds (all must be 200)."""
    counts = [0] * clients
    failures: list[str] = []
    stop = time.perf_counter() + duration

    def client(index: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop:
                response = session.post(url, data=SAMPLE, headers=headers, timeout=30)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"scoring failed: {failures[0]}")
    return sum(counts) / (time.perf_counter() - began)


def start_direct_runtime(workdir: Path, app: Path, model_dir: Path) -> tuple[subprocess.Popen, str]:
    spec = workdir / "spec.json"
    spec.write_text(json.dumps({"entry_script": str(app / "score.py"), "source_dir": str(app),
                                "model_dir": str(model_dir)}))
    state = workdir / "state.json"
    process = subprocess.Popen([sys.executable, "-m", "aml_core.runtime", "serve", "--host", "127.0.0.1",
                                "--port", "0", "--workers", "1", "--spec", str(spec), "--state", str(state)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            current = json.loads(state.read_text())
        except (FileNotFoundError, ValueError):
            current = {}
        if current.get("status") == "ready":
            return process, f"http://127.0.0.1:{current['port']}/score"
        if process.poll() is not None:
            raise RuntimeError(f"the direct runtime exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError("the direct runtime was not ready in 120 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--clients", type=int, default=4, help="client threads per throughput run")
    parser.add_argument("--arm-retry-after", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from aml_core.inference import InferenceConfig
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    from aml_emulator import Emulator
    from aml_provider_aci import AciWebservice
    from aml_provider_local import LocalWebservice

    with tempfile.TemporaryDirectory(prefix="aml-bench-aci-") as tmp:
        root = Path(tmp)
        os.environ["AML_PROFILE_DIR"] = str(root / "profiles")
        os.environ.pop("AML_PROFILE", None)
        app = root / "app"
        app.mkdir()
        (app / "score.py").write_text(SCORE_PY)
        model_dir = root / "model"
        model_dir.mkdir()
        x, y = load_diabetes(return_X_y=True)
        joblib.dump(Ridge().fit(x, y), model_dir / "sklearn_regression_model.pkl")
        inference = InferenceConfig(entry_script="score.py", source_directory=str(app))
        results: dict[str, list[float]] = {"aci": [], "local": [], "ratio": [], "aci_rps": [], "direct_rps": []}
        with Emulator(root / "emulator", services=["registry", "arm"], arm_retry_after=args.arm_retry_after) as emu:
            emu.profile().save()
            ws = Workspace.create(root / "ws", container_registry="profile:emulator")
            model = Model.register(ws, str(model_dir / "sklearn_regression_model.pkl"), "sklearn_regression_model")
            direct, direct_url = start_direct_runtime(root, app, model_dir)
            try:
                for round_ in range(args.rounds):
                    order = ["aci", "local"] if round_ % 2 == 0 else ["local", "aci"]
                    made: dict[str, Any] = {}
                    seconds: dict[str, float] = {}
                    try:
                        for target in order:
                            config = (AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1) if target == "aci"
                                      else LocalWebservice.deploy_configuration(engine="process"))
                            seconds[target], made[target] = deploy_to_first_score(
                                ws, f"bench-{target}-{round_}", model, inference, config)
                        results["aci"].append(seconds["aci"])
                        results["local"].append(seconds["local"])
                        results["ratio"].append(seconds["aci"] / seconds["local"])
                        pair = [("aci", made["aci"].scoring_uri), ("direct", direct_url)]
                        for label, url in (pair if round_ % 2 == 0 else pair[::-1]):
                            results[f"{label}_rps"].append(throughput(url, {"Content-Type": "application/json"},
                                                                      args.duration, args.clients))
                        print(f"round {round_ + 1}: deploy-to-first-score ACI {seconds['aci']:.2f} s, local "
                              f"{seconds['local']:.2f} s; throughput ACI {results['aci_rps'][-1]:.0f} req/s, "
                              f"direct {results['direct_rps'][-1]:.0f} req/s", flush=True)
                    finally:
                        for service in made.values():
                            service.delete()
            finally:
                direct.terminate()
                direct.wait(timeout=60)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmedians over {args.rounds} round(s), ARM Retry-After {args.arm_retry_after:g} s, "
          f"{args.clients} client threads x {args.duration:g} s:")
    print(f"  deploy-to-first-score: ACI {med['aci']:.2f} s, local {med['local']:.2f} s, "
          f"ACI / local {med['ratio']:.2f} (target <= 1.5)")
    print(f"  scoring throughput: ACI {med['aci_rps']:.0f} req/s, direct runtime {med['direct_rps']:.0f} req/s, "
          f"ACI / direct {med['aci_rps'] / med['direct_rps']:.2f} (target >= 0.9)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "medians": med, "python": platform.python_version()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
