"""Secrets at rest after a full AKS deployment on the emulator.

Every file, under the emulator's state directory and under the workspace, that holds a
secret (scoring keys, registry admin passwords, the front door's admin token, the ARM and
cluster tokens) in clear must be mode 0600 in directories that are 0700 all the way up;
the cluster's object store keeps no Secret payload in clear at all (Secrets are encrypted
at rest, as an apiserver with an EncryptionConfiguration keeps them).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path

import pytest

from aml_core.compute import ComputeTarget
from aml_core.inference import InferenceConfig
from aml_core.model import Model
from aml_provider_aks import AksCompute, AksWebservice

from aks_testing import emulator_with_profile

SCORE = """
def init():
    pass


def run(raw_data):
    return {"ok": True}
"""

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")


def _clear_forms(data: bytes) -> bytes:
    """The file's bytes plus every base64 run in it decoded (a Secret's ``data`` is base64)."""
    decoded = [data]
    for match in _BASE64_RUN.finditer(data):
        chunk = match.group()
        try:
            decoded.append(base64.b64decode(chunk + b"=" * (-len(chunk) % 4)))
        except (binascii.Error, ValueError):
            continue
    return b"\n".join(decoded)


def _files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                yield path


def _world_or_group_access(path: Path) -> bool:
    return bool(stat.S_IMODE(path.lstat().st_mode) & 0o077)


def _open_ancestors(path: Path, root: Path) -> list[str]:
    """The directories from ``root`` down to ``path`` that others may enter or read."""
    found = []
    current = path.parent
    while True:
        if _world_or_group_access(current):
            found.append(f"{current} ({oct(stat.S_IMODE(current.stat().st_mode))})")
        if current == root:
            return found
        current = current.parent


@pytest.fixture
def default_umask():
    """What a login shell has: files 0644 and directories 0755 unless the code says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_no_secret_is_readable_by_others_after_an_aks_deploy(default_umask, tmp_path):
    from aml_core.workspace import Workspace

    state = tmp_path / "emulator-state"
    with emulator_with_profile(tmp_path / "profiles", state_dir=state) as emu:
        ws = Workspace.create(tmp_path / "ws", container_registry="profile:emulator")
        app = tmp_path / "app"
        app.mkdir()
        (app / "score.py").write_text(SCORE)
        (tmp_path / "model.txt").write_text("weights")
        model = Model.register(ws, str(tmp_path / "model.txt"), "m")
        target = ComputeTarget.create(ws, "aks-secrets", AksCompute.provisioning_configuration(
            cluster_purpose="DevTest", agent_count=1))
        target.wait_for_completion()
        service = Model.deploy(ws, "secretive", [model],
                               InferenceConfig(entry_script="score.py", source_directory=str(app)),
                               AksWebservice.deploy_configuration(num_replicas=1), target)
        service.wait_for_deployment()
        assert service.run('{"x": 1}') == {"ok": True}
        secrets = {
            "primary key": service.get_keys()[0],
            "secondary key": service.get_keys()[1],
            "front door admin token": emu.cluster.frontdoor_admin_token,
            "ARM token": emu.arm_token,
            "cluster token": emu.cluster.token,
            **{f"registry password {n}": p for n, p in emu.registry.credentials.passwords.items()},
        }
        emu.cluster.store.save()  # what a crash right now would leave on disk
        problems = []
        for root in (state, ws.root):
            if _world_or_group_access(root):
                problems.append(f"{root} is {oct(stat.S_IMODE(root.stat().st_mode))}, not 0700")
            for path in _files(root):
                content = _clear_forms(path.read_bytes())
                held = [what for what, value in secrets.items() if value.encode() in content]
                if not held:
                    continue
                if path.name.startswith("cluster-state"):
                    problems.append(f"{path} holds the {', '.join(held)} in clear")
                if _world_or_group_access(path):
                    problems.append(f"{path} holds the {', '.join(held)} and is "
                                    f"{oct(stat.S_IMODE(path.lstat().st_mode))}")
                problems.extend(f"{path} holds the {', '.join(held)} under {d}"
                                for d in _open_ancestors(path, root))
        service.delete()
    assert not problems, "\n".join(sorted(set(problems)))

