"""Workspace and model registry: versions, filters, downloads, edits, safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aml_core.errors import Conflict, InvalidConfig, NotFound
from aml_core.model import Model
from aml_core.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"weights-v1")
    return path


def test_same_name_gets_the_next_version(ws, model_file):
    first = Model.register(ws, model_file, "ridge")
    second = Model.register(ws, model_file, "ridge")
    assert (first.version, second.version) == (1, 2)
    assert Model(ws, "ridge").version == 2
    assert Model(ws, "ridge", version=1).id == "ridge:1"
    assert Model(ws, id="ridge:1") == first


def test_a_folder_keeps_its_tree_and_downloads_whole(ws, tmp_path):
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.json").write_text("{}")
    model = Model.register(ws, folder, "bundle")
    out = Path(model.download(tmp_path / "out"))
    assert out.name == "bundle"
    assert (out / "a.bin").read_bytes() == b"a" and (out / "sub" / "b.json").read_text() == "{}"
    with pytest.raises(InvalidConfig, match="exist_ok=True"):
        model.download(tmp_path / "out")
    model.download(tmp_path / "out", exist_ok=True)


def test_identical_files_are_stored_once(ws, model_file):
    Model.register(ws, model_file, "a")
    Model.register(ws, model_file, "b")
    stored = [p for p in (ws.root / "artifacts" / "sha256").rglob("*") if p.is_file()]
    assert len(stored) == 1


def test_list_filters_by_name_tags_properties_and_latest(ws, model_file):
    Model.register(ws, model_file, "a", tags={"team": "x"})
    Model.register(ws, model_file, "a", tags={"team": "y", "stage": "prod"})
    Model.register(ws, model_file, "b", properties={"framework": "sklearn"})
    assert [m.id for m in Model.list(ws, name="a")] == ["a:2", "a:1"]
    assert [m.id for m in Model.list(ws, tags=["stage"])] == ["a:2"]
    assert [m.id for m in Model.list(ws, tags=[["team", "x"]])] == ["a:1"]
    assert [m.id for m in Model.list(ws, properties=[["framework", "sklearn"]])] == ["b:1"]
    assert sorted(m.id for m in Model.list(ws, latest=True)) == ["a:2", "b:1"]


def test_tags_and_properties_edit_in_place(ws, model_file):
    model = Model.register(ws, model_file, "m", tags={"a": "1"})
    model.add_tags({"b": "2"})
    model.remove_tags(["a"])
    model.add_properties({"p": "1"})
    fresh = Model(ws, "m")
    assert fresh.tags == {"b": "2"} and fresh.properties == {"p": "1"}
    with pytest.raises(InvalidConfig, match="cannot be changed"):
        fresh.add_properties({"p": "2"})


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "a" * 256, "slash/name"])
def test_invalid_names_state_the_rule(ws, model_file, name):
    with pytest.raises(InvalidConfig, match="letters, digits"):
        Model.register(ws, model_file, name)


def test_missing_path_is_a_clear_error(ws, tmp_path):
    with pytest.raises(InvalidConfig, match="does not exist"):
        Model.register(ws, tmp_path / "nope.pkl", "m")


def test_a_link_leaving_the_model_folder_is_refused(ws, tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "ok.bin").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    (folder / "leak").symlink_to(secret)
    with pytest.raises(InvalidConfig, match="leaves it"):
        Model.register(ws, folder, "bundle")
    assert Model.list(ws) == []
    stored = [p.read_bytes() for p in (ws.root / "artifacts").rglob("*") if p.is_file()]
    assert b"do not copy" not in stored


def test_a_link_inside_the_folder_is_stored_as_its_content(ws, tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "real.bin").write_bytes(b"x")
    (folder / "alias.bin").symlink_to("real.bin")
    model = Model.register(ws, folder, "bundle")
    assert sorted(f.path for f in model.record.files) == ["alias.bin", "real.bin"]


def test_unknown_model_is_not_found(ws):
    with pytest.raises(NotFound, match="aml model list"):
        Model(ws, "ghost")


def test_delete_removes_one_version(ws, model_file):
    Model.register(ws, model_file, "m")
    second = Model.register(ws, model_file, "m")
    second.delete()
    assert [m.id for m in Model.list(ws)] == ["m:1"]


def test_delete_is_refused_while_a_service_uses_the_model(ws, model_file):
    from aml_core.records import ServiceRecord
    from aml_core.webservice import _store

    model = Model.register(ws, model_file, "m")
    _store(ws, ServiceRecord(name="svc", kind="local", state="running", models=(model.id,)))
    with pytest.raises(Conflict, match="svc"):
        model.delete()
    assert Model(ws, "m").id == "m:1"


def test_from_config_finds_the_workspace(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("AML_WORKSPACE", str(ws.root))
    assert Workspace.from_config().root == ws.root
    monkeypatch.delenv("AML_WORKSPACE")
    nested = ws.root / "deep" / "er"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert Workspace.from_config().root == ws.root
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFound, match="AML_WORKSPACE"):
        Workspace.from_config()


def test_a_workspace_from_a_newer_version_is_refused(ws):
    config = ws.root / "aml-workspace.json"
    config.write_text(config.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(InvalidConfig, match="newer version"):
        Workspace.get(ws.root)


def test_create_refuses_an_existing_workspace(ws):
    with pytest.raises(InvalidConfig, match="exist_ok"):
        Workspace.create(ws.root)
    assert Workspace.create(ws.root, exist_ok=True).root == ws.root


# -- processes ------------------------------------------------------------------------

REGISTER_LOOP = textwrap.dedent(
    """
    import sys
    from aml_core.model import Model
    from aml_core.workspace import Workspace
    ws = Workspace.get(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[3])):
        print(Model.register(ws, sys.argv[2], "shared").version, flush=True)
    """
)


def test_two_processes_registering_one_name_get_distinct_consecutive_versions(ws, model_file):
    per_process = 15
    procs = [
        subprocess.Popen([sys.executable, "-c", REGISTER_LOOP, str(ws.root), str(model_file), str(per_process)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:  # release both at once so their registrations interleave
        p.stdin.write("go\n")
        p.stdin.flush()
    versions = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        versions += [int(v) for v in out.split()]
    assert sorted(versions) == list(range(1, 2 * per_process + 1))
    assert [m.version for m in Model.list(ws, name="shared")] == list(range(2 * per_process, 0, -1))


def test_a_register_killed_midway_leaves_no_half_written_model(ws, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(1500):
        (folder / f"part-{i:04}.bin").write_bytes(os.urandom(2048))
    script = textwrap.dedent(
        """
        import sys
        from aml_core.model import Model
        from aml_core.workspace import Workspace
        Model.register(Workspace.get(sys.argv[1]), sys.argv[2], "big")
        """
    )
    artifacts = ws.root / "artifacts" / "sha256"
    proc = subprocess.Popen([sys.executable, "-c", script, str(ws.root), str(folder)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for _ in artifacts.rglob("*") if _.is_file()) < 50:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = sum(1 for p in artifacts.rglob("*") if p.is_file())
    assert 0 < stored < 1500, "the kill should land while files are being copied"
    assert Model.list(ws) == []
    # The workspace still works, and a new register of the same folder completes.
    model = Model.register(ws, folder, "big")
    assert model.version == 1 and len(model.record.files) == 1500
