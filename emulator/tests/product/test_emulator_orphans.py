"""Pods do not outlive an emulator that is SIGKILLed, and a restart on the same state ends
whatever a previous run left behind.

The emulator runs as a real process (``python -m aml_emulator start``) in a session of its
own; each pod runs in a process group of its own, with a grandchild (``sleep``) in the same
group, so "nothing left" is checked by process group, not only by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aml_emulator.cluster.kubelet import HOST_PROCESS_IMAGE

MARKER = "aml-orphan-test-pod"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a process, ``None`` once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _live_in_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[0] != "Z" and info[2] == pgid:
                found.append(int(entry.name))
    return found


def _pod_group() -> int | None:
    """The process group of the (newest) pod process carrying the marker."""
    best = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if MARKER not in (entry / "cmdline").read_text():
                continue
        except OSError:
            continue
        info = _stat(int(entry.name))
        if info is not None and info[0] != "Z" and (best is None or int(entry.name) > best[0]):
            best = (int(entry.name), info[2])
    return best[1] if best else None


def _watcher_of(emulator_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            try:
                if info and info[1] == emulator_pid and "_guardian_watcher" in (entry / "cmdline").read_text():
                    return int(entry.name)
            except OSError:
                continue
    return None


class RunningEmulator:
    """``python -m aml_emulator start --service cluster`` in its own session."""

    def __init__(self, state: Path, profiles: Path) -> None:
        env = os.environ | {"AML_PROFILE_DIR": str(profiles), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aml_emulator", "start", "--state", str(state), "--service", "cluster"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()
        _wait_for(lambda: any("Emulator ready" in line for line in self.output) or self.proc.poll() is not None,
                  60, "'Emulator ready'")
        assert self.proc.poll() is None, "".join(self.output)
        self.kubeconfig = state / "cluster" / "kubeconfig"
        self.state_file = state / "cluster" / "cluster-state.json"

    def core_api(self):
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
    # the shell's child `sleep` stays in the pod's process group: it must go too
    "spec": {"containers": [{"name": "main", "image": HOST_PROCESS_IMAGE, "command": [
        "sh", "-c", f"sleep 300 & exec {sys.executable} -c 'import time; time.sleep(300)' {MARKER}"]}]},
}


@pytest.fixture
def emulators(tmp_path):
    started: list[RunningEmulator] = []

    def start() -> RunningEmulator:
        emu = RunningEmulator(tmp_path / "state", tmp_path / "profiles")
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()
    # a failed assertion above must not leave this test's pods sleeping for minutes
    leftover = _pod_group()
    while leftover is not None:
        for pid in _live_in_group(leftover):
            os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: not _live_in_group(leftover), 10, "the leftover pod to end")
        leftover = _pod_group()


def _start_pod(emu: RunningEmulator) -> int:
    api = emu.core_api()
    try:
        api.create_namespaced_pod("default", POD)
    finally:
        api.api_client.close()
    pgid = _wait_for(_pod_group, 30, "the pod's process")
    _wait_for(lambda: len(_live_in_group(pgid)) >= 2, 10, "the pod's shell child")
    # the store saves (and first creates its file) a moment after a change; a pod younger than
    # that is lost in a crash
    _wait_for(lambda: emu.state_file.is_file() and '"sleeper"' in emu.state_file.read_text(), 10,
              "the pod to be saved")
    return pgid


def test_pods_die_with_a_sigkilled_emulator_and_a_restart_serves_again(emulators):
    emu = emulators()
    pod_group = _start_pod(emu)
    emulator_group = emu.proc.pid  # its own session: group id = pid
    emu.kill()
    _wait_for(lambda: not _live_in_group(pod_group), 10, f"pod group {pod_group} to end")
    _wait_for(lambda: not _live_in_group(emulator_group), 10, "the emulator's group to end")

    again = emulators()
    api = again.core_api()
    try:
        assert api.read_namespaced_pod("sleeper", "default").metadata.name == "sleeper"
        new_group = _wait_for(lambda: (g := _pod_group()) not in (None, pod_group) and g, 30,
                              "the pod to run again after the restart")
        _wait_for(lambda: api.read_namespaced_pod("sleeper", "default").status.phase == "Running", 30,
                  "the pod to be Running")
    finally:
        api.api_client.close()
    again.stop()
    _wait_for(lambda: not _live_in_group(new_group), 10, "the pod to stop with the emulator")


def test_a_restart_ends_the_pods_a_dead_emulator_and_its_watcher_left(emulators):
    emu = emulators()
    pod_group = _start_pod(emu)
    watcher = _wait_for(lambda: _watcher_of(emu.proc.pid), 10, "the process guardian")
    os.kill(watcher, signal.SIGKILL)  # the watcher dies first: nothing ends the pod at once
    emu.kill()
    assert _live_in_group(pod_group), "the pod should have survived (the watcher was killed first)"

    again = emulators()
    _wait_for(lambda: not _live_in_group(pod_group), 10, f"the survivors of pod group {pod_group} to be ended")
    _wait_for(lambda: (g := _pod_group()) not in (None, pod_group) and g, 30, "the pod to run again")
    again.stop()


def test_a_recorded_group_whose_id_was_reused_is_left_alone(tmp_path):
    """The record names a group by its leader's pid and start time: a live process that now
    has that pid but started at another time is someone else's, and is not touched."""
    import json

    from aml_emulator.guardian import end_recorded_survivors

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        record = tmp_path / "pod-processes.json"
        record.write_text(json.dumps({"groups": {str(other.pid): 1}}))  # a start time it does not have
        assert end_recorded_survivors(record) == []
        assert _live_in_group(other.pid) == [other.pid]
    finally:
        other.kill()
        other.wait(10)
