"""Front door overhead: throughput through the front door vs calling the replica directly.

Per workload, one replica: ``python -m aml_core.runtime serve`` (1 worker), and one front door:
``python -m aml_core.frontdoor`` in its own process, with one key-auth service pointing at that
replica (``max_concurrent_requests_per_replica`` = the wrk connection count, so the front door
never queues a request: the benchmark measures proxying, not the queue). Workloads:

* ``trivial``: ``run()`` returns a constant; the body is ``{"data": [[1, 2, 3]]}``. The front
  door's own cost against a replica that does almost nothing.
* ``model``: scikit-learn ``Ridge`` fitted on ``load_diabetes`` and saved with joblib by this
  script (in a temp dir); ``score.py`` loads it in ``init()`` and in ``run()`` does json ->
  numpy -> ``predict`` -> list (as ``aml_contract_tests`` ``assets/score_v1.py``); the body
  is 2 rows of 10 floats.

Debian's ``wrk`` (one thread) POSTs the body from a separate process; direct and front-door
runs alternate, and the medians are compared. Each run also reports the CPU time (user +
system, from ``/proc``) the replica's and the front door's processes, and wrk, used per
request (on a shared machine a steadier measure of cost than requests/s), and how many cores
the machine's other processes used meanwhile.

    .venv/bin/python benchmarks/frontdoor.py [--workload both|trivial|model] [--rounds 3]
        [--duration 5] [--connections 8] [--max-concurrent N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PYTHON = sys.executable
WRK = shutil.which("wrk") or "/usr/bin/wrk"
TRIVIAL_SCORE = "def init():\n    pass\n\n\ndef run(raw_data):\n    return {'ok': True}\n"
MODEL_SCORE = """\
import json
import os

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "sklearn_regression_model.pkl"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
"""
TRAIN = """\
import sys

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

