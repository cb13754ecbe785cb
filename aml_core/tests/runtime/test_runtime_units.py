"""In-process checks of the runtime's building blocks (no server needed)."""

from __future__ import annotations

import io
import os
import sys
import uuid

import pytest
from aml_core.errors import InvalidConfig
from aml_core.runtime import config, logs
from aml_core.runtime.app import BadRequest, new_request_id, parse_query
from aml_core.runtime.raw import AMLRequest, AMLResponse, Headers
from aml_core.runtime.script import (
    ScriptError,
    UserScript,
    install_azureml_aliases,
    load_script,
    model_tree,
)
from aml_core.runtime.swagger import SwaggerDocs, SwaggerNotFound, build_document


def test_parse_query_reads_json_values_and_groups_repeated_keys():
    parsed = parse_query(b"a=1&b=%5B1%2C2%5D&c=x&d=null&e=&f=2&f=%7B%22k%22%3A1%7D")
    assert parsed == {"a": 1, "b": [1, 2], "c": "x", "d": None, "e": "", "f": [2, {"k": 1}]}


@pytest.mark.parametrize("value", ["[" * 50_000 + "]" * 50_000, "1" * 5000])
def test_parse_query_turns_parser_limits_into_bad_request(value):
    with pytest.raises(BadRequest) as caught:
        parse_query(f"x={value}".encode())
    assert caught.value.status == 400


def test_request_ids_are_version_4_uuids_and_distinct():
    ids = {new_request_id() for _ in range(500)}
    assert len(ids) == 500
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_headers_are_case_insensitive_and_join_repeats():
    headers = Headers([(b"content-type", b"image/png"), (b"x-tag", b"a"), (b"x-tag", b"b")])
    assert headers["Content-Type"] == "image/png"
    assert headers.get("X-TAG") == "a, b"
    assert headers.getlist("x-tag") == ["a", "b"]
    assert headers.to_dict() == {"Content-Type": "image/png", "X-Tag": "a, b"}


def test_aml_request_offers_flask_style_accessors():
    body = (
        b'--XX\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--XX--\r\n"
    )
    request = AMLRequest(
        "POST",
        "/score",
        b"k=1&k=2&z=",
        Headers([(b"content-type", b"multipart/form-data; boundary=XX")]),
        body,
    )
    assert request.full_path == "/score?k=1&k=2&z="
    assert request.args["k"] == "1" and request.args.getlist("k") == ["1", "2"]
    assert request.args.getlist("k", type=int) == [1, 2]
    assert request.form["note"] == "hello"
    upload = request.files["file"]
    assert upload.filename == "a.bin" and upload.read() == b"\x00\x01\x02"
    assert request.get_data() == body and request.data == body


def test_aml_request_json():
    request = AMLRequest(
        "POST", "/score", b"", Headers([(b"content-type", b"application/json")]), b'{"a": 1}'
    )
    assert request.get_json() == {"a": 1}
    plain = AMLRequest("POST", "/score", b"", Headers([]), b"{")
    assert plain.get_json(silent=True) is None
    assert plain.full_path == "/score?"


def test_aml_response_bodies():
    assert AMLResponse(None, 204).body == b"{}"
    assert AMLResponse(b"\x00\xff", 200).body == b"\x00\xff"
    text = AMLResponse("héllo", 200, {"Content-Type": "text/plain"})
    assert text.body == "héllo".encode()
    assert [h for h in text.headers if h[0].lower() == "content-type"] == [
        ("Content-Type", "text/plain")
    ]
    assert AMLResponse({"a": [1]}, 200, json_str=True).body == b'{"a": [1]}'


def _script(source: str, tmp_path):
    import importlib.util

    from aml_core.runtime import raw

    raw._raw_http_requested = False  # as load_script does before importing a script
    path = tmp_path / "s.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("s_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return UserScript(module, module.init, module.run)


@pytest.mark.parametrize(
    "signature, message",
    [
        ("def run(*data)", "*args"),
        ("def run(**data)", "*args"),
        ("def run(data, /)", "positional-only"),
        ("def run()", "argument for input data"),
        ("def run(request_headers)", 'other than "request_headers"'),
    ],
)
def test_run_signature_rules(tmp_path, signature, message):
    with pytest.raises(ScriptError, match=message.replace("*", r"\*")):
        _script(f"def init():\n    pass\n\n{signature}:\n    return 1\n", tmp_path)


@pytest.mark.parametrize(
    "source, message",
    [
        ("def init():\n    pass\n", "does not have a run() function"),
        ("def run(data):\n    return data\n", "does not have a init() function"),
        ("import no_such_module_here\n", "No module named 'no_such_module_here'"),
        ("raise SystemExit(5)\n", "SystemExit"),
    ],
)
def test_load_script_errors(tmp_path, monkeypatch, source, message):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "entry_module", raising=False)
    path = tmp_path / "score.py"
    path.write_text(source)
    with pytest.raises(ScriptError) as caught:
        load_script(str(path), [str(tmp_path)])
    assert message in str(caught.value)


def test_load_script_missing_file(tmp_path):
    with pytest.raises(ScriptError, match="does not exist"):
        load_script(str(tmp_path / "nope.py"), [])


