"""``aml image``: create (image and Dockerfile context), list, show, delete, errors."""

from __future__ import annotations

import json


def _app(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    return app


def test_create_list_show_delete(aml, model_file, tmp_path):
    app = _app(tmp_path)
    aml.json("model", "register", "--name", "m", "--path", model_file)
    first = aml.json("image", "create", "myimage", "-m", "m", "-e", "score.py", "-s", app)
    second = aml.json("image", "create", "myimage", "-m", "m:1", "-e", "score.py", "-s", app)
    assert (first["id"], second["id"]) == ("myimage:1", "myimage:2")
    assert first["digest"] == second["digest"] and first["digest"].startswith("sha256:")
    labelled = aml.json("image", "create", "other", "-m", "m", "-e", "score.py", "-s", app, "--label", "blue")
    assert labelled["digest"] != first["digest"]
    assert second["location"].endswith("/registry/myimage:2")
    assert [i["id"] for i in aml.json("image", "list")] == ["myimage:2", "myimage:1", "other:1"]
    assert aml.json("image", "show", "myimage")["id"] == "myimage:2"
    shown = aml("image", "show", "myimage:1")
    assert shown.exit_code == 0 and "sha256:" in shown.stdout
    assert aml.json("image", "delete", "myimage:1") == {"id": "myimage:1", "deleted": True}
    assert [i["id"] for i in aml.json("image", "list", "--name", "myimage")] == ["myimage:2"]


def test_dockerfile_context(aml, model_file, tmp_path):
    app = _app(tmp_path)
    aml.json("model", "register", "--name", "m", "--path", model_file)
    made = aml.json("image", "create", "ctx", "-m", "m", "-e", "score.py", "-s", app, "--dockerfile")
    assert made["digest"] is None
    assert "FROM " in open(f"{made['context_dir']}/Dockerfile").read()


def test_errors_have_meaningful_exit_codes(aml, model_file, tmp_path):
    app = _app(tmp_path)
    (app / "norun.py").write_text("def init():\n    pass\n")
    aml.json("model", "register", "--name", "m", "--path", model_file)
    missing = aml("image", "show", "ghost")
    assert missing.exit_code == 3 and "aml image list" in missing.stderr
    broken = aml("image", "create", "img", "-m", "m", "-e", "norun.py", "-s", app)
    assert broken.exit_code == 6 and "run()" in broken.stderr
    bad_name = aml("image", "create", "Bad Name", "-m", "m", "-e", "score.py", "-s", app)
    assert bad_name.exit_code == 6 and "Invalid image name" in bad_name.stderr
    assert aml("image", "delete", "img").exit_code == 2
    assert json.loads(aml("image", "list", "-o", "json").stdout) == []
