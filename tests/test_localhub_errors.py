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
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from hypothesis import given, settings
from hypothesis import strategies as st

from hubtools.errors import InvalidRepoIdError
from hubtools.localhub import DEV_TOKEN
from hubtools.localhub.naming import check_repo_id

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


@pytest.mark.parametrize("name", ["a.", "a-", ".a", "-a", "org/a.", "org-/a", "a--b", "a..b", "a.git"])
def test_repo_names_huggingface_hub_refuses_are_refused(local_hub, name):
    with pytest.raises(HFValidationError):
        validate_repo_id(name)
    namespace, _, short = name.rpartition("/")
    body = json.dumps({"name": short, **({"organization": namespace} if namespace else {})}).encode()
    status, headers, reply = raw(local_hub, "POST", "/api/repos/create", body, AUTH)
    assert (status, headers["X-Error-Code"]) == (400, "InvalidRepoId")
    assert "ending with a letter, digit or '_'" in reply["error"]


@settings(max_examples=300, deadline=None)
@given(repo_id=st.text(alphabet="ab9_.-/", min_size=1, max_size=8))
def test_repo_ids_follow_validate_repo_id(repo_id):
    try:
        validate_repo_id(repo_id)
        client_takes = True
    except HFValidationError:
        client_takes = False
    try:
        check_repo_id(repo_id)
        server_takes = True
    except InvalidRepoIdError:
        server_takes = False
    assert server_takes == client_takes


@pytest.mark.parametrize(
    "path", ["a\nb.txt", "a\rb.txt", "a\tb.txt", "a\x7fb.txt", "evil\u202etxt.exe", "a\u2067b", "x/\u200eb", "a\udcff"]
)
def test_file_names_with_controls_are_refused(local_hub, repo, path):
    lines = [
        {"key": "header", "value": {"summary": "controls"}},
        {"key": "file", "value": {"path": path, "content": base64.b64encode(b"x").decode()}},
    ]
    payload = "\n".join(json.dumps(line) for line in lines).encode()
    status, headers, body = raw(local_hub, "POST", f"/api/models/{repo}/commit/main", payload, AUTH)
    assert (status, headers["X-Error-Code"]) == (400, "InvalidPath")
    assert f"U+{ord(next(c for c in path if not c.isprintable())):04X}" in body["error"]
    preupload = json.dumps({"files": [{"path": path, "size": 1}]}).encode()
    status, headers, _ = raw(local_hub, "POST", f"/api/models/{repo}/preupload/main", preupload, AUTH)
    assert (status, headers["X-Error-Code"]) == (400, "InvalidPath")
    assert path not in HfApi().list_repo_files(repo)
