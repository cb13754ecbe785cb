"""``aml service``: argument errors without a deployment, then a real local deployment end to end.

The end-to-end tests deploy a tiny ``score.py`` on the local target, which runs the scoring
runtime (``python -m aml_core.runtime serve``) as a process group on 127.0.0.1. The
``services`` fixture deletes whatever a test deployed, even when the test fails.
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from aml_core.webservice import Webservice

SCORE = textwrap.dedent('''
    import json
    from aml_core.model import Model

    def init():
        global factor
        with open(Model.get_model_path("factor")) as f:
            factor = float(f.read())
        print("score.py: init loaded factor", factor, flush=True)

    def run(raw_data):
        return [x * factor for x in json.loads(raw_data)["data"]]
''')


def progress_lines(stderr: str) -> list[str]:
    """The progress steps printed on stderr; fails if any stderr line is not one."""
    steps = []
    for line in stderr.splitlines():
        match = re.fullmatch(r"\d\d:\d\d:\d\d (.+)", line)
        assert match, f"not a progress line: {line!r}"
        steps.append(match.group(1))
    return steps


@pytest.fixture
def services(ws):
    """Deletes every service in the test workspace after the test, passed or failed."""
    yield
    for service in Webservice.list(ws):
        service.delete()


@pytest.fixture
def app(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "score.py").write_text(SCORE)
    return folder


@pytest.fixture
def factor_model(aml, tmp_path):
    path = tmp_path / "factor.txt"
    path.write_text("3")
    aml.json("model", "register", "--name", "factor", "--path", path)
    path.write_text("5")
    aml.json("model", "register", "--name", "factor", "--path", path)
    return "factor"


# -- errors that need no running service ---------------------------------------------------


@pytest.mark.parametrize("command", [["show"], ["logs"], ["delete"], ["run", "--data", "{}"], ["update", "-m", "x"]])
def test_unknown_service_exits_3(aml, command):
    result = aml("service", command[0], "ghost", *command[1:])
    assert result.exit_code == 3, result.stderr
    assert result.stderr.startswith("Error (NotFound): ")
    assert "no service named 'ghost'" in result.stderr


def test_list_empty(aml):
    assert aml.json("service", "list") == []
    assert "No services yet" in aml("service", "list").stderr


def test_deploy_invalid_service_name_exits_6(aml, app, factor_model):
    result = aml("service", "deploy", "Bad_Name", "-m", "factor", "-e", "score.py", "-s", app)
    assert result.exit_code == 6
    assert "Invalid service name 'Bad_Name'" in result.stderr


def test_deploy_unknown_model_exits_3(aml, app, services):
    result = aml("service", "deploy", "svc-x", "-m", "ghost:1", "-e", "score.py", "-s", app)
    assert result.exit_code == 3
    assert "Model ghost:1 is not registered" in result.stderr
    assert Webservice.list(aml.ws) == []


def test_deploy_missing_entry_script_exits_6(aml, app, factor_model):
    result = aml("service", "deploy", "svc-x", "-m", "factor", "-e", "nope.py", "-s", app)
    assert result.exit_code == 6
    assert "entry_script 'nope.py' does not exist" in result.stderr


def test_deploy_script_without_run_exits_6(aml, app, factor_model, services):
    (app / "bad.py").write_text("def init():\n    pass\n")
    result = aml("service", "deploy", "svc-x", "-m", "factor", "-e", "bad.py", "-s", app)
    assert result.exit_code == 6
    assert "does not define run()" in result.stderr


def test_deploy_to_a_target_nobody_serves_exits_11(aml, app, factor_model):
    # (a kind no provider will ever serve: "aci" was the example until aml-provider-aci existed)
    result = aml("service", "deploy", "svc-x", "-m", "factor", "-e", "score.py", "-s", app, "--target", "nosuchkind")
    assert result.exit_code == 11
    assert "pip install aml-provider-nosuchkind" in result.stderr


def test_deploy_setting_the_target_does_not_accept_exits_6(aml, app, factor_model):
    result = aml("service", "deploy", "svc-x", "-m", "factor", "-e", "score.py", "-s", app,
                 "--option", "cpu_cores=2")
    assert result.exit_code == 6
    assert "does not accept cpu_cores" in result.stderr
    assert "port" in result.stderr  # names what it does accept


def test_deploy_bad_environment_file_exits_6(aml, app, factor_model, tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("--index-url http://example.invalid\n")
    result = aml("service", "deploy", "svc-x", "-m", "factor", "-e", "score.py", "-s", app, "--environment", reqs)
    assert result.exit_code == 6
    assert "pip options" in result.stderr


def test_run_needs_exactly_one_body(aml):
    assert aml("service", "run", "svc-x").exit_code == 2
    assert aml("service", "run", "svc-x", "--data", "{}", "--file", "-").exit_code == 2


def test_update_source_dir_needs_entry_script(aml, app):
    result = aml("service", "update", "svc-x", "--source-dir", app)
    assert result.exit_code == 2
    assert "--entry-script" in result.stderr


# -- a real deployment -----------------------------------------------------------------------


def test_deploy_run_logs_update_delete(aml, app, factor_model, services, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("click>=8\nazureml-defaults\n")  # installed here / provided by the runtime
    deployed = aml("-o", "json", "service", "deploy", "cli-e2e", "--model", "factor:1", "--entry-script", "score.py",
                   "--source-dir", app, "--environment", requirements, "--target", "local", "--workers", "1")
    assert deployed.exit_code == 0, deployed.stderr + aml("service", "logs", "cli-e2e").stdout
    record = json.loads(deployed.stdout)
    assert record["state"] == "running"
    assert record["models"] == ["factor:1"]
    assert record["scoring_uri"].startswith("http://127.0.0.1:")
    # progress went to stderr, one timestamped line per step (stderr is not a terminal here)
    steps = progress_lines(deployed.stderr)
    assert len(steps) >= 2
    assert steps[0] == "Creating service 'cli-e2e' on target 'local'"

    again = aml("service", "deploy", "cli-e2e", "--model", "factor", "--entry-script", "score.py", "--source-dir", app)
    assert again.exit_code == 4
    assert again.stderr.startswith("Error (Conflict): Service 'cli-e2e' already exists")

    assert aml.json("service", "run", "cli-e2e", "--data", '{"data": [1, 2]}') == [3.0, 6.0]
    body = tmp_path / "body.json"
    body.write_text('{"data": [10]}')
    assert aml.json("service", "run", "cli-e2e", "--file", body) == [30.0]

    logs = aml("service", "logs", "cli-e2e", "--num-lines", "200")
    assert logs.exit_code == 0
    assert "init loaded factor 3.0" in logs.stdout
    assert "init loaded factor" in aml.json("service", "logs", "cli-e2e")["logs"]

    listed = aml.json("service", "list", "--compute-type", "local")
    assert [(s["name"], s["state"]) for s in listed] == [("cli-e2e", "running")]
    shown = aml("service", "show", "cli-e2e")
    assert shown.exit_code == 0 and "running" in shown.stdout and record["scoring_uri"] in shown.stdout

    in_use = aml("model", "delete", "factor:1")
    assert in_use.exit_code == 4
    assert "used by service(s) cli-e2e" in in_use.stderr

    updated = aml("-o", "json", "service", "update", "cli-e2e", "--model", "factor:2")
    assert updated.exit_code == 0, updated.stderr
    assert json.loads(updated.stdout)["models"] == ["factor:2"]
    assert progress_lines(updated.stderr)
    assert aml.json("service", "run", "cli-e2e", "--data", '{"data": [1]}') == [5.0]

    app2 = tmp_path / "app2"
    app2.mkdir()
    (app2 / "score.py").write_text(SCORE.replace("x * factor", "x * factor + 1"))
    recoded = aml("service", "update", "cli-e2e", "--entry-script", "score.py", "--source-dir", app2)
    assert recoded.exit_code == 0, recoded.stderr
    assert aml.json("service", "run", "cli-e2e", "--data", '{"data": [1]}') == [6.0]

    assert aml.json("service", "delete", "cli-e2e") == {"name": "cli-e2e", "deleted": True}
    assert aml("service", "show", "cli-e2e").exit_code == 3
    assert aml.json("service", "list") == []


def test_deploy_overwrite_replaces_the_service(aml, app, factor_model, services, tmp_path):
    first = aml("service", "deploy", "cli-over", "-m", "factor:1", "-e", "score.py", "-s", app)
    assert first.exit_code == 0, first.stderr
    assert "cli-over" in first.stdout and "running" in first.stdout  # the table form
    # as if stderr were an interactive terminal: the spinner path, same steps, stdout still pure JSON
    conda = app / "conda.yml"
    conda.write_text("dependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - click\n")
    replaced = aml("-o", "json", "service", "deploy", "cli-over", "-m", "factor:2", "-e", "score.py", "-s", app,
                   "--environment", conda, "--overwrite", env={"TTY_INTERACTIVE": "1", "FORCE_COLOR": "1"})
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(replaced.stdout)["models"] == ["factor:2"]
    assert "Deploying cli-over" in replaced.stderr  # the spinner's label
    assert "exists; updating it in place" in replaced.stderr
    assert "\x1b[" in replaced.stderr  # drawn with terminal control sequences
    assert aml.json("service", "run", "cli-over", "--data", '{"data": [2]}') == [10.0]


def test_show_and_list_report_the_live_state(aml, app, factor_model, services):
    import os
    import signal
    import time

    details = aml.json("service", "deploy", "cli-live", "-m", "factor", "-e", "score.py", "-s", app)["details"]
    assert aml.json("service", "show", "cli-live")["state"] == "running"
    os.killpg(details["pid"], signal.SIGKILL)  # the machine "lost" the service behind the workspace's back
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and aml.json("service", "show", "cli-live")["state"] == "running":
        time.sleep(0.1)
    shown = aml.json("service", "show", "cli-live")
    assert shown["state"] == "failed"
    assert "no longer running" in shown["error"]
    assert [s["state"] for s in aml.json("service", "list")] == ["failed"]
    table = aml("service", "show", "cli-live")
    assert "failed" in table.stdout and "no longer running" in table.stdout


def test_failing_init_exits_9_and_logs_show_why(aml, app, factor_model, services):
    (app / "broken.py").write_text("def init():\n    raise RuntimeError('no weights here')\n\ndef run(raw):\n    return raw\n")
    result = aml("service", "deploy", "cli-broken", "-m", "factor", "-e", "broken.py", "-s", app)
    assert result.exit_code == 9, result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error (ProvisioningFailed): ")
    logs = aml("service", "logs", "cli-broken")
    assert "no weights here" in logs.stdout


def test_environment_this_python_lacks_exits_6_with_the_install_command(aml, app, factor_model, services, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aml-cli-test-no-such-package==1.0\n")
    result = aml("service", "deploy", "cli-env", "-m", "factor", "-e", "score.py", "-s", app,
                 "--environment", requirements)
    assert result.exit_code == 6, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error (InvalidConfig): Environment 'cli-env-env' needs packages")
    assert "pip install aml-cli-test-no-such-package" in last
    # the failed deployment is remembered: its name stays taken until deleted or overwritten
    assert aml.json("service", "show", "cli-env")["state"].lower() == "failed"
    taken = aml("service", "deploy", "cli-env", "-m", "factor", "-e", "score.py", "-s", app)
    assert taken.exit_code == 4
    nothing = aml("service", "update", "cli-env")
    assert nothing.exit_code == 6
    assert "No parameters provided to update" in nothing.stderr
    assert aml.json("service", "delete", "cli-env")["deleted"] is True


def test_ctrl_c_during_deploy_exits_130_and_leaves_a_consistent_service(aml, app, factor_model, services,
                                                                        tmp_path):
    import signal
    import subprocess

    from aml_cli_testkit import AML_SCRIPT

    # init() holds the deployment open until the test lets it go, so Ctrl-C lands mid-operation
    latch = tmp_path / "release-init"
    wait = (f"def init():\n    import pathlib, time\n    for _ in range(1200):\n"
            f"        if pathlib.Path({str(latch)!r}).exists():\n            break\n        time.sleep(0.05)\n")
    (app / "slow.py").write_text(SCORE.replace("def init():\n", wait))
    proc = subprocess.Popen(
        [str(AML_SCRIPT), "--workspace", str(aml.ws.root), "service", "deploy", "cli-slow", "-m", "factor",
         "-e", "slow.py", "-s", str(app)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if len(seen) == 2:  # two progress steps in: the provider is at work
                proc.send_signal(signal.SIGINT)
            if line.startswith("Ctrl-C: finishing the operation in progress first"):
                break
        latch.touch()
        rest = proc.communicate(timeout=120)[1]
    finally:
        latch.touch()
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "Ctrl-C: finishing the operation in progress first" in stderr
    assert stderr.rstrip().endswith("Interrupted.")
    # the deployment was allowed to finish and was recorded: the service is usable
    assert aml.json("service", "show", "cli-slow")["state"] == "running"
    assert aml.json("service", "run", "cli-slow", "--data", '{"data": [1]}') == [5.0]  # latest: factor:2
