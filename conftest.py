import shutil
from pathlib import Path

import pytest

# The contract suite is a plugin that provider test trees opt into; pytest only accepts
# pytest_plugins in the top-level conftest, so it is declared here for this repository.
# aml_contract_tests.skips turns environment skips into failures under AML_FAIL_ON_ENV_SKIP=1.
# aml_emulator.pytest_plugin: the emulator's fixtures (aml_cloud_profile ...), which
# documentation blocks ask for by name; nothing starts until one is asked for.
pytest_plugins = ["aml_contract_tests.skips", "aml_contract_tests.plugin", "aml_emulator.pytest_plugin"]


# -- documentation: every Python block in README.md and docs/*.md runs as a test ----------
# (how a page's blocks opt into the emulator or out of running: docs/writing-docs.md)
ROOT = Path(__file__).resolve().parent
DOCS = ROOT / "docs"
QUICKSTART = ROOT / "examples" / "quickstart"


def _is_documentation(path: Path) -> bool:
    return path.suffix == ".md" and (path == ROOT / "README.md" or DOCS in path.parents)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """README.md and every docs/**/*.md, through pytest-markdown-docs's own collector (its
    ``--markdown-docs`` switch would also collect every docstring of every module)."""
    if _is_documentation(Path(file_path)) and not parent.config.option.markdowndocs:
        from pytest_markdown_docs.plugin import MarkdownTextFile

        return MarkdownTextFile.from_parent(parent, path=Path(file_path))
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A documentation block runs twice in its folder: a reader runs a snippet again, and it
    must work again (``exist_ok=True``, ``overwrite=True`` ...) or fail saying what to change."""
    result = yield
    if item.get_closest_marker("markdown-docs") is not None:
        item.runtest()
    return result


@pytest.fixture(autouse=True)
def _documentation_block_folder(request: pytest.FixtureRequest) -> None:
    """Each documentation block runs in a fresh folder holding what its reader has: the
    quickstart's ``score.py`` and ``requirements.txt`` and a trained
    ``sklearn_regression_model.pkl``; no workspace or profile setting leaks in."""
    if request.node.get_closest_marker("markdown-docs") is None:
        return
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    folder: Path = request.getfixturevalue("tmp_path")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name in ("score.py", "requirements.txt"):
        shutil.copy(QUICKSTART / name, folder / name)
    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge().fit(x, y), folder / "sklearn_regression_model.pkl")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("AML_WORKSPACE", raising=False)
    if "aml_cloud_profile" not in request.fixturenames:
        # a block that did not ask for the emulator must not find one through the profile
        monkeypatch.setenv("AML_PROFILE_DIR", str(folder / "no-profiles"))
