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
import mimetypes
import os
from collections.abc import Callable
from typing import Any

from hubtools.errors import (
    EntryNotFoundError,
    HubRequestError,
    MethodNotAllowedError,
    RepoExistsError,
    UnauthorizedError,
)
from hubtools.localhub import fields, naming, pages, wire
from hubtools.localhub.blobs import SHA256_RE, wrong_size
from hubtools.localhub.cardmeta import card_metadata, file_card_metadata
from hubtools.localhub.messages import TRUE_VALUES, Reply, Request
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
        allowed = METHODS[req.route.name]
        if req.method not in allowed:
            raise MethodNotAllowedError(
                f"{req.method[:20]} is not allowed on this URL; use {' or '.join(sorted(allowed))}.",
                {"Allow": ", ".join(sorted(allowed))},
            )
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
        repo_type, repo_id = _repo_named(body, "create-repo")
        private = fields.get(body, "private", bool, "create-repo", False)
        try:
            repo = self.storage.create_repo(repo_type, repo_id, private=private)
        except RepoExistsError as exc:
            existing = self.storage.get_repo(repo_type, repo_id)
            url = wire.repo_url(req.base_url, existing)
            return Reply.json({"error": exc.message, "url": url}, exc.status, {"X-Error-Code": exc.code})
        return Reply.json({"url": wire.repo_url(req.base_url, repo), "name": repo_id, "id": repo_id})

    def delete_repo(self, req: Request) -> Reply:
        _require_token(req)
        self.storage.delete_repo(*_repo_named(req.json(), "delete-repo"))
        return Reply.json({})

    def validate_yaml(self, req: Request) -> Reply:
        content = fields.get(req.json(), "content", str, "validate-yaml", "")
        try:
            card_metadata(content)
        except ValueError as exc:
            # The Hub's shape ("errors"), plus the "error" and X-Error-Code every other refusal has.
            body = {"error": str(exc), "errors": [{"message": str(exc)}], "warnings": []}
            return Reply.json(body, 400, {"X-Error-Code": HubRequestError.code})
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
        if req.is_json:
            body = req.json()
            requested = body.get("paths", [])
            requested = fields.list_of(
                [requested] if isinstance(requested, str) else requested, str, "paths-info: 'paths'"
            )
            expand = fields.get(body, "expand", bool, "paths-info", False)
        else:  # huggingface_hub sends a form: paths=a&paths=b&expand=True
            form = req.form()
            requested, expand = form.get("paths", []), form.get("expand", [""])[-1] in TRUE_VALUES
        paths = [naming.check_folder(p) for p in requested]
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
        return {} if entry is None else file_card_metadata(self.storage.blob_path(entry))

    # --- writing ---------------------------------------------------------------------------

    def preupload(self, req: Request) -> Reply:
        repo = self._write(req)
        head = self._commit_at(req, repo)
        files = []
        for item in fields.list_of(req.json().get("files", []), dict, "preupload: 'files'"):
            path = naming.check_new_path(fields.require(item, "path", str, "preupload: a file"))
            where = f"preupload: file {path!r}"
            size = fields.size(item, "size", where, 0)
            sample = _b64decode(fields.get(item, "sample", str, where, ""), path)
            existing = head.tree.get(path)
            lfs = bool(existing and existing.lfs) or needs_lfs(path, size, sample)
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
        header, operations = self._parse_commit(req.body.read_all())
        commit_id = self.storage.commit(
            repo,
            branch,
            operations,
            title=fields.get(header, "summary", str, "Commit header") or "Upload files",
            message=fields.get(header, "description", str, "Commit header", ""),
            parent_commit=fields.get(header, "parentCommit", str, "Commit header"),
        )
        url = f"{wire.repo_url(req.base_url, repo)}/commit/{commit_id}"
        return Reply.json({"success": True, "commitOid": commit_id, "commitUrl": url, "hookOutput": ""})

    def _parse_commit(self, payload: bytes) -> tuple[dict[str, Any], list[Operation]]:
        """The ndjson commit payload: a ``header`` line, then one line per operation."""
        header: dict[str, Any] = {}
        ops: list[tuple[str, str, dict[str, Any], str]] = []
        for number, line in enumerate(payload.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"Commit payload line {number}"
            item = fields.parse_json(line, where)
            if not isinstance(item, dict):
                kind = fields.describe(item)
                raise HubRequestError(f"{where} must be a JSON object with 'key' and 'value', not {kind}.")
            key, value = fields.require(item, "key", str, where), fields.require(item, "value", dict, where)
            if key == "header":
                header = value
            elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
                path = fields.require(value, "path", str, where)
                if key in ("file", "lfsFile"):  # as preupload checks it: a name a listing shows as it is
                    path = naming.check_new_path(path)
                else:  # may remove a file named before that rule; huggingface_hub ends folders in "/"
                    path = naming.check_path(path.rstrip("/"))
                ops.append((key, path, value, where))
            else:
                raise HubRequestError(f"{where}: unknown operation {key[:40]!r}.")
        # Validated every line before storing any content.
        return header, [self._operation(*op) for op in ops]

    def _operation(self, key: str, path: str, value: dict[str, Any], where: str) -> Operation:
        if key == "deletedFile":
            return DeleteFile(path)
        if key == "deletedFolder":
            return DeleteFolder(path)
        if key == "lfsFile":
            oid, size = fields.require(value, "oid", str, where), fields.require(value, "size", int, where)
            return AddFile(path, self.storage.lfs_entry(oid, size))
        if fields.get(value, "encoding", str, where, "base64") != "base64":
            raise HubRequestError(f"File {path!r}: only base64 encoding is supported.")
        content = _b64decode(fields.get(value, "content", str, where, ""), path)
        return AddFile(path, self.storage.regular_entry(content))

    def lfs_batch(self, req: Request) -> Reply:
        self._write(req)
        body = req.json()
        if fields.get(body, "operation", str, "LFS batch") != "upload":
            raise HubRequestError("The local Hub's LFS batch API takes uploads only; download through /resolve/.")
        objects = []
        for obj in fields.list_of(body.get("objects", []), dict, "LFS batch: 'objects'"):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and SHA256_RE.fullmatch(oid) and fields.is_kind(size, int) and size >= 0):
                # Per object, as the LFS batch API reports them (the request as a whole is fine).
                error = {"code": 422, "message": "oid must be a sha256 hex digest and size a non-negative integer"}
                objects.append({"oid": str(oid), "size": size if fields.is_kind(size, int) else 0, "error": error})
            elif self.storage.blobs.has(oid, size):
                objects.append({"oid": oid, "size": size})  # already there: no actions, nothing to upload
            else:
                href = f"{req.base_url}/lfs/objects/{oid}?size={size}&ticket={self._ticket(oid, size)}"
                upload = {"href": href, "expires_in": 3600}
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {"upload": upload}})
        reply = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return Reply.json(reply, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, req: Request) -> Reply:
        oid, size_text = req.route.path, req.arg("size", "")
        # The ticket signs the size as lfs_batch wrote it, so a valid ticket vouches for plain
        # ASCII digits and int() below cannot fail on what a client typed.
        if not hmac.compare_digest(req.arg("ticket", "").encode(), self._ticket(oid, size_text).encode()):
            raise UnauthorizedError("LFS upload URL is invalid or expired; ask the LFS batch API for a new one.")
        size = int(size_text)
        if not req.body.chunked and req.body.length != size:
            raise wrong_size(oid, size, f"Content-Length {req.body.length}")
        self.storage.blobs.put_stream(req.body, size, oid)  # holds a chunked body to the size too
        return Reply.json({})

    def _ticket(self, oid: str, size: int | str) -> str:
        return hmac.new(self._lfs_secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    # --- human pages -----------------------------------------------------------------------

    def index_page(self, req: Request) -> Reply:
        repos = [r for r in self.storage.list_repos() if req.authorized or not r.private]
        return Reply.html(pages.index_page(repos))

    def repo_page(self, req: Request) -> Reply:
        repo = self._read(req)
        return Reply.html(pages.repo_page(self.storage, repo, self._commit_at(req, repo)))


def _repo_named(body: dict[str, Any], where: str) -> tuple[str, str]:
    """``(repo_type, repo_id)`` from create/delete-repo's ``type``, ``organization`` and ``name``."""
    repo_type = naming.check_repo_type(fields.get(body, "type", str, where))
    name = fields.require(body, "name", str, where)
    organization = fields.get(body, "organization", str, where)
    return repo_type, naming.check_repo_id(f"{organization}/{name}" if organization else name)


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
