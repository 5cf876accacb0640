"""The linter configured in pyproject.toml ([tool.ruff]) finds nothing in the library, tests, benchmarks and scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).is_file():
        pytest.fail("ruff is not installed (it is in the 'test' extra of pyproject.toml: run scripts/setup_env.sh)")
    return [exe]


def test_ruff_is_clean():
    result = subprocess.run([*_ruff(), "check", "--no-cache", "mrfbook", "tests", "benchmarks", "scripts"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}\n{result.stderr}"


def test_ruff_would_catch_an_unused_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""A module with an unused import."""\n\nimport os\n')
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "F401" in result.stdout
