"""Environments and inference configs: parsing, hashing and validation."""

from __future__ import annotations

import pytest

from aml_core.environment import Environment
from aml_core.errors import InvalidConfig
from aml_core.inference import InferenceConfig


def test_pip_requirements_are_read_and_the_runtime_packages_dropped(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("scikit-learn>=1.0  # the model\nazureml-defaults\n\nnumpy\n")
    env = Environment.from_pip_requirements("env", req)
    assert env.python.conda_dependencies.pip_requirements() == ["numpy", "scikit-learn>=1.0"]


def test_conda_yaml_gives_pip_section_and_pip_equivalents(tmp_path):
    conda = tmp_path / "env.yml"
    conda.write_text(
        "name: project_environment\n"
        "dependencies:\n"
        "  - python=3.11\n"
        "  - numpy=1.26\n"
        "  - scikit-learn>=1.3\n"
        "  - pip:\n"
        "    - azureml-defaults\n"
        "    - inference-schema[numpy-support]\n"
    )
    env = Environment.from_conda_specification("env", conda)
    deps = env.python.conda_dependencies
    assert deps.python_version == "3.11"
    assert deps.pip_requirements() == ["inference-schema[numpy-support]", "numpy==1.26.*", "scikit-learn>=1.3"]


def test_conda_only_packages_are_reported(tmp_path):
    conda = tmp_path / "env.yml"
    conda.write_text("dependencies:\n  - cudatoolkit=11.8\n  - numpy\n")
    with pytest.warns(UserWarning, match="cudatoolkit"):
        env = Environment.from_conda_specification("env", conda)
    assert env.python.conda_dependencies.conda_only() == ["cudatoolkit=11.8"]


def test_hash_is_stable_and_ignores_order_and_name(tmp_path):
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("numpy\nscikit-learn\n")
    b.write_text("scikit-learn\nnumpy\n")
    env_a = Environment.from_pip_requirements("one", a)
    env_b = Environment.from_pip_requirements("two", b)
    assert env_a.hash == env_b.hash
    env_b.python.conda_dependencies.add_pip_package("pandas")
    assert env_a.hash != env_b.hash
    assert Environment.from_dict(env_a.to_dict()).hash == env_a.hash


@pytest.mark.parametrize(
    "content, message",
    [
        ("dependencies: 3\n", "must be a list"),
        ("- just\n- a list\n", "must be a mapping"),
        ("dependencies:\n  - {conda: x}\n", "pip:"),
        ("dependencies: [\n", "not valid YAML"),
    ],
)
def test_malformed_conda_files_say_what_is_wrong(tmp_path, content, message):
    conda = tmp_path / "env.yml"
    conda.write_text(content)
    with pytest.raises(InvalidConfig, match=message):
        Environment.from_conda_specification("env", conda)


def test_a_bad_requirement_names_file_and_line(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy\nnot a requirement!!\n")
    with pytest.raises(InvalidConfig, match="requirements.txt:2"):
        Environment.from_pip_requirements("env", req)


def test_environment_names_are_validated():
    with pytest.raises(InvalidConfig, match="Invalid environment name"):
        Environment("bad name")


def test_entry_script_must_exist_and_be_python(tmp_path):
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    (tmp_path / "score.txt").write_text("")
    with pytest.raises(InvalidConfig, match="must be a Python"):
        InferenceConfig(entry_script="score.txt", source_directory=str(tmp_path))
    with pytest.raises(InvalidConfig, match="does not exist"):
        InferenceConfig(entry_script="missing.py", source_directory=str(tmp_path))
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
    config.validate_entry_script()
    assert config.entry_script_relative == "score.py"


def test_environment_is_exclusive_with_legacy_arguments(tmp_path):
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    with pytest.raises(InvalidConfig, match="conda_file"):
        InferenceConfig(entry_script="score.py", source_directory=str(tmp_path),
                        conda_file="env.yml", environment=Environment("e"))


@pytest.mark.parametrize(
    "script, missing",
    [("def init():\n    pass\n", "run()"), ("def run(d):\n    return d\n", "init()"), ("x = 1\n", "init() and run()")],
)
def test_a_script_lacking_init_or_run_is_refused_naming_what_is_missing(tmp_path, script, missing):
    (tmp_path / "score.py").write_text(script)
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
    with pytest.raises(InvalidConfig, match=missing.replace("(", r"\(").replace(")", r"\)")):
        config.validate_entry_script()


def test_a_script_with_a_syntax_error_names_the_line(tmp_path):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(d)\n    return d\n")
    config = InferenceConfig(entry_script="score.py", source_directory=str(tmp_path))
    with pytest.raises(InvalidConfig, match="line 3"):
        config.validate_entry_script()
