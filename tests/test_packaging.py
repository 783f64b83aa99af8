"""What `pip install .` gives: the same dependencies as requirements.txt, the `clipskip` command, the licence."""

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's requirements, comments and blank lines dropped, spaces removed."""
    lines = (line.split("#", 1)[0].replace(" ", "") for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def test_pyproject_declares_the_same_dependencies_as_requirements_txt():
    declared = [line.replace(" ", "") for line in PYPROJECT["project"]["dependencies"]]
    assert declared == requirement_lines(ROOT / "requirements.txt")


def test_the_sweep_extra_declares_the_same_dependencies_as_requirements_sweep_txt():
    declared = [line.replace(" ", "") for line in PYPROJECT["project"]["optional-dependencies"]["sweep"]]
    assert declared == requirement_lines(ROOT / "requirements-sweep.txt")
    assert "-r requirements-sweep.txt" in (ROOT / "requirements-test.txt").read_text(encoding="utf-8").splitlines()


def test_the_clipskip_command_is_the_command_line_and_its_help_exits_0(capsys):
    module, function = PYPROJECT["project"]["scripts"]["clipskip"].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--prompt" in capsys.readouterr().out


def test_the_built_in_models_folder_is_package_data():
    from clipskip.embedded import MODEL_DIR

    folder = MODEL_DIR.relative_to(ROOT / "clipskip" / "toy").as_posix()
    assert f"{folder}/**/*" in PYPROJECT["tool"]["setuptools"]["package-data"]["clipskip.toy"]


def test_the_licence_is_apache_2_0_everywhere_it_is_stated():
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    front_matter = (ROOT / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    assert "license: apache-2.0" in front_matter.splitlines()


def test_the_version_is_written_once_in_the_package_and_read_from_there_by_the_build():
    import clipskip

    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    module, name = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) == clipskip.__version__


def test_the_help_names_the_command_as_it_was_run(monkeypatch, capsys):
    from clipskip.__main__ import main

    for argv0, usage in (("/venv/bin/clipskip", "usage: clipskip "), ("/x/clipskip/__main__.py", "usage: python -m")):
        monkeypatch.setattr("sys.argv", [argv0])
        with pytest.raises(SystemExit):
            main(["--help"])
        assert capsys.readouterr().out.startswith(usage)