def test_load_script_compiles_fresh_source(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "entry_module", raising=False)
    path = tmp_path / "score.py"
    path.write_text("V = 1\ndef init():\n    pass\ndef run(d):\n    return V\n")
    assert load_script(str(path), []).run("x") == 1
    stat = path.stat()
    path.write_text("V = 2\ndef init():\n    pass\ndef run(d):\n    return V\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime as before
    assert load_script(str(path), []).run("x") == 2


def test_run_signature_modes(tmp_path):
    script = _script(
        "def init():\n    pass\n\ndef run(payload, request_headers=None):\n    return 1\n", tmp_path
    )
    assert script.mode == "json" and script.data_param == "payload" and script.wants_headers


def test_rawhttp_and_input_schema_cannot_be_combined(tmp_path):
    source = """
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema
from aml_core.runtime import rawhttp

def init():
    pass

@rawhttp
@input_schema("data", StandardPythonParameterType(1))
def run(data):
    return data
"""
    with pytest.raises(ScriptError, match="both @rawhttp and @input_schema"):
        _script(source, tmp_path)


def test_model_tree_is_cut_at_the_limit(tmp_path):
    for index in range(5):
        (tmp_path / f"f{index}").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.bin").write_text("")
    full = model_tree(str(tmp_path))
    assert full[0].endswith("/") and "    sub/" in full and "        deep.bin" in full
    cut = model_tree(str(tmp_path), limit=3)
    assert len(cut) == 4 and cut[-1] == "Output truncated. First 3 lines shown."


def test_request_id_stream_prefixes_every_line_once():
    target = io.StringIO()
    stream = logs.RequestIdStream(target)
    logs.current_request_id = "rid-1"
    try:
        stream.write("one\ntw")
        stream.write("o\n\nthree")
        stream.write("\n")
    finally:
        logs.current_request_id = logs.NULL_REQUEST_ID
    assert target.getvalue() == "rid-1 | one\nrid-1 | two\n\nrid-1 | three\n"


def test_access_log_line_format(tmp_path):

    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        access = logs.AccessLog(fd, background=False)
        access.write("POST", "/score?x=1", 200, 1.23456, 39)
        assert path.read_text() == ""  # nothing is written on the request path
        access.flush()
    finally:
        os.close(fd)
    line = path.read_text()
    assert line.endswith(f" I [{os.getpid()}] aml_core.runtime - POST /score?x=1 200 1.235ms 39\n")


def test_alias_modules_are_installed_only_when_missing():
    def azure_names():
        return {
            n
            for n in sys.modules
            if n == "azureml" or n.startswith(("azureml.", "azureml_inference"))
        }

    saved = {name: sys.modules.pop(name) for name in azure_names()}
    try:
        installed = install_azureml_aliases()
        assert "azureml.contrib.services.aml_request" in installed
        from aml_core.runtime import AMLResponse as Ours
        from aml_core.runtime import rawhttp as ours_rawhttp
        from azureml.contrib.services.aml_request import rawhttp
        from azureml.contrib.services.aml_response import AMLResponse as Aliased

        assert rawhttp is ours_rawhttp and Aliased is Ours
        assert install_azureml_aliases() == []  # everything is importable now
    finally:
        for name in azure_names():
            del sys.modules[name]
        sys.modules.update(saved)


def test_environment_config_resolves_entry_script_like_the_azure_server(tmp_path):
    app_root = tmp_path / "app"
    (app_root / "src").mkdir(parents=True)
    (app_root / "src" / "score.py").write_text("")
    env = {
        "AML_APP_ROOT": str(app_root),
        "AZUREML_SOURCE_DIRECTORY": "src",
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "AZUREML_MODEL_DIR": "/models/m/1",
        "SCORING_TIMEOUT_MS": "5000",
    }
    resolved = config.from_environment(environ=env)
    assert resolved["entry_script"] == str(app_root / "src" / "score.py")
    assert resolved["model_dir"] == "/models/m/1"
    assert resolved["scoring_timeout_ms"] == 5000
    assert resolved["max_body_bytes"] == 100 * 1024 * 1024
    # an entry script given relative to the app root (older images) resolves too
    env["AZUREML_ENTRY_SCRIPT"] = "src/score.py"
    assert config.from_environment(environ=env)["entry_script"] == str(
        app_root / "src" / "score.py"
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"entry_script": "score.py"}, "absolute path"),
        ({"entry_script": "/a/score.py", "bogus": 1}, "unknown keys"),
        ({"entry_script": "/a/score.py", "scoring_timeout_ms": "soon"}, "integer"),
        ({"entry_script": "/a/score.py", "max_body_bytes": 0}, "positive"),
        ({"entry_script": "/a/score.py", "env": {"A": 1}}, "string values"),
    ],
)
def test_bad_specs_name_the_problem(tmp_path, spec, message):
    import json

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(InvalidConfig, match=message):
        config.from_spec_file(str(path), environ={})


def test_swagger_versions_and_prefix():
    document = build_document("3.1", {"type": "object"}, {"type": "array"}, path_prefix="/svc/")
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/svc/", "/svc/score", "/svc/swagger.json"}
    docs = SwaggerDocs({"2": build_document("2", {}, {})})
    assert b'"swagger": "2.0"' in docs.get(None) and docs.get("2.0") == docs.get("2")
    with pytest.raises(SwaggerNotFound, match="not supported"):
        docs.get("3")
    with pytest.raises(SwaggerNotFound, match="no swagger document"):
        SwaggerDocs({}).get("2")
