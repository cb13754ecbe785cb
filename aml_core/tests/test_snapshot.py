"""Source snapshots: what of a source folder goes into a service or an image (issue 10, items 1-2)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from aml_core import Environment, InferenceConfig, Model, Workspace
from aml_core.errors import InvalidConfig
from aml_core.snapshot import LargeSnapshotWarning, SourceSnapshot

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def _relatives(snapshot: SourceSnapshot) -> set[str]:
    return {e.relative for e in snapshot.entries}


def _project_with_state(root: Path) -> Path:
    """A project folder as the README sets one up: code, plus a workspace holding a cluster
    kubeconfig, an emulator's state with its kubeconfig, a venv and a git checkout."""
    shutil.copytree(QUICKSTART, root)
    ws = Workspace.create(root / "my-workspace")
    kubeconfig = ws.root / "services" / "aks" / "computes" / "aks1.kubeconfig"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("users:\n- user: {token: SECRET-BEARER-TOKEN}\n")
    os.chmod(kubeconfig, 0o600)
    emulator = root / ".aml-emulator"
    emulator.mkdir()
    (emulator / "emulator.json").write_text("{}")
    (emulator / "kubeconfig").write_text("token: SECRET-EMULATOR-TOKEN\n")
    venv = root / ".venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib" / "big.so").write_bytes(b"\0" * 1024)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    return root


def test_state_folders_are_never_in_a_snapshot(tmp_path):
    root = _project_with_state(tmp_path / "project")
    snapshot = SourceSnapshot.take(root)
    assert _relatives(snapshot) == {"README.md", "deploy.py", "requirements.txt", "score.py", "test_quickstart.py"}
    reasons = dict(snapshot.excluded)
    assert reasons["my-workspace"] == "an aml workspace"
    assert reasons[".aml-emulator"] == "an emulator's state"
    assert reasons[".venv"] == "a virtual environment"
    assert reasons[".git"] == "VCS metadata or a cache"


def test_amlignore_wins_over_gitignore_and_deeper_files_override(tmp_path):
    root = tmp_path / "src"
    (root / "data").mkdir(parents=True)
    (root / "pkg").mkdir()
    for rel in ("score.py", "notes.log", "keep.log", "data/big.csv", "pkg/a.tmp", "pkg/b.tmp", "gitonly.txt"):
        (root / rel).write_text(rel)
    (root / ".gitignore").write_text("gitonly.txt\n")
    (root / ".amlignore").write_text("*.log\n!keep.log\ndata/\n*.tmp\n")
    (root / "pkg" / ".gitignore").write_text("!b.tmp\n")
    kept = _relatives(SourceSnapshot.take(root))
    # .amlignore replaces .gitignore in its folder; pkg/ has only a .gitignore, which applies there
    assert kept == {".amlignore", ".gitignore", "score.py", "keep.log", "gitonly.txt", "pkg", "pkg/.gitignore",
                    "pkg/b.tmp"}


def test_gitignore_is_used_when_there_is_no_amlignore(tmp_path):
    root = tmp_path / "src"
    (root / "outputs").mkdir(parents=True)
    (root / "score.py").write_text("")
    (root / "outputs" / "run.bin").write_text("x")
    (root / ".gitignore").write_text("outputs/\n")
    assert _relatives(SourceSnapshot.take(root)) == {".gitignore", "score.py"}


def test_a_large_snapshot_warns_with_its_biggest_entries(tmp_path):
    root = tmp_path / "src"
    (root / "data").mkdir(parents=True)
    (root / "score.py").write_text("x")
    (root / "data" / "blob.bin").write_bytes(b"\0" * 4096)
    (root / "weights.bin").write_bytes(b"\0" * 2048)
    with pytest.warns(LargeSnapshotWarning, match=r"Biggest entries: data/ \(0\.0 MiB\), weights\.bin.*\.amlignore"):
        SourceSnapshot.take(root, warn_bytes=1000)


def test_the_size_limit_comes_from_the_environment(tmp_path, monkeypatch):
    root = tmp_path / "src"
    root.mkdir()
    (root / "x.bin").write_bytes(b"\0" * 2 * 1024 * 1024)
    monkeypatch.setenv("AML_SNAPSHOT_WARN_MB", "1")
    with pytest.warns(LargeSnapshotWarning, match="over the 1.0 MiB snapshot limit"):
        SourceSnapshot.take(root)
    monkeypatch.setenv("AML_SNAPSHOT_WARN_MB", "lots")
    with pytest.raises(InvalidConfig, match="AML_SNAPSHOT_WARN_MB='lots' is not a number"):
        SourceSnapshot.take(root)


def test_a_source_folder_that_is_a_workspace_keeps_only_the_code(tmp_path):
    ws = Workspace.create(tmp_path / "both")
    (ws.root / "score.py").write_text("")
    assert _relatives(SourceSnapshot.take(ws.root)) == {"score.py"}


def _oci_layer_members(layout: Path, tag: str) -> list[tarfile.TarInfo]:
    """Every member of every layer of ``layout:tag``, read from the OCI layout's own files."""
    index = json.loads((layout / "index.json").read_text())
    manifest_desc = next(m for m in index["manifests"]
                         if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)

    def blob(digest: str) -> bytes:
        algorithm, hexdigest = digest.split(":")
        return (layout / "blobs" / algorithm / hexdigest).read_bytes()

    manifest = json.loads(blob(manifest_desc["digest"]))
    members = []
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) as tar:
            members.extend(tar.getmembers())
    return members


def test_an_image_of_a_folder_holding_a_workspace_kubeconfig_and_venv_carries_none_of_them(tmp_path, monkeypatch):
    root = _project_with_state(tmp_path / "project")
    monkeypatch.chdir(root)
    ws = Workspace.get("my-workspace")
    (tmp_path / "model.pkl").write_bytes(b"model")
    model = Model.register(ws, model_path=str(tmp_path / "model.pkl"), model_name="m")
    env = Environment.from_pip_requirements("env", "requirements.txt")
    config = InferenceConfig(entry_script="score.py", source_directory=".", environment=env)
    first = Model.package(ws, [model], config, image_name="myimage")
    second = Model.package(ws, [model], config, image_name="myimage")
    # the second image does not embed the first (which lives in the workspace)
    assert first.digest == second.digest
    layout = ws.root / "registry" / "myimage"
    names = [m.name for m in _oci_layer_members(layout, "2")]
    app = [n for n in names if n.startswith("var/azureml-app/project")]
    assert "var/azureml-app/project/score.py" in app
    for forbidden in ("aml.db", "aml-workspace.json", "kubeconfig", "pyvenv.cfg", ".git", "emulator.json", "big.so"):
        assert not [n for n in names if forbidden in n], forbidden
