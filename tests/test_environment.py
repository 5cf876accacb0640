"""environment.yml (for conda users) must list exactly the requirements of pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return {_normalise(r) for r in requirements}


def _environment_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    found = set()
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line.startswith("      - "):
            break
        found.add(_normalise(stripped[2:]))
    return found


def test_environment_yml_matches_pyproject():
    pyproject = _pyproject_requirements()
    environment = _environment_requirements()
    assert environment == pyproject, (
        f"only in pyproject.toml: {sorted(pyproject - environment)}; "
        f"only in environment.yml: {sorted(environment - pyproject)}"
    )


def test_environment_yml_python_matches_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"python{project['requires-python']}" in (ROOT / "environment.yml").read_text()
