"""``aml model``: every subcommand, both output formats, and the errors a user can cause."""

from __future__ import annotations

import json

from aml_core.model import Model


def test_register_file_prints_the_new_version_as_json(aml, model_file):
    data = aml.json("model", "register", "--name", "m", "--path", model_file, "--tag", "stage=dev",
                    "--tag", "team=ml", "--property", "accuracy=0.9", "--description", "first try")
    assert data["id"] == "m:1"
    assert data["version"] == 1
    assert data["tags"] == {"stage": "dev", "team": "ml"}
    assert data["properties"] == {"accuracy": "0.9"}
    assert data["description"] == "first try"
    assert [f["path"] for f in data["files"]] == ["model.txt"]
    # the API sees exactly what the CLI registered
    assert Model(aml.ws, "m", version=1).tags == {"stage": "dev", "team": "ml"}


def test_register_same_name_makes_the_next_version(aml, model_file):
    assert aml.json("model", "register", "-n", "m", "-p", model_file)["version"] == 1
    assert aml.json("model", "register", "-n", "m", "-p", model_file)["version"] == 2


def test_register_table_output_names_the_version_and_goes_to_stdout(aml, model_file):
    result = aml("model", "register", "--name", "m", "--path", model_file, "--tag", "k=v")
    assert result.exit_code == 0, result.stderr
    assert "m:1" in result.stdout
    assert "k=v" in result.stdout
    assert "Registered model m:1" in result.stderr


def test_register_folder_keeps_its_tree(aml, model_folder):
    data = aml.json("model", "register", "--name", "bundle", "--path", model_folder)
    assert data["is_folder"] is True
    assert sorted(f["path"] for f in data["files"]) == ["sub/vocab.txt", "weights.bin"]


def test_register_tag_without_value_is_a_usage_error(aml, model_file):
    result = aml("model", "register", "--name", "m", "--path", model_file, "--tag", "novalue")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr
    assert result.stdout == ""


def test_register_invalid_name_exits_6(aml, model_file):
    result = aml("model", "register", "--name", "bad name!", "--path", model_file)
    assert result.exit_code == 6
    assert result.stderr.startswith("Error (InvalidConfig): Invalid model name 'bad name!'")
    assert "Traceback" not in result.stderr


def test_register_missing_path_exits_6(aml, tmp_path):
    result = aml("model", "register", "--name", "m", "--path", tmp_path / "nope.pkl")
    assert result.exit_code == 6
    assert "does not exist" in result.stderr


def _register_three(aml, model_file):
    aml.json("model", "register", "-n", "a", "-p", model_file, "--tag", "stage=dev")
    aml.json("model", "register", "-n", "a", "-p", model_file, "--tag", "stage=prod", "--tag", "gpu=yes")
    aml.json("model", "register", "-n", "b", "-p", model_file, "--property", "owner=me")


def test_list_all_sorted_newest_first_per_name(aml, model_file):
    _register_three(aml, model_file)
    assert [m["id"] for m in aml.json("model", "list")] == ["a:2", "a:1", "b:1"]


def test_list_filters(aml, model_file):
    _register_three(aml, model_file)
    ids = lambda *args: [m["id"] for m in aml.json("model", "list", *args)]  # noqa: E731
    assert ids("--name", "b") == ["b:1"]
    assert ids("--tag", "stage") == ["a:2", "a:1"]
    assert ids("--tag", "stage=prod") == ["a:2"]
    assert ids("--tag", "stage=dev", "--tag", "gpu") == []
    assert ids("--property", "owner=me") == ["b:1"]
    assert ids("--latest") == ["a:2", "b:1"]
    assert ids("--name", "nobody") == []


def test_list_table_and_empty_workspace(aml, model_file):
    empty = aml("model", "list")
    assert empty.exit_code == 0
    assert empty.stdout == ""
    assert "No models registered yet" in empty.stderr
    assert aml.json("model", "list") == []
    _register_three(aml, model_file)
    table = aml("model", "list")
    assert table.exit_code == 0
    for text in ("a", "b", "stage=prod", "owner=me"):
        assert text in table.stdout


