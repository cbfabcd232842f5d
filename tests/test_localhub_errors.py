"""Bad input gets a 4xx with the Hub's X-Error-Code and a JSON error, never a traceback or a
file outside the data dir; an unexpected exception is a JSON 500 and the server goes on."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubtools.localhub import DEV_TOKEN

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


def raw(hub, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request exactly as written (no URL normalisation); returns (status, headers, json)."""
    conn = http.client.HTTPConnection(urlsplit(hub.url).netloc, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.headers, json.loads(data) if data and method != "HEAD" else None


@pytest.fixture(scope="module")
def repo(local_hub) -> str:
    repo_id = "test/errors"
    HfApi().create_repo(repo_id, exist_ok=True)
    HfApi().upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=repo_id)
    return repo_id


def test_unknown_repo(local_hub):
    status, headers, body = raw(local_hub, "GET", "/api/models/nobody/nothing")
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")  # anonymous: 401, like the Hub
    assert "not found" in body["error"]
    status, headers, _ = raw(local_hub, "GET", "/api/models/nobody/nothing", headers=AUTH)
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json")


def test_bad_revision_and_missing_file(local_hub, repo):
    status, headers, _ = raw(local_hub, "GET", f"/api/models/{repo}/revision/nope")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "a.txt", revision="nope")

    status, headers, _ = raw(local_hub, "HEAD", f"/{repo}/resolve/main/missing.txt")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert len(headers["X-Repo-Commit"]) == 40
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "missing.txt")

    status, headers, _ = raw(local_hub, "GET", f"/{repo}/resolve/main/a.txt", headers={"Range": "bytes=10-20"})
    assert (status, headers["Content-Range"]) == (416, "bytes */5")


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/{repo}/resolve/main/../../../../etc/passwd", "InvalidPath"),
        ("/{repo}/resolve/main/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "InvalidPath"),
        ("/{repo}/resolve/main//etc/passwd", "InvalidPath"),
        ("/api/models/{repo}/tree/main/..%2F..", "InvalidPath"),
        ("/api/models/..%2F..%2Fetc", "InvalidRepoId"),
        ("/api/models/a--b/c", "InvalidRepoId"),
    ],
)
def test_traversal_is_refused(local_hub, repo, path, code):
    status, headers, body = raw(local_hub, "GET", path.format(repo=repo))
    assert (status, headers["X-Error-Code"]) == (400, code)
    assert "Traceback" not in body["error"]


def test_commit_outside_repo_is_refused(local_hub, repo):
    lines = [
        {"key": "header", "value": {"summary": "evil"}},
        {"key": "file", "value": {"path": "../../evil.txt", "content": base64.b64encode(b"x").decode()}},
    ]
    payload = "\n".join(json.dumps(line) for line in lines).encode()
    status, headers, _ = raw(local_hub, "POST", f"/api/models/{repo}/commit/main", payload, AUTH)
    assert (status, headers["X-Error-Code"]) == (400, "InvalidPath")
    assert not list(local_hub.data_dir.parent.rglob("evil.txt"))


def test_write_without_token(local_hub, repo):
    anonymous = HfApi(token=False)
    for call in (
        lambda: anonymous.create_repo("test/nope"),
        lambda: anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo),
    ):
        with pytest.raises(HfHubHTTPError) as refused:
            call()
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["X-Error-Code"] == "Unauthorized"
    status, headers, _ = raw(
        local_hub, "POST", f"/api/models/{repo}/commit/main", b"{}", {"Authorization": "Bearer hf_wrong"}
    )
    assert (status, headers["X-Error-Code"]) == (401, "Unauthorized")


def test_unexpected_error_is_a_json_500(local_hub, repo, monkeypatch):
    def boom(request):
        raise RuntimeError("bug")

    monkeypatch.setattr(local_hub.api, "refs", boom)
    status, headers, body = raw(local_hub, "GET", f"/api/models/{repo}/refs")
    assert (status, headers["X-Error-Code"]) == (500, "InternalError")
    assert "bug" not in body["error"]
    monkeypatch.undo()
    assert raw(local_hub, "GET", f"/api/models/{repo}/refs")[0] == 200
