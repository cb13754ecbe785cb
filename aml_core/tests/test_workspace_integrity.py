"""A damaged workspace is refused by name, checked on demand and restored from its backup.

The damage a user meets: a zero-byte ``aml.db`` (a full disk, a bad copy), one that is not
SQLite at all, one that is missing, one copied from another workspace, artifacts gone or
altered under the index, and temporary files of a register killed midway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_core.cli import cli
from aml_core.errors import InvalidConfig, WorkspaceDamaged
from aml_core.model import Model
from aml_core.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    (tmp_path / "weights.bin").write_bytes(b"w" * 1000)
    Model.register(ws, str(tmp_path / "weights.bin"), "precious")
    return ws


def _refused(root: Path, *fragments: str) -> WorkspaceDamaged:
    with pytest.raises(WorkspaceDamaged) as info:
        Workspace.get(root)
    assert info.value.code == "WorkspaceDamaged" and isinstance(info.value, InvalidConfig)
    for fragment in (str(root / "aml.db"), "aml workspace restore", *fragments):
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_a_zero_byte_database_is_refused_not_taken_for_an_empty_registry(ws):
    ws.db_path.write_bytes(b"")
    _refused(ws.root, "empty")
    assert ws.db_path.stat().st_size == 0  # refused, and not overwritten either


def test_a_database_that_is_not_sqlite_is_refused_by_name(ws):
    ws.db_path.write_bytes(b"this is not a database" * 100)
    _refused(ws.root, "not an SQLite database")


def test_a_missing_database_is_refused(ws):
    ws.db_path.unlink()
    _refused(ws.root, "missing")


def test_a_database_from_another_workspace_is_refused(ws, tmp_path):
    other = Workspace.create(tmp_path / "other")
    for suffix in ("", "-wal", "-shm"):
        Path(str(ws.db_path) + suffix).unlink(missing_ok=True)
    ws.db_path.write_bytes(other.db_path.read_bytes())
    _refused(ws.root, "belongs to another workspace")


def test_restore_brings_the_models_back_and_keeps_the_damaged_file(ws):
    ws.db_path.write_bytes(b"")
    restored = Workspace.restore(ws.root)
    assert [m.name for m in Model.list(restored)] == ["precious"]
    kept = [p.name for p in ws.root.iterdir() if p.name.startswith("aml.db.damaged-")]
    assert len(kept) == 1 and (ws.root / kept[0]).stat().st_size == 0
    assert Workspace.check(ws.root) == []


def test_check_reports_missing_and_altered_artifacts(ws):
    assert Workspace.check(ws.root) == []
    (artifact,) = [p for p in (ws.root / "artifacts" / "sha256").rglob("*") if p.is_file()]
    os.chmod(artifact, 0o644)
    artifact.write_bytes(b"tampered")
    problems = Workspace.check(ws.root)
    assert any("precious:1" in p and "does not match its digest" in p for p in problems), problems
    artifact.unlink()
    problems = Workspace.check(ws.root)
    assert any("precious:1" in p and "missing" in p for p in problems), problems


def test_the_cli_checks_and_restores(ws):
    runner = CliRunner()
    healthy = runner.invoke(cli, ["--workspace", str(ws.root), "workspace", "check"])
    assert healthy.exit_code == 0, healthy.output
    assert "no problems" in healthy.output
    ws.db_path.write_bytes(b"")
    damaged = runner.invoke(cli, ["--workspace", str(ws.root), "workspace", "check"])
    assert damaged.exit_code == 6, damaged.output
    assert "aml.db" in damaged.output and "aml workspace restore" in damaged.output
    restored = runner.invoke(cli, ["--workspace", str(ws.root), "workspace", "restore"])
    assert restored.exit_code == 0, restored.output
    assert runner.invoke(cli, ["--workspace", str(ws.root), "workspace", "check"]).exit_code == 0


def test_a_register_killed_midway_leaves_no_temporary_file_after_the_next_open(ws, tmp_path):
    # a source that hands over one chunk, then blocks: the register stops halfway through
    # writing its temporary artifact, and is SIGKILLed there
    script = textwrap.dedent(f"""
        import sys, time
        from aml_core.workspace import Workspace

        class Stalls:
            def __init__(self):
                self.sent = False
            def read(self, n):
                if not self.sent:
                    self.sent = True
                    return b"x" * 4096
                print("stalled", flush=True)
                time.sleep(600)

        Workspace.get({str(ws.root)!r}).put_artifact(Stalls())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "stalled"
        left = list((ws.root / "tmp").iterdir())
        assert left, "the register should have a temporary file open"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    Workspace.get(ws.root)
    assert list((ws.root / "tmp").iterdir()) == []


def test_a_temporary_file_of_a_live_register_is_left_alone(ws):
    mine = ws.root / "tmp" / f"artifact-{os.getpid()}-inflight"
    mine.write_bytes(b"in progress")
    Workspace.get(ws.root)
    assert mine.exists()


def test_workspaces_created_at_once_by_several_processes_agree_on_one_id(tmp_path):
    root = tmp_path / "shared"
    script = ("import sys; from aml_core.workspace import Workspace; "
              "Workspace.create(sys.argv[1], exist_ok=True); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    assert [p.communicate(timeout=60)[0].strip() for p in procs] == ["ok"] * 4
    Workspace.get(root)  # not refused as another workspace's database
    assert Workspace.check(root) == []
