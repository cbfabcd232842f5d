"""Resolve a recipe's ``models:`` entries (Hub ids, local paths) to local folders + fingerprints.

A Hub id is pinned to the commit it resolves to and downloaded with ``snapshot_download``.

Resolution happens before any stage runs, so a typo in a model id fails in seconds with a
message naming the field, not after an hour of training. :func:`read_config` reads a model's
``config.json`` alone, for the checks that run before that (:mod:`recipes.plan.preflight`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelSourceError

#: The Hub's limit on each part of a repo id: ``validate_repo_id`` checks the name's, the Hub the namespace's too.
REPO_PART_MAX_LENGTH = 96
REPO_ID_RULES = (
    f"a Hub repo id is 'name' or 'namespace/name', each part 1-{REPO_PART_MAX_LENGTH} ASCII letters, digits, "
    "'-', '_' or '.', neither starting nor ending with '-' or '.', without '--' or '..', not ending in '.git'"
)


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    fingerprint: str


def exists(path: Path) -> bool:
    """``Path.exists`` that answers False for a name the OS refuses (too long, a NUL byte)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def looks_local(source: str, base_dir: Path) -> bool:
    return source.startswith((".", "/", "~")) or exists(base_dir / source)


def is_repo_id(repo_id: str) -> bool:
    """Whether the Hub takes ``repo_id``: ``huggingface_hub``'s ``validate_repo_id``, plus what the
    Hub refuses beyond it (a letter outside ASCII, a namespace over :data:`REPO_PART_MAX_LENGTH`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not repo_id.isascii() or any(len(part) > REPO_PART_MAX_LENGTH for part in repo_id.split("/")):
        return False
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


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


def _local_folder(field: str, source: str, base_dir: Path) -> Path:
    """The model folder ``source`` names, relative to the recipe file; it must hold config.json."""
    path = (base_dir / os.path.expanduser(source)).resolve()
    if not exists(path / "config.json"):
        raise ModelSourceError(
            f"{field}: {source!r} is not a model folder ({path}/config.json is missing). "
            "Give a folder written by save_pretrained, or a Hub model id."
        )
    return path


def _hub_id(field: str, source: str) -> str:
    if not is_repo_id(source):
        raise ModelSourceError(
            f"{field}: {source!r} is neither a model folder (a path starting with ./, / or ~, or one next to the "
            f"recipe file) nor a Hub model id; {REPO_ID_RULES}."
        )
    return source


def resolve_source(field: str, source: str, base_dir: Path) -> ResolvedModel:
    """A local folder (relative to the recipe file) or a Hub model id pinned to its commit."""
    if looks_local(source, base_dir):
        path = _local_folder(field, source, base_dir)
        return ResolvedModel(path, f"model:{content_fingerprint(path)}")
    return _resolve_hub(field, _hub_id(field, source))


def model_file(field: str, source: str, base_dir: Path, name: str) -> Path | None:
    """One file of the model ``source`` (a folder or a Hub id), fetched alone; None when the model
    has no such file."""
    if looks_local(source, base_dir):
        path = _local_folder(field, source, base_dir) / name
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id = _hub_id(field, source)
    with _hub_errors(field, repo_id):
        try:
            return Path(hf_hub_download(repo_id, name))
        except EntryNotFoundError:
            return None


def read_config(field: str, source: str, base_dir: Path) -> dict:
    """The ``config.json`` of the model ``source`` (a folder or a Hub id), without its weights."""
    path = model_file(field, source, base_dir, "config.json") or Path(source) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"{field}: cannot read {source!r}'s config.json ({err}).") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"{field}: {source!r}'s config.json is not a JSON object.")
    return config


def hub_unreachable() -> str | None:
    """Why the Hub (``HF_ENDPOINT``) cannot be reached, in one try (None: it answers, or the Hub is
    off, ``HF_HUB_OFFLINE``, and the cache answers). The Hub libraries retry a refused connection
    for about 20 s per file; a check that asks for several files says so at once instead."""
    import requests
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_session().head(constants.ENDPOINT, timeout=10)
    except requests.RequestException as err:
        return f"{constants.ENDPOINT} cannot be reached ({err.__class__.__name__})"
    return None


@contextlib.contextmanager
def _hub_errors(field: str, repo_id: str):
    """A Hub call about model ``repo_id``, its failures as one :class:`ModelSourceError` each."""
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError as err:
        raise ModelSourceError(
            f"{field}: model {repo_id!r} was not found on {constants.ENDPOINT}. Check the id; on the "
            "local Hub run `python -m hubtools hub seed`, for a private repo set HF_TOKEN."
        ) from err
    except EntryNotFoundError as err:
        if err.response is None:  # no answer, and not in the cache either
            raise _unreachable(field, repo_id, err) from err
        raise ModelSourceError(
            f"{field}: {repo_id!r} on {constants.ENDPOINT} has no config.json: it is not a transformers model."
        ) from err
    except (HfHubHTTPError, OSError) as err:
        raise _unreachable(field, repo_id, err) from err


def _unreachable(field: str, repo_id: str, err: Exception) -> ModelSourceError:
    from huggingface_hub import constants

    return ModelSourceError(
        f"{field}: cannot fetch {repo_id!r} from {constants.ENDPOINT} ({err.__class__.__name__}: {err}). "
        "Is the Hub reachable? Without internet, use the local Hub: `make hub` and set HF_ENDPOINT."
    )


def _resolve_hub(field: str, repo_id: str) -> ResolvedModel:
    from huggingface_hub import HfApi, snapshot_download

    with _hub_errors(field, repo_id):
        sha = HfApi().model_info(repo_id).sha
        path = snapshot_download(repo_id, revision=sha)
    return ResolvedModel(Path(path), f"model:{content_fingerprint(Path(path))}")
