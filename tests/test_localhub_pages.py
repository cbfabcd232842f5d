"""The HTML pages render whatever a repo holds: a lone surrogate (JSON carries ``"\\udcff"``) in a
commit title or a file name shows as ``\\udcff`` instead of failing the page with a 500."""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

from huggingface_hub import HfApi

from hubtools.localhub import pages
from hubtools.localhub.messages import Reply
from hubtools.localhub.storage import Commit, RepoRecord
from hubtools.localhub.trees import Entry
from tests.test_localhub_errors import AUTH, raw


def page_of(hub, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(urlsplit(hub.url).netloc, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_page_of_a_commit_titled_with_a_lone_surrogate(local_hub, new_repo_id):
    repo_id = new_repo_id("surrogate-title")
    HfApi().create_repo(repo_id)
    lines = [
        {"key": "header", "value": {"summary": "title \udcff"}},
        {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"a").decode()}},
    ]
    payload = "\n".join(json.dumps(line) for line in lines).encode()  # ensure_ascii: "\udcff" as an escape
    assert raw(local_hub, "POST", f"/api/models/{repo_id}/commit/main", payload, AUTH)[0] == 200

    status, page = page_of(local_hub, f"/{repo_id}")
    assert status == 200
    assert "title \\udcff" in page
    assert [c.title for c in HfApi().list_repo_commits(repo_id)][0] == "title \udcff"


def test_page_lists_a_file_named_with_a_lone_surrogate(local_hub):
    """Commits refuse such names now; a data dir from before may still hold one."""
    entry = Entry(sha256="0" * 64, size=1, lfs=False, sha1="0" * 40)
    commit = Commit("1" * 40, (), "t", "", "local", "2024-01-01T00:00:00.000Z", {"a\udcff.txt": entry})
    reply = Reply.html(pages.repo_page(local_hub.storage, RepoRecord("model", "x/y", False, ""), commit))
    assert b">a\\udcff.txt</a>" in reply.body
    assert b'href="/x/y/resolve/' + b"1" * 40 + b'/a%5Cudcff.txt"' in reply.body
