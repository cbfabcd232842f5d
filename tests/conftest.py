"""Shared test setup: every test that talks to "the Hub" talks to a local one.

At import, before any test module imports huggingface_hub, transformers or datasets (they
read these variables at import time), this module sets:

* ``HF_ENDPOINT=http://127.0.0.1:<free port>`` and ``HF_TOKEN=hf_localhub_dev_token``;
* ``HF_HOME`` and ``HF_DATASETS_CACHE`` to a fresh temporary folder (removed at the end),
  so no cache leaks between runs or from the developer's machine;
* telemetry and Xet off; offline switches removed.

Fixtures:

* ``local_hub`` (session): the running :class:`~hubtools.localhub.LocalHub` on that port,
  over a temporary data dir; ``.url``, ``.token``, ``.data_dir``, ``.storage``.
* ``seeded_hub`` (session): ``local_hub`` with ``clinc_oos`` and
  ``sentence-transformers/all-MiniLM-L6-v2`` published.
* ``clinc_dir`` (session): ``<repo root>/data/clinc_oos``, the repository's copy.
* ``new_repo_id`` (function): ``new_repo_id("name")`` -> a unique ``test/name-<hex>``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubtools.localhub import DEV_TOKEN, LocalHub, seed

from .tiny import CLINC_DIR

# Fixture modules of other parts of the project (tests/fixtures_*.py), loaded as plugins.
pytest_plugins: list[str] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_TMP = Path(tempfile.mkdtemp(prefix="hubtools-tests-"))
_PORT = _free_port()
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "LOCALHUB_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(
    HF_ENDPOINT=f"http://127.0.0.1:{_PORT}",
    HF_TOKEN=DEV_TOKEN,
    HF_HOME=str(_TMP / "hf-home"),
    HF_DATASETS_CACHE=str(_TMP / "hf-datasets"),
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_PROGRESS_BARS="1",
    TOKENIZERS_PARALLELISM="false",
)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def local_hub() -> Iterator[LocalHub]:
    with LocalHub(_TMP / "hub-data", port=_PORT, token=DEV_TOKEN) as hub:
        yield hub


@pytest.fixture(scope="session")
def clinc_dir() -> Path:
    assert (CLINC_DIR / "README.md").is_file(), f"the repository's CLINC150 copy is missing: {CLINC_DIR}"
    return CLINC_DIR


@pytest.fixture(scope="session")
def seeded_hub(local_hub: LocalHub, clinc_dir: Path) -> LocalHub:
    seed(local_hub.data_dir, dataset_dir=clinc_dir)
    return local_hub


@pytest.fixture
def new_repo_id() -> Callable[[str], str]:
    def make(name: str = "repo") -> str:
        return f"test/{name}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def api(local_hub: LocalHub):
    """An ``HfApi`` of the test session's local Hub, with its token."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=local_hub.url, token=local_hub.token)


@pytest.fixture
def delays() -> list[float]:
    """Where a ``HubPolicy(sleep=delays.append)`` records the waits it would have slept."""
    return []
