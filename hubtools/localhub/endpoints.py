"""The Hub API endpoints: one method per route name (see :mod:`routes`), each
``(Request) -> Reply``. Access rules live in :meth:`Api._read` and :meth:`Api._write`.

Wire formats follow huggingface_hub 0.36: ``hf_api.py`` (repo info, tree, paths-info,
commits, create/delete, validate-yaml), ``_commit_api.py`` (preupload, ndjson commit),
``lfs.py`` (LFS batch, basic transfer) and ``file_download.py`` (resolve headers).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mimetypes
import os
from typing import Any, Callable

from hubtools.errors import (
    EntryNotFoundError,
    HubRequestError,
    MethodNotAllowedError,
    RepoExistsError,
    UnauthorizedError,
)
from hubtools.localhub import naming, pages, wire
from hubtools.localhub.blobs import SHA256_RE
from hubtools.localhub.cardmeta import card_metadata
from hubtools.localhub.messages import TRUE_VALUES, Reply, Request, json_objects
from hubtools.localhub.ranges import parse_range
from hubtools.localhub.storage import (
    AddFile,
    Commit,
    DeleteFile,
    DeleteFolder,
    Operation,
    RepoRecord,
    Storage,
    repo_not_found,
)
from hubtools.localhub.trees import is_folder, list_folder, needs_lfs

# Route name -> HTTP methods it answers.
METHODS = {
    "whoami": {"GET"},
    "create_repo": {"POST"},
    "delete_repo": {"DELETE"},
    "validate_yaml": {"POST"},
    "list_repos": {"GET"},
    "repo_info": {"GET"},
    "tree": {"GET"},
    "paths_info": {"POST"},
    "commits": {"GET"},
    "refs": {"GET"},
    "preupload": {"POST"},
    "commit": {"POST"},
    "lfs_batch": {"POST"},
    "lfs_upload": {"PUT"},
    "resolve": {"GET", "HEAD"},
    "index_page": {"GET"},
    "repo_page": {"GET"},
}
BAD_TOKEN = {"X-Error-Message": "Invalid credentials in Authorization header"}
USER = {
    "type": "user",
    "id": "local",
    "name": "local",
    "fullname": "Local Hub user",
    "email": None,
    "emailVerified": False,
    "isPro": False,
    "orgs": [],
    "auth": {"type": "access_token", "accessToken": {"displayName": "localhub", "role": "write"}},
}


class Api:
    def __init__(self, storage: Storage):
        self.storage = storage
        self._lfs_secret = os.urandom(32)  # signs LFS upload URLs for this server's lifetime

    def handle(self, req: Request) -> Reply:
        if req.method not in METHODS[req.route.name]:
            raise MethodNotAllowedError(f"{req.method} is not allowed on this URL.")
        handler: Callable[[Request], Reply] = getattr(self, req.route.name)
        return handler(req)

    # --- access --------------------------------------------------------------------------

    def _read(self, req: Request) -> RepoRecord:
        """The route's repo, if the caller may read it (private repos need the token)."""
        repo = self.storage.get_repo(req.route.repo_type, req.route.repo_id)
        if repo.private and not req.authorized:
            raise repo_not_found(repo.repo_type, repo.repo_id)  # same reply as a missing repo
        return repo

    def _write(self, req: Request) -> RepoRecord:
        _require_token(req)
        return self.storage.get_repo(req.route.repo_type, req.route.repo_id)

    def _commit_at(self, req: Request, repo: RepoRecord) -> Commit:
        return self.storage.get_commit(repo, self.storage.resolve(repo, req.route.revision or "main"))

    # --- account and repos -----------------------------------------------------------------

    def whoami(self, req: Request) -> Reply:
        _require_token(req)
        return Reply.json(USER)

    def create_repo(self, req: Request) -> Reply:
        _require_token(req)
        body = req.json()
        repo_type = naming.check_repo_type(body.get("type"))
        repo_id = naming.check_repo_id("/".join(p for p in (body.get("organization"), body.get("name")) if p))
        try:
            repo = self.storage.create_repo(repo_type, repo_id, private=bool(body.get("private")))
        except RepoExistsError as exc:
            existing = self.storage.get_repo(repo_type, repo_id)
            url = wire.repo_url(req.base_url, existing)
            return Reply.json({"error": exc.message, "url": url}, exc.status, {"X-Error-Code": exc.code})
        return Reply.json({"url": wire.repo_url(req.base_url, repo), "name": repo_id, "id": repo_id})

    def delete_repo(self, req: Request) -> Reply:
        _require_token(req)
        body = req.json()
        repo_type = naming.check_repo_type(body.get("type"))
        repo_id = naming.check_repo_id("/".join(p for p in (body.get("organization"), body.get("name")) if p))
        self.storage.delete_repo(repo_type, repo_id)
        return Reply.json({})

    def validate_yaml(self, req: Request) -> Reply:
        content = req.json().get("content", "")
        try:
            card_metadata(content if isinstance(content, str) else "")
        except ValueError as exc:
            return Reply.json({"errors": [{"message": str(exc)}], "warnings": []}, 400)
        return Reply.json({"errors": [], "warnings": []})

    def list_repos(self, req: Request) -> Reply:
        repos = [r for r in self.storage.list_repos() if r.repo_type == req.route.repo_type]
        visible = [r for r in repos if req.authorized or not r.private]
        return Reply.json([{"id": r.repo_id, "private": r.private, "createdAt": r.created_at} for r in visible])

    # --- reading ---------------------------------------------------------------------------

    def repo_info(self, req: Request) -> Reply:
        repo = self._read(req)
        commit = self._commit_at(req, repo)
        return Reply.json(wire.repo_info_json(repo, commit, self._card(commit)))

    def tree(self, req: Request) -> Reply:
        repo = self._read(req)
        commit = self._commit_at(req, repo)
        folder = req.route.path
        if not is_folder(commit.tree, folder):
            raise EntryNotFoundError(f"Folder {folder!r} not found at {req.route.revision}.")
        paths = [p for p, _ in list_folder(commit.tree, folder, recursive=req.flag("recursive"))]
        return Reply.json(self._paths_json(repo, commit, paths, expand=req.flag("expand")))

    def paths_info(self, req: Request) -> Reply:
        repo = self._read(req)
        commit = self._commit_at(req, repo)
        body = req.form_or_json()
        requested = body.get("paths") or []
        requested = [requested] if isinstance(requested, str) else requested
        expand = body.get("expand")
        expand = expand[-1] in TRUE_VALUES if isinstance(expand, list) else bool(expand)
        paths = [naming.check_folder(str(p)) for p in requested]
        found = [p for p in paths if p and (p in commit.tree or is_folder(commit.tree, p))]
        return Reply.json(self._paths_json(repo, commit, found, expand))

    def _paths_json(self, repo: RepoRecord, commit: Commit, paths: list[str], expand: bool) -> list[dict]:
        last = self.storage.last_changes(repo, commit.id, paths) if expand else {}
        return [wire.path_json(commit.tree, p, last.get(p)) for p in paths]

    def commits(self, req: Request) -> Reply:
        repo = self._read(req)
        head = self.storage.resolve(repo, req.route.revision)
        return Reply.json([wire.commit_json(c) for c in self.storage.history(repo, head)])

    def refs(self, req: Request) -> Reply:
        repo = self._read(req)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
            for name, sha in sorted(self.storage.branches(repo).items())
        ]
        return Reply.json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def resolve(self, req: Request) -> Reply:
        repo = self._read(req)
        commit = self._commit_at(req, repo)
        path = req.route.path
        entry = commit.tree.get(path)
        if entry is None:
            raise EntryNotFoundError(f"{path} does not exist at {req.route.revision}.", {"X-Repo-Commit": commit.id})
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{entry.oid}"',
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, length, content_range = parse_range(req.headers.get("Range"), entry.size)
        if content_range:
            headers["Content-Range"] = content_range
        status = 206 if req.headers.get("Range") else 200
        return Reply(status, headers, file=(self.storage.blob_path(entry), start, length))

    def _card(self, commit: Commit) -> dict[str, Any]:
        entry = commit.tree.get("README.md")
        if entry is None:
            return {}
        try:
            return card_metadata(self.storage.blob_path(entry).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}

    # --- writing ---------------------------------------------------------------------------

    def preupload(self, req: Request) -> Reply:
        repo = self._write(req)
        head = self._commit_at(req, repo)
        files = []
        for item in json_objects(req.json().get("files", []), "'files'"):
            path = naming.check_path(str(item.get("path", "")))
            sample, size = _b64decode(item.get("sample"), path), item.get("size")
            existing = head.tree.get(path)
            lfs = bool(existing and existing.lfs) or needs_lfs(path, size if isinstance(size, int) else 0, sample)
            info = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if existing is not None:
                info["oid"] = existing.sha256 if lfs else existing.sha1
            files.append(info)
        return Reply.json({"files": files, "commitOid": head.id})

    def commit(self, req: Request) -> Reply:
        repo = self._write(req)
        if req.flag("create_pr"):
            raise HubRequestError("Pull requests are not supported by the local Hub; commit to a branch.")
        branch = naming.check_branch(req.route.revision)
        header, operations = self._parse_commit(req.body.read())
        commit_id = self.storage.commit(
            repo,
            branch,
            operations,
            title=str(header.get("summary") or "Upload files"),
            message=str(header.get("description") or ""),
            parent_commit=header.get("parentCommit"),
        )
        url = f"{wire.repo_url(req.base_url, repo)}/commit/{commit_id}"
        return Reply.json({"success": True, "commitOid": commit_id, "commitUrl": url, "hookOutput": ""})

    def _parse_commit(self, payload: bytes) -> tuple[dict[str, Any], list[Operation]]:
        """The ndjson commit payload: a ``header`` line, then one line per operation."""
        header: dict[str, Any] = {}
        ops: list[tuple[str, str, dict[str, Any]]] = []
        for number, line in enumerate(payload.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if not isinstance(value, dict):
                    raise TypeError(value)
            except (ValueError, KeyError, TypeError):
                raise HubRequestError(f"Commit payload line {number} is not a {{key, value}} JSON object.") from None
            if key == "header":
                header = value
            elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                ops.append((key, naming.check_path(str(value.get("path", "")).rstrip("/")), value))
            else:
                raise HubRequestError(f"Commit payload line {number}: unknown operation {key!r}.")
        # Validated every line before storing any content.
        return header, [self._operation(key, path, value) for key, path, value in ops]

    def _operation(self, key: str, path: str, value: dict[str, Any]) -> Operation:
        if key == "deletedFile":
            return DeleteFile(path)
        if key == "deletedFolder":
            return DeleteFolder(path)
        if key == "lfsFile":
            size = value.get("size")
            return AddFile(path, self.storage.lfs_entry(str(value.get("oid")), size if isinstance(size, int) else -1))
        if value.get("encoding", "base64") != "base64":
            raise HubRequestError(f"File {path!r}: only base64 encoding is supported.")
        return AddFile(path, self.storage.regular_entry(_b64decode(value.get("content"), path)))

    def lfs_batch(self, req: Request) -> Reply:
        self._write(req)
        body = req.json()
        if body.get("operation") != "upload":
            raise HubRequestError("The local Hub's LFS batch API takes uploads only; download through /resolve/.")
        objects = []
        for obj in json_objects(body.get("objects", []), "'objects'"):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and SHA256_RE.match(oid) and isinstance(size, int) and size >= 0):
                error = {"code": 422, "message": "oid must be a sha256 hex digest and size a non-negative integer"}
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0, "error": error})
            elif self.storage.blobs.has(oid, size):
                objects.append({"oid": oid, "size": size})  # already there: no actions, nothing to upload
            else:
                href = f"{req.base_url}/lfs/objects/{oid}?size={size}&ticket={self._ticket(oid, size)}"
                upload = {"href": href, "expires_in": 3600}
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {"upload": upload}})
        reply = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return Reply.json(reply, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, req: Request) -> Reply:
        oid, size = req.route.path, req.arg("size", "")
        ticket = req.arg("ticket", "").encode()
        if not size.isdigit() or not hmac.compare_digest(ticket, self._ticket(oid, int(size)).encode()):
            raise UnauthorizedError("LFS upload URL is invalid or expired; ask the LFS batch API for a new one.")
        if not req.body.chunked and req.body.length != int(size):
            raise HubRequestError(f"Upload of {oid} must be {size} bytes, got Content-Length {req.body.length}.")
        self.storage.blobs.put_stream(req.body, int(size), oid)
        return Reply.json({})

    def _ticket(self, oid: str, size: int) -> str:
        return hmac.new(self._lfs_secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    # --- human pages -----------------------------------------------------------------------

    def index_page(self, req: Request) -> Reply:
        repos = [r for r in self.storage.list_repos() if req.authorized or not r.private]
        return Reply.html(pages.index_page(repos))

    def repo_page(self, req: Request) -> Reply:
        repo = self._read(req)
        return Reply.html(pages.repo_page(self.storage, repo, self._commit_at(req, repo)))


def _b64decode(text: Any, path: str) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise HubRequestError(f"File {path!r}: content is not valid base64.") from None


def _require_token(req: Request) -> None:
    if not req.authorized:
        raise UnauthorizedError(
            "This needs a write token: send 'Authorization: Bearer <token>' (set HF_TOKEN to the local Hub's"
            " token, by default hf_localhub_dev_token).",
            BAD_TOKEN,
        )