X, y = load_diabetes(return_X_y=True)
joblib.dump(Ridge().fit(X, y), sys.argv[1])
"""
WORKLOADS = {
    # name: (score.py, request body)
    "trivial": (TRIVIAL_SCORE, json.dumps({"data": [[1, 2, 3]]})),
    "model": (MODEL_SCORE, json.dumps({"data": [[0.1 * i for i in range(1, 11)],
                                                [0.1 * i for i in range(10, 0, -1)]]})),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def wrk(url: str, lua: Path, duration: int, connections: int) -> tuple[float, int, int]:
    """``(requests/s, requests, non-2xx responses)``."""
    out = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(lua), url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, count, int(bad.group(1)) if bad else 0


def cpu_seconds(group: int) -> float:
    """User + system CPU time of the live processes in process group ``group``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine, all cores (``/proc/stat``)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user and nice)
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this script's waited-for children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench(workload: str, args: argparse.Namespace, work: Path) -> dict:
    """Alternating direct and front-door runs of one workload; the medians."""
    score, request_body = WORKLOADS[workload]
    work = work / workload
    (work / "model").mkdir(parents=True)
    (work / "score.py").write_text(score)
    if workload == "model":
        subprocess.run([PYTHON, "-c", TRAIN, str(work / "model" / "sklearn_regression_model.pkl")],
                       check=True)
    procs: list[subprocess.Popen] = []
    try:
        backend_port, fd_port = free_port(), free_port()
        procs.append(start([PYTHON, "-m", "aml_core.runtime", "serve", "--port", str(backend_port),
                            "--workers", "1", "--entry_script", str(work / "score.py"),
                            "--model_dir", str(work / "model")], work / "backend.log"))
        admin, key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        token_file = work / "admin"
        token_file.write_text(admin)
        token_file.chmod(0o600)
        procs.append(start([PYTHON, "-m", "aml_core.frontdoor", "--port", str(fd_port),
                            "--admin-token-file", str(token_file)], work / "frontdoor.log"))
        backend = f"http://127.0.0.1:{backend_port}"
        frontdoor = f"http://127.0.0.1:{fd_port}"
        wait_http(backend + "/")
        wait_http(frontdoor + "/")
        limit = args.max_concurrent or args.connections
        body = json.dumps({"auth": "key", "keys": {"primary": key, "secondary": key + "2"},
                           "max_concurrent_requests_per_replica": limit,
                           "versions": {"bench": {"backends": [backend], "traffic_percentile": 100,
                                                  "is_default": True}}}).encode()
        req = urllib.request.Request(f"{frontdoor}/-/services/bench", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {admin}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        lua = work / "post.lua"
        lua.write_text('wrk.method = "POST"\n'
                       f"wrk.body = {json.dumps(request_body)}\n"
                       'wrk.headers["Content-Type"] = "application/json"\n'
                       f'wrk.headers["Authorization"] = "Bearer {key}"\n')
        targets = {"direct": backend + "/score", "frontdoor": frontdoor + "/api/v1/service/bench/score"}
        for url in targets.values():  # warm up (connections, imports, caches)
            wrk(url, lua, 1, args.connections)
        results: dict[str, list[float]] = {name: [] for name in targets}
        # CPU us/request: the replica's (and wrk's) in direct runs, the replica's, the front
        # door's (and wrk's) in front door runs; "others": cores the rest of the machine used
        cpu: dict[str, list[float]] = {k: [] for k in ("direct", "direct_wrk", "replica", "frontdoor",
                                                       "frontdoor_wrk", "others")}
        loads: list[float] = []
        backend_proc, fd_proc = procs
        for rnd in range(args.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for name in order:
                before = (cpu_seconds(backend_proc.pid), cpu_seconds(fd_proc.pid), children_cpu_seconds(),
                          machine_busy_seconds(), time.monotonic())
                rps, count, bad = wrk(targets[name], lua, args.duration, args.connections)
                after = (cpu_seconds(backend_proc.pid), cpu_seconds(fd_proc.pid), children_cpu_seconds(),
                         machine_busy_seconds(), time.monotonic())
                loads.append(os.getloadavg()[0])
                if bad:
                    raise RuntimeError(f"{workload} {name}: {bad} non-2xx responses")
                results[name].append(rps)
                replica_s, fd_s, wrk_s, busy_s, wall_s = (a - b for a, b in zip(after, before))
                replica_us, fd_us, wrk_us = (x / count * 1e6 for x in (replica_s, fd_s, wrk_s))
                others = max(0.0, busy_s - replica_s - fd_s - wrk_s) / wall_s
                cpu["others"].append(others)
                line = (f"{workload:7s} round {rnd + 1} {name:9s} {rps:7.0f} req/s   CPU/req: "
                        f"replica {replica_us:4.0f} us")
                if name == "frontdoor":
                    cpu["replica"].append(replica_us)
                    cpu["frontdoor"].append(fd_us)
                    cpu["frontdoor_wrk"].append(wrk_us)
                    line += f", front door {fd_us:4.0f} us"
                else:
                    cpu["direct"].append(replica_us)
                    cpu["direct_wrk"].append(wrk_us)
                print(f"{line}, wrk {wrk_us:3.0f} us; other processes {others:.2f} cores", flush=True)
        med = {k: statistics.median(v) for k, v in cpu.items()}
        med["direct_rps"] = statistics.median(results["direct"])
        med["frontdoor_rps"] = statistics.median(results["frontdoor"])
        med["load"] = statistics.median(loads)
        return med
    finally:
        for proc in procs:
            stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["both", *WORKLOADS], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--max-concurrent", type=int, default=0,
                        help="the service's max_concurrent_requests_per_replica (default: --connections)")
    args = parser.parse_args()
    workloads = list(WORKLOADS) if args.workload == "both" else [args.workload]
    work = Path(tempfile.mkdtemp(prefix="aml-bench-frontdoor-"))
    print(f"load avg (1 min) before: {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores", flush=True)
    try:
        rows = {name: bench(name, args, work) for name in workloads}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("medians; CPU in us/request; direct run: replica + wrk; front door run: replica + front door + wrk")
    print(f"{'workload':8s} {'direct':>8s} {'frontdoor':>9s} {'ratio':>5s}   {'direct CPU':>12s}"
          f"   {'front door run CPU':>20s}   {'others':>6s} {'load':>5s}")
    for name, m in rows.items():
        print(f"{name:8s} {m['direct_rps']:8.0f} {m['frontdoor_rps']:9.0f} "
              f"{m['frontdoor_rps'] / m['direct_rps']:5.2f}   {m['direct']:5.0f} + {m['direct_wrk']:4.0f}"
              f"   {m['replica']:5.0f} + {m['frontdoor']:5.0f} + {m['frontdoor_wrk']:4.0f}"
              f"   {m['others']:6.2f} {m['load']:5.2f}")
    print("target: ratio >= 0.85; others = cores used by the rest of the machine during the runs; "
          "load = 1-min load avg after each run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
