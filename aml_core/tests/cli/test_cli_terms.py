"""CLI errors speak CLI (issue 10, item 6): flags rather than Python keyword arguments, a
malformed ``--data`` refused before it is sent, a scoring failure printed as text."""

from __future__ import annotations

import pytest

from aml_core.cli._common import cli_terms
from aml_core.webservice import Webservice

SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return json.loads(raw_data)['data'] * 2\n"


@pytest.fixture
def deployed(aml, ws, tmp_path):
    """A running local service ``terms`` whose run() fails with a KeyError on input without "data"."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "score.py").write_text(SCORE)
    (tmp_path / "m.txt").write_text("x")
    aml.json("model", "register", "--name", "m", "--path", tmp_path / "m.txt")
    result = aml("service", "deploy", "terms", "-m", "m", "-e", "score.py", "-s", tmp_path / "app")
    assert result.exit_code == 0, result.stderr
    yield tmp_path / "app"
    for service in Webservice.list(ws):
        service.delete()


def test_a_taken_name_suggests_the_overwrite_flag(aml, deployed):
    again = aml("service", "deploy", "terms", "-m", "m", "-e", "score.py", "-s", deployed)
    assert again.exit_code == 4
    assert "--overwrite" in again.stderr
    assert "overwrite=True" not in again.stderr


def test_a_scoring_failure_is_printed_as_text_with_the_logs_command(aml, deployed):
    result = aml("service", "run", "terms", "--data", '{"rows": [1]}')
    assert result.exit_code == 12
    line = result.stderr.strip()
    assert line.startswith("Error (WebserviceError): Received bad response from service 'terms'.")
    assert "`aml service logs terms`" in line
    assert "Response Code: 500" in line
    assert "Headers:" not in line and "b'" not in line and "get_logs()" not in line


def test_malformed_data_is_refused_before_it_is_sent(aml, deployed):
    result = aml("service", "run", "terms", "--data", "{'data': [1]}")
    assert result.exit_code == 2
    assert "is not valid JSON" in result.stderr and "--file" in result.stderr
    log = (aml.ws.root / "services" / "local" / "terms" / "service.log").read_text()
    assert "KeyError" not in log and "Traceback" not in log  # run() was never called


def test_a_missing_compute_target_names_the_flag():
    text = "AKS deployments need deployment_target=<an AksCompute> (provision or attach one)."
    assert cli_terms(text) == "AKS deployments need --compute-target NAME (provision or attach one)."


def test_api_advice_about_logs_and_state_names_commands():
    text = ("Service 'svc' failed to start (exit code 1): boom. See service.get_logs() or "
            "`aml service logs svc` for the traceback.")
    assert cli_terms(text, "svc") == ("Service 'svc' failed to start (exit code 1): boom. see "
                                      "`aml service logs svc` for the traceback.")
    assert "aml service show svc" in cli_terms("Wait for it (service.wait_for_deployment()) and retry.", "svc")


def test_the_exit_status_table_names_the_real_error_classes_and_codes():
    """docs/cli.md: each row's class exists in aml_core.errors with that exit status, and a
    code that differs from the class name (what the CLI prints) is given."""
    import re
    from pathlib import Path

    from aml_core import errors

    doc = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| `(\w+)`(?: \(code `(\w+)`\))? \|$", doc, re.MULTILINE)
    checked = 0
    for status, name, code in rows:
        cls = getattr(errors, name, None)
        if cls is None:
            continue  # KeyboardInterrupt, click's UsageError
        assert isinstance(cls, type) and issubclass(cls, errors.AmlError), name
        assert cls.exit_status == int(status), name
        assert (code or name) == cls.code, f"{name}: its code is {cls.code!r}; the table must say so"
        checked += 1
    assert checked == 10
