"""JSON shapes of the Hub API, as huggingface_hub's dataclasses parse them.

``RepoFile``/``RepoFolder`` (tree, paths-info), ``RepoSibling`` (repo info), ``GitCommitInfo``
(commits) and ``ModelInfo``/``DatasetInfo`` in ``huggingface_hub/hf_api.py``.
"""

from __future__ import annotations

from typing import Any

from hubtools.localhub.naming import url_prefix
from hubtools.localhub.storage import AUTHOR, Commit, RepoRecord
from hubtools.localhub.trees import Entry, Tree, folder_id


def repo_url(base_url: str, repo: RepoRecord) -> str:
    return f"{base_url}/{url_prefix(repo.repo_type)}{repo.repo_id}"


def lfs_json(entry: Entry, sha_key: str = "oid") -> dict[str, Any]:
    """LFS details; ``sha_key`` is ``oid`` in tree listings and ``sha256`` in repo info siblings."""
    return {sha_key: entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}


def last_commit_json(commit: Commit) -> dict[str, Any]:
    return {"id": commit.id, "title": commit.title, "date": commit.date}


def path_json(tree: Tree, path: str, last_commit: Commit | None = None) -> dict[str, Any]:
    """A ``RepoFile`` (``path`` in ``tree``) or ``RepoFolder`` (any other path)."""
    entry = tree.get(path)
    if entry is None:
        out: dict[str, Any] = {"type": "directory", "oid": folder_id(tree, path), "size": 0, "path": path}
    else:
        out = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            out["lfs"] = lfs_json(entry)
    if last_commit is not None:
        out["lastCommit"] = last_commit_json(last_commit)
    return out


def commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "title": commit.title,
        "message": commit.message,
        "authors": [{"user": commit.author, "avatar": None}],
        "date": commit.date,
    }


def repo_info_json(repo: RepoRecord, commit: Commit, card: dict[str, Any]) -> dict[str, Any]:
    siblings = [
        {"rfilename": p, "size": e.size, "blobId": e.oid, **({"lfs": lfs_json(e, "sha256")} if e.lfs else {})}
        for p, e in sorted(commit.tree.items())
    ]
    tags = card.get("tags")
    info: dict[str, Any] = {
        "_id": repo.repo_id,
        "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else AUTHOR,
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": repo.created_at,
        "private": repo.private,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags if isinstance(tags, list) else [],
        "cardData": card,
        "siblings": siblings,
        "usedStorage": sum(e.size for e in commit.tree.values()),
    }
    if repo.repo_type == "model":
        info.update(modelId=repo.repo_id, pipeline_tag=card.get("pipeline_tag"), library_name=card.get("library_name"))
    return info
