"""Shared pieces of the runtime tests: score.py sources and a live-server handle.

(A module with a unique name, not ``conftest``, so test modules can import it.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PYTHON = sys.executable
START_TIMEOUT = 60.0

DIABETES_SCORE = """
import json
import os

import joblib
import numpy as np


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.pkl")
    model = joblib.load(model_path)
    print("model loaded")


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    return result.tolist()
"""

# The same model, plus the behaviours the error-path tests need.
FEATURES_SCORE = """
import gc
import json
import os
import sys
import time

import joblib
import numpy as np


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"))
    print("features init done")


def run(raw_data, request_headers):
    payload = json.loads(raw_data)
    if "boom" in payload:
        raise ValueError("boom: " + payload["boom"])
    if "sleep" in payload:
        time.sleep(payload["sleep"])
        return "slept"
    if "spin" in payload:
        deadline = time.time() + payload["spin"]
        while time.time() < deadline:
            pass
        return "spun"
    if "headers" in payload:
        return {"headers": request_headers}
    if "say" in payload:
        print("user says " + payload["say"])
        print("to stderr " + payload["say"], file=sys.stderr)
        return "said"
    if "text" in payload:
        return payload["text"]
    if "gc" in payload:
        return {"frozen": gc.get_freeze_count()}
    if "numpy" in payload:
        return model.predict(np.array(payload["numpy"]))
    return model.predict(np.array(payload["data"])).tolist()
"""

SAMPLE = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]


class Server:
    """A running ``serve`` process; stop it with :meth:`stop` (fixtures do)."""

    def __init__(self, workdir: Path, args: list[str], env: dict | None = None) -> None:
        self.workdir = workdir
        self.state_path = workdir / "state.json"
        self.log_path = workdir / "server.log"
        cmd = [PYTHON, "-m", "aml_core.runtime", "serve", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--state", str(self.state_path), *args]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir
        )

    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_for(self, predicate, timeout: float = START_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and predicate(state):
                return state
            if self.proc.poll() is not None:
                state = self.state()
                if state and predicate(state):
                    return state
                raise AssertionError(
                    f"server exited with {self.proc.returncode}; state {state}; log:\n{self.log()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"timed out; state {self.state()}; log:\n{self.log()}")

    def wait_ready(self) -> Server:
        self.wait_for(lambda s: s.get("status") == "ready")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.state()['port']}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        # the fixtures' servers must leave no worker behind
        for pid in self.state().get("workers", []):
            _kill_if_alive(pid)
        return self.proc.returncode


def _kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def write_script(directory: Path, source: str, name: str = "score.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def write_spec(directory: Path, entry: Path, model_dir: Path | str, **extra) -> Path:
    spec = {
        "entry_script": str(entry),
        "source_dir": None,
        "model_dir": str(model_dir),
        "env": {},
        "scoring_timeout_ms": None,
        "max_body_bytes": None,
    }
    spec.update(extra)
    path = directory / "spec.json"
    path.write_text(json.dumps(spec))
    return path
