"""Concurrent writers: commits racing each other lose nothing, and deleting a repo is atomic
for readers and committers: they find the whole repo or a 404 (a commit: a 404 or a 409),
never a 500 from a file that vanished under them."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from hubtools.errors import RepoNotFoundError, RevisionNotFoundError
from hubtools.localhub import Storage
from hubtools.localhub import storage as storage_module
from hubtools.localhub.storage import AddFile
from tests.test_localhub_robustness import REPO, as_json, commit_file, exchange, post, request, start_hub


@pytest.fixture
def storage(tmp_path) -> Storage:
    storage = Storage(tmp_path)
    storage.create_repo("model", "org/gone")
    return storage


def test_a_repo_read_after_its_delete_is_not_found(storage):
    repo = storage.get_repo("model", "org/gone")
    head = storage.resolve(repo, "main")
    storage.delete_repo("model", "org/gone")

    with pytest.raises(RepoNotFoundError):
        storage.branches(repo)
    with pytest.raises(RevisionNotFoundError):
        storage.get_commit(repo, head)
    with pytest.raises(RepoNotFoundError):
        storage.commit(repo, "main", [AddFile("a.txt", storage.regular_entry(b"a"))], "late")
    with pytest.raises(RepoNotFoundError):
        storage.delete_repo("model", "org/gone")
    assert not (storage.data_dir / "repos" / "models" / "org--gone").exists(), "the late commit made no folder"
    assert not list((storage.data_dir / "trash").iterdir())


def test_listing_skips_a_repo_deleted_while_listing(storage, monkeypatch):
    storage.create_repo("model", "org/kept")
    read_json, deleting = storage_module.read_json, ["org/gone"]

    def delete_first(path):
        """Read a repo.json, but delete org/gone just before its own is read."""
        if path.parent.name == "org--gone" and deleting:
            storage.delete_repo("model", deleting.pop())
        return read_json(path)

    monkeypatch.setattr(storage_module, "read_json", delete_first)
    assert [r.repo_id for r in storage.list_repos()] == ["org/kept"]


def test_a_delete_cut_short_is_finished_at_start_up(tmp_path):
    left = tmp_path / "trash" / "0123" / "commits" / "x.json"
    left.parent.mkdir(parents=True)
    left.write_text("{}")
    Storage(tmp_path)
    assert not (tmp_path / "trash" / "0123").exists()


def test_deletes_racing_reads_and_commits_give_no_5xx(tmp_path):
    hub = start_hub(tmp_path)
    statuses: Counter = Counter()
    stop = threading.Event()

    def record(answer) -> None:
        statuses["no reply" if answer is None else answer.status] += 1

    def recreate() -> None:
        while not stop.is_set():
            namespace, name = REPO.split("/")
            record(exchange(hub.port, post("/api/repos/create", as_json({"name": name, "organization": namespace}))))
            record(exchange(hub.port, request("DELETE", "/api/repos/delete", as_json({"name": REPO}))))

    def read_and_commit(n: int) -> None:
        for i in range(40):
            for target in ("/api/models", f"/api/models/{REPO}", f"/api/models/{REPO}/commits/main", f"/{REPO}"):
                record(exchange(hub.port, request("GET", target)))
            record(commit_file(hub, f"f{n}-{i}.txt", b"x"))

    deleter = threading.Thread(target=recreate)
    readers = [threading.Thread(target=read_and_commit, args=(n,)) for n in range(3)]
    try:
        deleter.start()
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
    finally:
        stop.set()
        deleter.join()
        hub.stop()
    by_status = dict(sorted(statuses.items(), key=str))
    print(f"\nlocal Hub delete race: {sum(statuses.values())} requests, by status {by_status}")
    assert not [s for s in statuses if s == "no reply" or s >= 500], statuses
    assert statuses[200] and statuses[404], "the race did hit both states"


def test_concurrent_commits_lose_nothing(tmp_path):
    hub = start_hub(tmp_path)
    namespace, name = REPO.split("/")
    assert (
        exchange(hub.port, post("/api/repos/create", as_json({"name": name, "organization": namespace}))).status == 200
    )
    paths = [f"t{n}/f{i}.txt" for n in range(6) for i in range(8)]

    def commit_all(n: int) -> list:
        return [commit_file(hub, path, path.encode()) for path in paths if path.startswith(f"t{n}/")]

    try:
        with ThreadPoolExecutor(6) as pool:
            answers = [a for batch in pool.map(commit_all, range(6)) for a in batch]
        assert all(a is not None and a.status == 200 for a in answers), answers
        repo = hub.storage.get_repo("model", REPO)
        head = hub.storage.get_commit(repo, hub.storage.resolve(repo, "main"))
        assert sorted(p for p in head.tree if p.startswith("t")) == sorted(paths)
        assert len(list(hub.storage.history(repo, head.id))) == len(paths) + 1  # and the initial commit
    finally:
        hub.stop()
