"""huggingface_hub's own client against the local Hub: uploads (regular and LFS), history,
downloads by branch and by commit, listings, private repos."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFolder
from requests import HTTPError

BIG = 10 * 1024 * 1024 + 4096  # over the 10 MB line: goes through the LFS batch API


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_upload_change_delete_and_download_history(local_hub, new_repo_id, tmp_path):
    api = HfApi()
    repo_id = new_repo_id("roundtrip")
    assert api.create_repo(repo_id).repo_id == repo_id
    api.create_repo(repo_id, exist_ok=True)
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(repo_id)
    assert exists.value.response.status_code == 409

    weights = os.urandom(BIG)
    first = api.upload_folder(
        repo_id=repo_id,
        folder_path=write_files(
            tmp_path / "v1",
            {
                "config.json": b'{"v": 1}',
                "notes/a.txt": b"a",
                "notes/b.txt": b"b",
                "model.safetensors": weights,
            },
        ),
        commit_message="v1",
    )
    second = api.upload_folder(
        repo_id=repo_id,
        folder_path=write_files(tmp_path / "v2", {"config.json": b'{"v": 2}', "model.safetensors": weights}),
        delete_patterns=["notes/*"],
        commit_message="v2",
    )
    assert second.oid != first.oid

    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "config.json", "model.safetensors"]
    assert [c.commit_id for c in api.list_repo_commits(repo_id)][:2] == [second.oid, first.oid]
    assert [c.title for c in api.list_repo_commits(repo_id)] == ["v2", "v1", "initial commit"]

    info = api.model_info(repo_id, files_metadata=True)
    assert info.sha == second.oid
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert siblings["config.json"].lfs is None

    assert Path(hf_hub_download(repo_id, "config.json")).read_bytes() == b'{"v": 2}'
    assert Path(hf_hub_download(repo_id, "config.json", revision=first.oid)).read_bytes() == b'{"v": 1}'
    assert Path(hf_hub_download(repo_id, "model.safetensors")).read_bytes() == weights

    new = Path(snapshot_download(repo_id))
    old = Path(snapshot_download(repo_id, revision=first.oid))
    assert not (new / "notes").exists()
    assert (old / "notes" / "b.txt").read_bytes() == b"b"
    assert (old / "config.json").read_bytes() == b'{"v": 1}'
    assert Path(snapshot_download(repo_id, revision="main")) == new


def test_tree_paths_info_and_ranges(local_hub, new_repo_id, tmp_path):
    api = HfApi()
    repo_id = new_repo_id("tree")
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=write_files(tmp_path, {"README.md": b"# hi\n", "data/x/part.csv": b"a,b\n1,2\n"}),
    )
    tree = list(api.list_repo_tree(repo_id, repo_type="dataset", recursive=True, expand=True))
    folders = sorted(e.path for e in tree if isinstance(e, RepoFolder))
    assert folders == ["data", "data/x"]
    assert all(e.last_commit is not None for e in tree)
    top = [e.path for e in api.list_repo_tree(repo_id, repo_type="dataset")]
    assert sorted(top) == [".gitattributes", "README.md", "data"]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="nothing/here", repo_type="dataset"))

    infos = api.get_paths_info(repo_id, ["data/x/part.csv", "data", "missing"], repo_type="dataset")
    assert [(i.path, type(i).__name__) for i in infos] == [("data/x/part.csv", "RepoFile"), ("data", "RepoFolder")]

    with HfFileSystem().open(f"datasets/{repo_id}/data/x/part.csv", "rb") as f:
        f.seek(4)
        assert f.read(3) == b"1,2"


def test_private_repo_needs_token_to_read(local_hub, new_repo_id):
    api = HfApi()
    repo_id = new_repo_id("private")
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=repo_id)

    assert api.model_info(repo_id).private is True
    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "s.txt", token=False)
    assert Path(hf_hub_download(repo_id, "s.txt")).read_bytes() == b"secret"


def test_whoami_and_delete_repo(local_hub, new_repo_id):
    api = HfApi()
    assert api.whoami()["name"] == "local"
    with pytest.raises(HTTPError) as bad:
        HfApi(token="hf_wrong").whoami()
    assert bad.value.response.status_code == 401

    repo_id = new_repo_id("gone")
    api.create_repo(repo_id)
    api.delete_repo(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id)


def test_html_pages_list_repos_and_escape_names(local_hub, new_repo_id):
    import urllib.request

    repo_id = new_repo_id("page")
    HfApi().create_repo(repo_id)
    HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="<b>.txt", repo_id=repo_id)
    index = urllib.request.urlopen(f"{local_hub.url}/").read().decode()
    assert f">{repo_id}</a>" in index
    page = urllib.request.urlopen(f"{local_hub.url}/{repo_id}").read().decode()
    assert "&lt;b&gt;.txt" in page and "<b>" not in page
