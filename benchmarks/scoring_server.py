"""Scoring-server throughput and latency: our runtime vs azureml-inference-server-http vs bare ASGI.

All three serve the same Azure-docs style ``score.py`` (Ridge on ``load_diabetes``, loaded
with joblib from ``AZUREML_MODEL_DIR``) on 127.0.0.1:

* ``aml-runtime``: ``python -m aml_core.runtime serve`` (this project), default settings;
* ``azmlinfsrv``: azureml-inference-server-http from PyPI, installed with ``uv`` into its own
  venv under ``benchmarks/.cache/``; started as its ``azmlinfsrv`` CLI starts it (gunicorn
  sync workers, ``entry:app``, timeout 300, access log on), but bound to 127.0.0.1;
* ``bare-asgi``: ``benchmarks/scoring_bare_app.py`` on uvicorn + uvloop + httptools, calling
  the same ``run()`` with nothing else (the floor for our overhead).

Load comes from Debian's ``wrk`` (one thread, keep-alive where the server allows it) in a
separate process, POSTing ``{"data": [[1..10], [10..1]]}`` through a Lua script. For each
worker count, the servers run side by side and every round visits each (server,
connections) point once, in an order that rotates per round; the table shows the median of
the rounds.

    .venv/bin/python benchmarks/scoring_server.py [--quick] [--rounds 3] [--duration 10]
        [--workers 1 2] [--connections 1 8 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache" / "scoring"
REF_VENV = CACHE / "azmlinfsrv-venv"
DEV_PYTHON = Path(sys.executable)
WRK = shutil.which("wrk") or "/usr/bin/wrk"

SCORE_PY = """\
import json
import os

