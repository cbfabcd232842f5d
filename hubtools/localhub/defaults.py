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


#: CLINC150 in the Hub's parquet layout, carried by the repository (CC BY 3.0: its LICENSE and
#: README with the attribution travel with it), so a bare clone seeds its own Hub.
DATASET_DIR = Path("data") / "clinc_oos"


def default_dataset_dir() -> Path:
    """The repository's CLINC150 copy: ``<project root>/data/clinc_oos``."""
    return project_root() / DATASET_DIR


def default_token() -> str:
    """The token writes (and private reads) need: ``$LOCALHUB_TOKEN`` or the dev token."""
    return os.environ.get("LOCALHUB_TOKEN") or DEV_TOKEN
