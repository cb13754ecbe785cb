"""ContainerSet (aml_emulator.arm.containers), the piece every ARM resource with running
containers uses: pull with credentials, run on the process engine, restart by policy."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from aml_core.engines import ProcessEngine
from aml_core.oci.registry import RegistryClient
from aml_emulator.arm.containers import ContainerSet, ContainerSpec


def _exiting_image(code: int):
    from aml_core.oci.image import EnvironmentSpec, Image
    from aml_core.oci.layers import Blob, gzip_bytes
    from aml_core.oci.media import OCI_LAYER_GZIP

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/README")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = Blob.from_bytes(gzip_bytes(raw.getvalue()), OCI_LAYER_GZIP)
    return Image.assemble({"config": {"Entrypoint": ["/bin/sh", "-c", f'echo "ran with $WHO"; exit {code}'],
                                      "Labels": {"org.aml.environment": EnvironmentSpec(name="x").to_label()}}},
                          [layer])


@pytest.fixture
def pushed(registry):
    creds = registry.credentials
    password = creds.passwords["password"]
    RegistryClient(registry.login_server, username=creds.username, password=password).push_image(
        "exits", _exiting_image(3), tags=("1",))
    return f"{registry.login_server}/exits:1", {registry.login_server: (creds.username, password)}


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def _set(pushed, tmp_path, policy, credentials=None):
    image, good = pushed
    spec = ContainerSpec(name="c", image=image, env={"WHO": "me"}, host_port=None,
                         credentials=good if credentials is None else credentials)
    return ContainerSet(ProcessEngine(cache_dir=tmp_path / "cache"), [spec], restart_policy=policy, label="t").start()


def test_never_leaves_a_failed_container_terminated_with_its_output(pushed, tmp_path):
    running = _set(pushed, tmp_path, "Never")
    try:
        _wait(lambda: running.state == "Failed")
        runtime = running.runtimes["c"]
        assert (runtime.state, runtime.exit_code, runtime.restart_count) == ("Terminated", 3, 0)
        assert "ran with me" in runtime.logs()
    finally:
        running.stop()


def test_on_failure_restarts_it(pushed, tmp_path):
    running = _set(pushed, tmp_path, "OnFailure")
    try:
        _wait(lambda: running.runtimes["c"].restart_count >= 1)
        assert running.runtimes["c"].previous["exitCode"] == 3
    finally:
        running.stop()
    assert running.state == "Stopped"


def test_a_refused_pull_is_reported_not_retried(pushed, tmp_path):
    image, good = pushed
    [server] = good
    running = _set(pushed, tmp_path, "Always", credentials={server: (good[server][0], "wrong")})
    assert running.started.wait(30)
    assert running.state == "Failed"
    assert running.pull_failure is not None and running.pull_failure.image == image
    assert "Failed to pull image" in running.runtimes["c"].logs()
    assert "wrong" not in repr(running) and "wrong" not in repr(running.specs["c"])


def test_an_unknown_restart_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="restart_policy"):
        ContainerSet(ProcessEngine(cache_dir=tmp_path), [], restart_policy="Sometimes")
