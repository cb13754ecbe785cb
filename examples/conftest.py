"""What the examples' tests share: an emulator started as a user starts it, in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def emulator_process(tmp_path) -> Iterator[Callable[..., dict[str, str]]]:
    """``start(*services, ready_within=60)`` runs ``python -m aml_emulator start --service ...``
    (no service named: its default set) with its state and cloud profile under ``tmp_path``,
    waits until it is ready, and returns the environment a script needs to find it; the
    emulator is stopped with SIGTERM (and must exit 0) after the test."""
    env = os.environ | {"AML_PROFILE_DIR": str(tmp_path / "profiles"), "PYTHONUNBUFFERED": "1"}
    env.pop("AML_PROFILE", None)
    started: list[subprocess.Popen] = []

    def start(*services: str, ready_within: float = 60) -> dict[str, str]:
        args = [arg for service in services for arg in ("--service", service)]
        emulator = subprocess.Popen([sys.executable, "-m", "aml_emulator", "start", "--state", str(tmp_path / "state"),
                                     *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        started.append(emulator)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(emulator.stdout), daemon=True).start()
        deadline = time.monotonic() + ready_within
        while not any("Emulator ready" in line for line in lines):
            assert emulator.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, f"the emulator did not start in {ready_within:g} s"
            time.sleep(0.1)
        return env

    yield start
    for emulator in started:
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(timeout=60) == 0