import joblib
import numpy as np


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    return result.tolist()
"""

BODY = json.dumps({"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]})

WRK_LUA = f"""\
wrk.method = "POST"
wrk.body = {json.dumps(BODY)}
wrk.headers["Content-Type"] = "application/json"
"""


# --- setup ------------------------------------------------------------------------------------


def _versions(python: Path, modules: list[str]) -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    out = subprocess.run(
        [str(python), "-c", code, *modules], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def ensure_reference_venv() -> Path:
    """azureml-inference-server-http in its own venv, with our numpy/scikit-learn/joblib pins."""
    python = REF_VENV / "bin" / "python"
    uv = shutil.which("uv", path=str(DEV_PYTHON.parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("uv is needed to install the reference server: pip install uv")
    if not python.exists():
        subprocess.run(
            [uv, "venv", "--quiet", "--python", str(DEV_PYTHON), str(REF_VENV)], check=True
        )
    pins = _versions(DEV_PYTHON, ["scikit-learn", "numpy", "joblib"])
    wanted = ["azureml-inference-server-http"] + [
        f"{name}=={version}" for name, version in pins.items()
    ]
    try:
        have = _versions(python, ["azureml-inference-server-http", *pins])
        if all(have.get(name) == version for name, version in pins.items()):
            return python
    except subprocess.CalledProcessError:
        pass
    print("installing azureml-inference-server-http into", REF_VENV, flush=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), *wanted], check=True)
    return python


def prepare_app() -> tuple[Path, Path, Path]:
    """score.py, the model directory (azureml-models/diabetes/1) and the wrk Lua script."""
    app = CACHE / "app"
    model_dir = app / "azureml-models" / "diabetes" / "1"
    model_dir.mkdir(parents=True, exist_ok=True)
    score = app / "score.py"
    score.write_text(SCORE_PY)
    if not (model_dir / "model.pkl").exists():
        train = (
            "import joblib, sys\n"
            "from sklearn.datasets import load_diabetes\n"
            "from sklearn.linear_model import Ridge\n"
            "X, y = load_diabetes(return_X_y=True)\n"
            "joblib.dump(Ridge().fit(X, y), sys.argv[1])\n"
        )
        subprocess.run([str(DEV_PYTHON), "-c", train, str(model_dir / "model.pkl")], check=True)
    lua = app / "post.lua"
    lua.write_text(WRK_LUA)
    return score, model_dir, lua


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict, port: int, cwd: Path, log: Path):
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed by stop()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.cold_start = self._wait_healthy(started)

    def _wait_healthy(self, started: float, timeout: float = 120.0) -> float:
        request = urllib.request.Request(
            f"{self.url}/score", data=BODY.encode(), headers={"Content-Type": "application/json"}
        )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self._log.name}"
                )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s")

    def rss_mib(self) -> float:
        """Resident memory of the server's whole process tree."""
        pids = _tree(self.proc.pid)
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as handle:
                    for line in handle:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except FileNotFoundError:
                continue
        return total / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's live processes."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in _tree(self.proc.pid):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (FileNotFoundError, IndexError, ValueError):
                continue
        return total / ticks

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def start_servers(
    workers: int, score: Path, model_dir: Path, ref_python: Path, logs: Path
) -> list[Server]:
    base_env = {"AZUREML_MODEL_DIR": str(model_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    servers = []
    port = free_port()
    servers.append(
        Server(
            "aml-runtime",
            [
                str(DEV_PYTHON),
                "-m",
                "aml_core.runtime",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--entry_script",
                str(score),
                "--model_dir",
                str(model_dir),
            ],
            base_env,
            port,
            score.parent,
            logs / f"aml-runtime-w{workers}.log",
        )
    )
    port = free_port()
    # exactly what `azmlinfsrv --worker_count N` runs (amlserver_linux.run), but on 127.0.0.1
    servers.append(
        Server(
            "azmlinfsrv",
            [
                str(ref_python),
                "-m",
                "gunicorn",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                str(workers),
                "--timeout",
                "300",
                "--access-logfile",
                "-",
                "--error-logfile",
                "/dev/null",
                "azureml_inference_server_http.server.entry:app",
            ],
            {**base_env, "AZUREML_ENTRY_SCRIPT": str(score), "AML_APP_ROOT": str(score.parent)},
            port,
            score.parent,
            logs / f"azmlinfsrv-w{workers}.log",
        )
    )
    port = free_port()
    servers.append(
        Server(
            "bare-asgi",
            [
                str(DEV_PYTHON),
                "-m",
                "uvicorn",
                "scoring_bare_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--app-dir",
                str(HERE),
            ],
            {**base_env, "AZUREML_ENTRY_SCRIPT": str(score)},
            port,
            score.parent,
            logs / f"bare-asgi-w{workers}.log",
        )
    )
    return servers


# --- load -------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int, duration: int, lua: Path) -> dict:
    cmd = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--latency",
        "-s",
        str(lua),
        f"{url}/score",
    ]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, timeout=duration + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests_done,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def measure(args) -> dict:
    if not Path(WRK).exists():
        sys.exit("wrk is needed: apt-get install wrk")
    ref_python = ensure_reference_venv()
    score, model_dir, lua = prepare_app()
    logs = Path(tempfile.mkdtemp(prefix="scoring-bench-"))
    results: dict = {"points": [], "servers": {}, "settings": vars(args), "logs": str(logs)}
    for workers in args.workers:
        servers = start_servers(workers, score, model_dir, ref_python, logs)
        try:
            for server in servers:
                results["servers"][f"{server.name}/w{workers}"] = {
                    "cold_start_s": server.cold_start
                }
            # warm up every server (first requests fault in code paths and caches)
            for server in servers:
                run_wrk(server.url, 8, min(2, args.duration), lua)
            samples: dict[tuple, list[dict]] = {}
            for round_index in range(args.rounds):
                # the servers take turns at each connection count (their order rotates every
                # round), so each round compares them under the same background load
                shift = round_index % len(servers)
                order = servers[shift:] + servers[:shift]
                for server, connections in [(s, c) for c in args.connections for s in order]:
                    cpu_before = server.cpu_seconds()
                    sample = run_wrk(server.url, connections, args.duration, lua)
                    cpu = server.cpu_seconds() - cpu_before
                    sample["cpu_us_per_request"] = cpu / max(sample["requests"], 1) * 1e6
                    samples.setdefault((server.name, connections), []).append(sample)
                    print(
                        f"round {round_index + 1} w={workers} c={connections:<2} {server.name:<12} "
                        f"{sample['rps']:8.0f} req/s  p50 {sample['p50_ms']:6.2f} ms  "
                        f"p99 {sample['p99_ms']:6.2f} ms  cpu {sample['cpu_us_per_request']:5.0f} us/req",
                        flush=True,
                    )
            for server in servers:
                results["servers"][f"{server.name}/w{workers}"]["rss_mib"] = server.rss_mib()
            for (name, connections), runs in samples.items():
                results["points"].append(
                    {
                        "server": name,
                        "workers": workers,
                        "connections": connections,
                        "rps": statistics.median(r["rps"] for r in runs),
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                        "cpu_us_per_request": statistics.median(
                            r["cpu_us_per_request"] for r in runs
                        ),
                        "non_2xx": sum(r["non_2xx"] for r in runs),
                        "runs": runs,
                    }
                )
        finally:
            for server in servers:
                server.stop()
    return results


def report(results: dict) -> str:
    points = {(p["server"], p["workers"], p["connections"]): p for p in results["points"]}
    workers = sorted({p["workers"] for p in results["points"]})
    conns = sorted({p["connections"] for p in results["points"]})
    names = ["aml-runtime", "azmlinfsrv", "bare-asgi"]
    lines = [
        "| server | workers | "
        + " | ".join(f"req/s c={c}" for c in conns)
        + " | "
        + " | ".join(f"p50 / p99 ms c={c}" for c in conns)
        + " | "
        + " | ".join(f"CPU µs/req c={c}" for c in conns)
        + " | cold start | RSS |",
        "|---|---|" + "---|" * (3 * len(conns) + 2),
    ]
    for w in workers:
        for name in names:
            if (name, w, conns[0]) not in points:
                continue
            info = results["servers"].get(f"{name}/w{w}", {})
            row = [name, str(w)]
            row += [f"{points[(name, w, c)]['rps']:.0f}" for c in conns]
            row += [
                f"{points[(name, w, c)]['p50_ms']:.2f} / {points[(name, w, c)]['p99_ms']:.2f}"
                for c in conns
            ]
            row += [f"{points[(name, w, c)]['cpu_us_per_request']:.0f}" for c in conns]
            row += [f"{info.get('cold_start_s', 0):.1f} s", f"{info.get('rss_mib', 0):.0f} MiB"]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Ratios: aml-runtime over the other server, the median of the per-round ratios")
    lines.append("(each round runs the servers back to back, so a ratio compares like with like).")
    lines.append("")
    lines.append("| ratio | workers | " + " | ".join(f"c={c}" for c in conns) + " |")
    lines.append("|---|---|" + "---|" * len(conns))
    for w in workers:
        for other, label, key in (
            ("azmlinfsrv", "req/s vs azmlinfsrv", "rps"),
            ("bare-asgi", "req/s vs bare ASGI", "rps"),
            ("azmlinfsrv", "p99 vs azmlinfsrv", "p99_ms"),
            ("bare-asgi", "p99 vs bare ASGI", "p99_ms"),
            ("bare-asgi", "CPU per request vs bare ASGI", "cpu_us_per_request"),
        ):
            cells = []
            for c in conns:
                ours, theirs = points.get(("aml-runtime", w, c)), points.get((other, w, c))
                if not ours or not theirs:
                    cells.append("-")
                    continue
                ratios = [a[key] / b[key] for a, b in zip(ours["runs"], theirs["runs"]) if b[key]]
                cells.append(f"{statistics.median(ratios):.2f}×" if ratios else "-")
            lines.append(f"| {label} | {w} | " + " | ".join(cells) + " |")
    bad = [p for p in results["points"] if p["non_2xx"]]
    if bad:
        lines.append("")
        lines.append(
            "non-2xx responses: "
            + ", ".join(
                f"{p['server']} w={p['workers']} c={p['connections']}: {p['non_2xx']}" for p in bad
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 round of 2 s points")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="whole seconds per wrk run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2
    results = measure(args)
    table = report(results)
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
