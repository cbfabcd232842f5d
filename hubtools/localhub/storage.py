"""Repos on disk: records, branches, commits with history, and the blobs they point to.

Layout under the data dir (every file is written atomically)::

    blobs/<aa>/<sha256>                          file contents, shared by all repos
    repos/<type>s/<namespace--name>/repo.json    {"type", "id", "private", "createdAt"}
    repos/<type>s/<namespace--name>/refs.json    {"main": "<commit id>"}
    repos/<type>s/<namespace--name>/commits/<commit id>.json
                                                 {"parents", "title", "message", "author",
                                                  "date", "tree": {path: entry}}

A commit id is the sha1 of the commit's canonical JSON, so it is 40 hex digits like git's.
Branch updates take a lock (a thread lock plus ``flock`` on ``.lock``) so a server and a
``hub seed`` may share a data dir. Opening a data dir removes the temporary files a killed
process left behind (see :func:`fsutil.remove_orphans`).

Deleting a repo renames its folder into ``trash/`` (under the lock) before removing it, so
the repo vanishes at once, whole: a concurrent reader finds all of it or a 404 (a file that
vanishes under a read is a :class:`RepoNotFoundError`), and a commit, which reads the branch
under the lock, finds the repo or a 404. ``trash/`` left by a killed process is emptied when
a data dir is opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubtools.errors import (
    BlobMismatchError,
    EntryNotFoundError,
    HubRequestError,
    InvalidPathError,
    ParentCommitMismatchError,
    RepoExistsError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from hubtools.localhub import naming
from hubtools.localhub.blobs import BlobStore, git_blob_sha1
from hubtools.localhub.fsutil import read_json, remove_orphans, write_json
from hubtools.localhub.trees import GITATTRIBUTES, Entry, Tree, fingerprint, is_folder

COMMIT_ID_RE = re.compile(r"[0-9a-f]{7,40}")  # a commit id or its prefix; use with fullmatch
AUTHOR = "local"
TRASH = "trash"  # deleted repos' folders, on their way out


def now_iso() -> str:
    """UTC time as the Hub writes it: ``2024-05-01T12:00:00.000Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RepoRecord:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str


@dataclass(frozen=True)
class Commit:
    id: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    tree: dict[str, Entry] = field(repr=False)


@dataclass(frozen=True)
class AddFile:
    path: str
    entry: Entry


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder


