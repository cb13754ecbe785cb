"""Front door overhead: throughput through the front door vs calling the replica directly.

One replica: ``python -m aml_core.runtime serve`` (1 worker) with a trivial ``score.py``
(``run()`` returns a constant). One front door: ``python -m aml_core.frontdoor`` in its own
process, with one key-auth service pointing at that replica
(``max_concurrent_requests_per_replica`` = the wrk connection count, so the benchmark
measures proxying, not the queue). Debian's ``wrk`` (one thread) POSTs a small JSON body from a
separate process; direct and front-door runs alternate, and the medians are compared. Each run
also reports the CPU time (user + system, from ``/proc``) the front door's and the replica's
processes used per request: on a shared machine a steadier measure of cost than requests/s.

    .venv/bin/python benchmarks/frontdoor.py [--rounds 3] [--duration 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
SCORE = "def init():\n    pass\n\n\ndef run(raw_data):\n    return {'ok': True}\n"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aml-bench-frontdoor-"))
    procs: list[subprocess.Popen] = []
    try:
        (work / "score.py").write_text(SCORE)
        (work / "model").mkdir()
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
        body = json.dumps({"auth": "key", "keys": {"primary": key, "secondary": key + "2"},
                           "max_concurrent_requests_per_replica": args.connections,
                           "versions": {"bench": {"backends": [backend], "traffic_percentile": 100,
                                                  "is_default": True}}}).encode()
        req = urllib.request.Request(f"{frontdoor}/-/services/bench", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {admin}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
        lua = work / "post.lua"
        lua.write_text('wrk.method = "POST"\nwrk.body = \'{"data": [[1, 2, 3]]}\'\n'
                       'wrk.headers["Content-Type"] = "application/json"\n'
                       f'wrk.headers["Authorization"] = "Bearer {key}"\n')
        targets = {"direct": backend + "/score", "frontdoor": frontdoor + "/api/v1/service/bench/score"}
        for url in targets.values():  # warm up (connections, imports, caches)
            wrk(url, lua, 1, args.connections)
        results: dict[str, list[float]] = {name: [] for name in targets}
        # CPU us/request: the replica's in direct runs, the replica's and the front door's in front door runs
        cpu: dict[str, list[float]] = {"direct": [], "replica": [], "frontdoor": []}
        backend_proc, fd_proc = procs
        for rnd in range(args.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for name in order:
                before = cpu_seconds(backend_proc.pid), cpu_seconds(fd_proc.pid)
                rps, count, bad = wrk(targets[name], lua, args.duration, args.connections)
                after = cpu_seconds(backend_proc.pid), cpu_seconds(fd_proc.pid)
                if bad:
                    raise RuntimeError(f"{name}: {bad} non-2xx responses")
                results[name].append(rps)
                replica_us, fd_us = ((a - b) / count * 1e6 for a, b in zip(after, before))
                line = f"round {rnd + 1} {name:9s} {rps:9.0f} req/s   CPU/req: replica {replica_us:4.0f} us"
                if name == "frontdoor":
                    cpu["replica"].append(replica_us)
                    cpu["frontdoor"].append(fd_us)
                    line += f", front door {fd_us:4.0f} us"
                else:
                    cpu["direct"].append(replica_us)
                print(line, flush=True)
        direct, through = statistics.median(results["direct"]), statistics.median(results["frontdoor"])
        print(f"median direct    {direct:9.0f} req/s   CPU/req: replica {statistics.median(cpu['direct']):.0f} us")
        print(f"median frontdoor {through:9.0f} req/s   CPU/req: replica {statistics.median(cpu['replica']):.0f} us, "
              f"front door {statistics.median(cpu['frontdoor']):.0f} us")
        print(f"ratio {through / direct:.2f} (target >= 0.85); load avg {os.getloadavg()[0]:.1f}")
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
