"""Resolve a recipe's ``models:`` entries (Hub ids, local paths) to local folders + fingerprints.

A Hub id is pinned to the commit it resolves to and downloaded with ``snapshot_download``.

Resolution happens before any stage runs, so a typo in a model id fails in seconds with a
message naming the field, not after an hour of training.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelSourceError


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    fingerprint: str


def looks_local(source: str, base_dir: Path) -> bool:
    return source.startswith((".", "/", "~")) or (base_dir / source).exists()


def content_fingerprint(folder: Path) -> str:
    """sha256 over every file's name and bytes (``.git``/cache folders excluded).

    Content, not location: a local folder and a Hub snapshot of the same files fingerprint
    alike, so a recipe run from either reuses the other's finished stages.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{path.relative_to(folder).as_posix()}\n".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def resolve_source(field: str, source: str, base_dir: Path) -> ResolvedModel:
    """A local folder (relative to the recipe file) or a Hub model id pinned to its commit."""
    if looks_local(source, base_dir):
        path = (base_dir / os.path.expanduser(source)).resolve()
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{field}: {source!r} is not a model folder ({path}/config.json is missing). "
                "Give a folder written by save_pretrained, or a Hub model id."
            )
        return ResolvedModel(path, f"model:{content_fingerprint(path)}")
    return _resolve_hub(field, source)


def _resolve_hub(field: str, repo_id: str) -> ResolvedModel:
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    try:
        sha = HfApi().model_info(repo_id).sha
        path = snapshot_download(repo_id, revision=sha)
    except (RepositoryNotFoundError, HFValidationError) as err:
        raise ModelSourceError(
            f"{field}: model {repo_id!r} was not found on {constants.ENDPOINT}. Check the id; on the "
            "local Hub run `python -m hubtools hub seed`, for a private repo set HF_TOKEN."
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise ModelSourceError(
            f"{field}: cannot fetch {repo_id!r} from {constants.ENDPOINT} ({err.__class__.__name__}: {err}). "
            "Is the Hub reachable? Without internet, use the local Hub: `make hub` and set HF_ENDPOINT."
        ) from err
    return ResolvedModel(Path(path), f"model:{content_fingerprint(Path(path))}")