class Storage:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir).resolve()
        self.blobs = BlobStore(self.data_dir / "blobs")
        self._thread_lock = threading.Lock()
        self.orphans_removed = remove_orphans(self.data_dir)
        shutil.rmtree(self.data_dir / TRASH, ignore_errors=True)  # a delete a killed process left

    # --- entries (content goes into the blob store first) ------------------------------

    def regular_entry(self, data: bytes) -> Entry:
        return Entry(sha256=self.blobs.put_bytes(data), size=len(data), lfs=False, sha1=git_blob_sha1(data))

    def file_entry(self, source: Path, lfs: bool) -> Entry:
        if not lfs:
            return self.regular_entry(source.read_bytes())
        return Entry(sha256=self.blobs.put_file(source), size=source.stat().st_size, lfs=True)

    def lfs_entry(self, sha256: str, size: int) -> Entry:
        """Entry for an LFS object that must already have been uploaded."""
        if not self.blobs.has(sha256, size):
            raise BlobMismatchError(
                f"LFS object {sha256} ({size} bytes) was not uploaded; upload it through the LFS batch API first."
            )
        return Entry(sha256=sha256, size=size, lfs=True)

    def blob_path(self, entry: Entry) -> Path:
        return self.blobs.path(entry.sha256)

    # --- repos ---------------------------------------------------------------------------

    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        naming.check_repo_type(repo_type)
        return self.data_dir / "repos" / f"{repo_type}s" / naming.repo_dir_name(repo_id)

    def has_repo(self, repo_type: str, repo_id: str) -> bool:
        return (self._repo_dir(repo_type, repo_id) / "repo.json").is_file()

    def get_repo(self, repo_type: str, repo_id: str) -> RepoRecord:
        record = self._repo_dir(repo_type, repo_id) / "repo.json"
        return _record(_read(record, repo_not_found(repo_type, repo_id)))

    def list_repos(self) -> list[RepoRecord]:
        records = []
        for path in sorted((self.data_dir / "repos").glob("*/*/repo.json")):
            try:
                records.append(_record(read_json(path)))
            except FileNotFoundError:
                continue  # deleted since the listing
        return records

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> RepoRecord:
        """Create a repo whose ``main`` has one commit adding ``.gitattributes``, as the Hub does."""
        repo_dir = self._repo_dir(repo_type, repo_id)
        with self._lock():
            if (repo_dir / "repo.json").exists():
                raise RepoExistsError(f"You already created this {repo_type} repo: {repo_id}.")
            created = now_iso()
            commit = self._write_commit(
                repo_dir, (), {".gitattributes": self.regular_entry(GITATTRIBUTES)}, "initial commit", ""
            )
            write_json(repo_dir / "refs.json", {"main": commit})
            data = {"type": repo_type, "id": repo_id, "private": private, "createdAt": created}
            write_json(repo_dir / "repo.json", data)  # written last: the repo exists once complete
        return RepoRecord(repo_type, repo_id, private, created)

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Move the repo out of sight in one rename, then remove it (see the module docstring)."""
        repo_dir = self._repo_dir(repo_type, repo_id)
        tombstone = self.data_dir / TRASH / uuid.uuid4().hex
        tombstone.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if not (repo_dir / "repo.json").is_file():
                raise repo_not_found(repo_type, repo_id)
            repo_dir.rename(tombstone)
        shutil.rmtree(tombstone)

    # --- revisions and commits -----------------------------------------------------------

    def branches(self, repo: RepoRecord) -> dict[str, str]:
        refs = self._repo_dir(repo.repo_type, repo.repo_id) / "refs.json"
        return _read(refs, repo_not_found(repo.repo_type, repo.repo_id))

    def resolve(self, repo: RepoRecord, revision: str) -> str:
        """Commit id of a branch name, a full commit id, or an unambiguous prefix (7+ hex)."""
        branches = self.branches(repo)
        if revision in branches:
            return branches[revision]
        commit_id = self._commit_id(repo, revision)
        if commit_id is None:
            raise RevisionNotFoundError(f"Invalid rev id: {revision!r} is not a branch or commit of {repo.repo_id}.")
        return commit_id

    def _commit_id(self, repo: RepoRecord, prefix: str) -> str | None:
        """The one commit whose id is ``prefix`` or starts with it (7+ hex digits); None otherwise."""
        if not COMMIT_ID_RE.fullmatch(prefix):
            return None
        commits = self._repo_dir(repo.repo_type, repo.repo_id) / "commits"
        matches = [p.stem for p in commits.glob(f"{prefix}*.json")]
        return matches[0] if len(matches) == 1 else None

    def get_commit(self, repo: RepoRecord, commit_id: str) -> Commit:
        path = self._repo_dir(repo.repo_type, repo.repo_id) / "commits" / f"{commit_id}.json"
        missing = RevisionNotFoundError(f"Commit {commit_id!r} not found in {repo.repo_id}.")
        if not COMMIT_ID_RE.fullmatch(commit_id):
            raise missing
        data = _read(path, missing)
        tree = {p: Entry.from_json(e) for p, e in data["tree"].items()}
        return Commit(
            commit_id, tuple(data["parents"]), data["title"], data["message"], data["author"], data["date"], tree
        )

    def history(self, repo: RepoRecord, commit_id: str) -> Iterator[Commit]:
        """The commit and its first-parent ancestors, newest first."""
        next_id: str | None = commit_id
        while next_id is not None:
            commit = self.get_commit(repo, next_id)
            yield commit
            next_id = commit.parents[0] if commit.parents else None

    def last_changes(self, repo: RepoRecord, commit_id: str, paths: Iterable[str]) -> dict[str, Commit]:
        """For each path, the newest commit (from ``commit_id`` back) that changed it."""
        pending, out = set(paths), {}
        commits = self.history(repo, commit_id)
        current = next(commits)
        for parent in [*commits, None]:
            for path in list(pending):
                before = fingerprint(parent.tree, path) if parent else None
                if fingerprint(current.tree, path) != before:
                    out[path] = current
                    pending.discard(path)
            if not pending or parent is None:
                break
            current = parent
        return out

    def commit(
        self,
        repo: RepoRecord,
        branch: str,
        operations: Iterable[Operation],
        title: str,
        message: str = "",
        parent_commit: str | None = None,
    ) -> str:
        """Apply ``operations`` on top of ``branch`` and return the new head.

        Idempotent: when the resulting tree equals the head's, no commit is made and the
        head is returned. ``parent_commit``, when given, must name the head: its id, or a
        prefix of 7+ hex digits that names no other commit (huggingface_hub's shorthand).
        """
        repo_dir = self._repo_dir(repo.repo_type, repo.repo_id)
        with self._lock():
            branches = self.branches(repo)
            if branch not in branches:
                raise RevisionNotFoundError(
                    f"Branch {branch!r} not found in {repo.repo_id}; the local Hub commits to existing branches only."
                )
            head = self.get_commit(repo, branches[branch])
            if parent_commit is not None and self._commit_id(repo, parent_commit) != head.id:
                raise ParentCommitMismatchError(
                    f"Parent commit {parent_commit[:50]!r} is not the head of {branch} ({head.id}); fetch and retry."
                )
            tree = apply_operations(head.tree, operations)
            if tree == head.tree:
                return head.id
            new_id = self._write_commit(repo_dir, (head.id,), tree, title, message)
            write_json(repo_dir / "refs.json", {**branches, branch: new_id})
        return new_id

    def _write_commit(self, repo_dir: Path, parents: tuple[str, ...], tree: Tree, title: str, message: str) -> str:
        body = {
            "parents": list(parents),
            "title": title,
            "message": message,
            "author": AUTHOR,
            "date": now_iso(),
            "tree": {p: tree[p].to_json() for p in sorted(tree)},
        }
        commit_id = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
        write_json(repo_dir / "commits" / f"{commit_id}.json", body)
        return commit_id

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.data_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path, missing: HubRequestError) -> Any:
    """``path``'s JSON; ``missing`` if there is no such file (or its repo was deleted meanwhile)."""
    try:
        return read_json(path)
    except FileNotFoundError:
        raise missing from None


def _record(data: dict) -> RepoRecord:
    return RepoRecord(data["type"], data["id"], bool(data.get("private")), data["createdAt"])


def repo_not_found(repo_type: str, repo_id: str) -> RepoNotFoundError:
    return RepoNotFoundError(
        f"Repository {repo_id!r} ({repo_type}) not found; check the id and repo type, and pass the token"
        " if it is private."
    )


def apply_operations(tree: Tree, operations: Iterable[Operation]) -> dict[str, Entry]:
    out = dict(tree)
    for op in operations:
        path = op.path.rstrip("/") if isinstance(op, DeleteFolder) else op.path
        path = naming.check_new_path(path) if isinstance(op, AddFile) else naming.check_path(path)
        if isinstance(op, AddFile):
            parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            if is_folder(out, path) or any(p in out for p in parents):
                raise InvalidPathError(f"Cannot add {path!r}: it or one of its folders is already the other kind.")
            out[path] = op.entry
        elif isinstance(op, DeleteFile):
            if out.pop(path, None) is None:
                raise EntryNotFoundError(f"Cannot delete {path!r}: A file with this name doesn't exist.")
        else:
            inside = [p for p in out if p.startswith(path + "/")]
            if not inside:
                raise EntryNotFoundError(f"Cannot delete folder {path!r}: A folder with this name doesn't exist.")
            for p in inside:
                del out[p]
    return out
