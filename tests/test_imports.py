"""Every module of the project imports on its own, as the first import of a fresh interpreter
(no import cycle hides behind an import order), and importing changes no global state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recipes", "hubtools")


def project_modules() -> list[str]:
    modules = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_every_module_imports_first_in_a_fresh_interpreter():
    modules = project_modules()
    assert len(modules) > 30
    procs = {
        m: subprocess.Popen(
            [sys.executable, "-c", f"import {m}"],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for m in modules
    }
    failures = {m: p.communicate(timeout=120)[1].strip().splitlines()[-1:] for m, p in procs.items()}
    assert not {m: err for m, err in failures.items() if procs[m].returncode}, failures


@pytest.mark.parametrize("module", ["hubtools.plot", "hubtools.push", "recipes.engine.runner"])
def test_import_leaves_matplotlib_backend_and_logging_alone(module):
    code = (
        "import logging, sys\n"
        f"import {module}\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert not logging.getLogger().handlers, 'root logging configured'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
