"""Program images (``build_program_image``): a Python program shipped as package sources,
with the scoring images' conventions, so the process engine runs it and ``rebase`` works."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from aml_core.engines import ProcessEngine
from aml_core.errors import InvalidConfig
from aml_core.oci import EnvironmentSpec, ProgramSpec, build_program_image, rebase
from aml_core.oci.image import LABEL_APP_LAYERS, LABEL_ENVIRONMENT
from aml_core.oci.testing import free_port

# Serves its own argv as JSON on AML_HOST:AML_PORT: shows what the entrypoint passed on.
SERVER = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "module": __file__}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer((os.environ["AML_HOST"], int(os.environ["AML_PORT"])), Handler).serve_forever()
'''


def make_program(root: Path) -> ProgramSpec:
    package = root / "echoserver"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SERVER)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    return ProgramSpec(
        title="echo", packages=[package], environment=EnvironmentSpec(name="echo"),
        entrypoint=["/bin/sh", "-c", 'exec python3 -m echoserver --first "$@"', "echo"], cmd=["--from-cmd"],
        port=8080)


def test_a_program_image_is_deterministic_and_labelled_like_a_scoring_image(tmp_path):
    spec = make_program(tmp_path)
    image = build_program_image(spec)
    assert build_program_image(make_program(tmp_path / "again")).digest == image.digest
    config = image.config_json()["config"]
    assert config["Entrypoint"][-1] == "echo" and config["Cmd"] == ["--from-cmd"]
    assert "PYTHONPATH=/opt/aml/lib" in config["Env"] and "8080/tcp" in config["ExposedPorts"]
    labels = image.labels()
    assert labels[LABEL_APP_LAYERS] == "1" and labels["org.opencontainers.image.title"] == "echo"
    assert json.loads(labels[LABEL_ENVIRONMENT])["name"] == "echo"


def test_the_process_engine_runs_a_program_image_with_its_packages_importable(tmp_path):
    image = build_program_image(make_program(tmp_path / "src"))
    port = free_port()
    container = ProcessEngine(cache_dir=tmp_path / "cache").run(image, name="echo", port=port)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    seen = json.loads(response.read())
                break
            except OSError:
                if container.wait(0.05) is not None:
                    pytest.fail(f"the program exited: {container.logs()}")
        else:
            pytest.fail(f"the program never answered: {container.logs()}")
    finally:
        container.stop()
    assert seen["argv"] == ["--first", "--from-cmd"]
    assert "/images/" in seen["module"]  # imported from the unpacked image, not from tmp_path/src


def test_rebase_puts_the_program_layer_on_a_base(tmp_path):
    image = build_program_image(make_program(tmp_path / "a"))
    base = build_program_image(ProgramSpec(title="base", packages=[tmp_path / "a" / "echoserver"],
                                           environment=EnvironmentSpec(name="b"), entrypoint=["true"], port=1))
    stacked = rebase(image, base)
    assert [layer.digest for layer in stacked.layers] == [base.layers[0].digest, image.layers[0].digest]
    assert stacked.config_json()["config"]["Entrypoint"] == image.config_json()["config"]["Entrypoint"]


@pytest.mark.parametrize("packages, message", [
    ([], "at least one package folder"),
    (["notapackage"], "no __init__.py"),
])
def test_bad_program_specs_are_clear_errors(tmp_path, packages, message):
    (tmp_path / "notapackage").mkdir()
    spec = ProgramSpec(title="x", packages=[tmp_path / p for p in packages], environment=EnvironmentSpec(name="x"),
                       entrypoint=["true"], port=1)
    with pytest.raises(InvalidConfig, match=message):
        build_program_image(spec)
