"""Defaults shared by the server, the seed and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

DEV_TOKEN = "hf_localhub_dev_token"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def project_root() -> Path:
    """The checkout that holds ``hubtools/`` (editable install), else the working directory."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def default_data_dir() -> Path:
    """``$LOCALHUB_DATA`` or ``.hub/`` in the project root (git-ignored)."""
    return Path(os.environ.get("LOCALHUB_DATA") or project_root() / ".hub")


def default_dataset_dir() -> Path:
    """The shared CLINC150 copy beside the checkout: ``<root>/../shared/datasets/clinc_oos``."""
    return project_root().parent / "shared" / "datasets" / "clinc_oos"


def default_token() -> str:
    """The token writes (and private reads) need: ``$LOCALHUB_TOKEN`` or the dev token."""
    return os.environ.get("LOCALHUB_TOKEN") or DEV_TOKEN