def test_global_output_option_works_before_the_command(aml, model_file):
    _register_three(aml, model_file)
    result = aml("-o", "json", "model", "list", "--latest")
    assert result.exit_code == 0
    assert [m["id"] for m in json.loads(result.stdout)] == ["a:2", "b:1"]


def test_show_latest_and_given_version(aml, model_file):
    _register_three(aml, model_file)
    assert aml.json("model", "show", "a")["id"] == "a:2"
    assert aml.json("model", "show", "a:1")["tags"] == {"stage": "dev"}
    table = aml("model", "show", "a:1")
    assert table.exit_code == 0
    assert "a:1" in table.stdout and "stage=dev" in table.stdout


def test_show_unknown_model_exits_3(aml):
    result = aml("model", "show", "ghost")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error (NotFound): Model ghost is not registered")
    assert result.stdout == ""


def test_show_unknown_version_exits_3(aml, model_file):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    assert aml("model", "show", "m:7").exit_code == 3


def test_show_bad_version_is_a_usage_error(aml):
    result = aml("model", "show", "m:latest")
    assert result.exit_code == 2
    assert "positive integer" in result.stderr


def test_download_file_and_folder(aml, model_file, model_folder, tmp_path):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    aml.json("model", "register", "-n", "bundle", "-p", model_folder)
    out = tmp_path / "out"
    data = aml.json("model", "download", "m", "--target-dir", out)
    assert data == {"id": "m:1", "path": str(out / "model.txt")}
    assert (out / "model.txt").read_text() == "3\n"
    data = aml.json("model", "download", "bundle:1", "--target-dir", out)
    assert (out / "bundle" / "sub" / "vocab.txt").read_text() == "a\nb\n"
    assert (out / "bundle" / "weights.bin").read_bytes() == b"\x00\x01\x02"


def test_download_refuses_to_overwrite_without_exist_ok(aml, model_file, tmp_path):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.txt").write_text("mine")
    refused = aml("model", "download", "m", "--target-dir", out)
    assert refused.exit_code == 6
    assert "exist_ok" in refused.stderr or "exist-ok" in refused.stderr
    assert (out / "model.txt").read_text() == "mine"
    assert aml("model", "download", "m", "--target-dir", out, "--exist-ok").exit_code == 0
    assert (out / "model.txt").read_text() == "3\n"


def test_download_unknown_model_exits_3(aml, tmp_path):
    assert aml("model", "download", "ghost:1", "--target-dir", tmp_path / "o").exit_code == 3


def test_delete_removes_only_that_version(aml, model_file):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    aml.json("model", "register", "-n", "m", "-p", model_file)
    assert aml.json("model", "delete", "m:1") == {"id": "m:1", "deleted": True}
    assert [m["id"] for m in aml.json("model", "list")] == ["m:2"]
    assert aml("model", "show", "m:1").exit_code == 3
    again = aml("model", "delete", "m:1")
    assert again.exit_code == 3


def test_delete_needs_an_explicit_version(aml, model_file):
    aml.json("model", "register", "-n", "m", "-p", model_file)
    result = aml("model", "delete", "m")
    assert result.exit_code == 2
    assert "m:1" in result.stderr  # the hint shows the form to use
    assert [m["id"] for m in aml.json("model", "list")] == ["m:1"]


def test_show_lists_the_first_files_of_a_big_folder(aml, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(25):
        (folder / f"part-{i:02d}.bin").write_bytes(bytes([i]))
    aml.json("model", "register", "-n", "many", "-p", folder)
    table = aml("model", "show", "many")
    assert "part-19.bin" in table.stdout and "part-20.bin" not in table.stdout
    assert "and 5 more" in table.stdout
    assert len(aml.json("model", "show", "many")["files"]) == 25
