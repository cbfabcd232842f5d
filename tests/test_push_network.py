"""push under a failing network: a fault-injecting proxy (tests/fault_proxy.py) in front of the
local Hub answers chosen requests with 5xx, 429 + Retry-After, a dropped connection or silence.
Every idempotent call is retried, a commit lands once, and no empty repo is left behind. The
retry delays are recorded by an injected ``sleep``, never waited for."""

from __future__ import annotations

import pytest
import requests
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError

from hubtools.errors import PushFailedError, UsageError
from hubtools.hubhttp import HubPolicy, is_transient
from hubtools.push import publish

from .fault_proxy import DROP, ERROR_500, HANG, FaultProxy, Rule, busy, closed_port_url
from .publish_fixtures import fake_runs

COMMIT = r"/commit/"
# The Hub's API and LFS batch calls. LFS object PUTs are left alone: huggingface_hub retries
# those itself (http_backoff), with real sleeps.
HUB_API = r"^/(api|test)/"
SEED = 1  # draws 500s for repo_exists, create_repo (three times running) and repo_info in both modes


@pytest.fixture(scope="module")
def run_dir():
    return fake_runs()["kd-quant"]


@pytest.fixture
def policy(delays) -> HubPolicy:
    """Default retries, a short read timeout; the delays are recorded, not slept."""
    return HubPolicy(read_timeout=1.0, sleep=delays.append)


@pytest.fixture
def proxy(local_hub, monkeypatch):
    """``proxy(*rules)``: a FaultProxy in front of the local Hub, where push sends its requests
    (``constants.ENDPOINT``, which huggingface_hub also parses commit URLs against); stopped after the test."""
    started = []

    def start(*rules: Rule) -> FaultProxy:
        started.append(FaultProxy(local_hub.url, list(rules)).__enter__())
        monkeypatch.setattr(constants, "ENDPOINT", started[-1].url)
        return started[-1]

    yield start
    for p in started:
        p.close()


def assert_published_once(api: HfApi, repo_id: str, url: str) -> None:
    commits = api.list_repo_commits(repo_id)
    assert len(commits) == 2 and commits[0].commit_id in url  # the Hub's initial commit + ours
    assert {"README.md", "benchmark.json", "int8/quantized_state_dict.pt"} <= set(api.list_repo_files(repo_id))


@pytest.mark.parametrize("lost_reply", [False, True], ids=["refused", "reply-lost"])
def test_push_lands_one_commit_through_30_percent_server_errors(run_dir, api, proxy, policy, delays, lost_reply):
    # lost_reply: the request reached the Hub and only its reply became a 500, so every retried
    # call must be idempotent (create_repo, uploads) and the commit must not land twice.
    faulty = proxy(Rule(ERROR_500, path=HUB_API, fraction=0.3, seed=SEED, after=lost_reply))
    repo_id = f"test/flaky-{'reply-lost' if lost_reply else 'refused'}"  # fixed: the paths are part of the draw
    pushed = publish(run_dir, repo_id, policy=policy)
    assert_published_once(api, repo_id, pushed.url)
    assert {"GET", "POST"} <= {method for method, _, _ in faulty.hit}  # reads and writes failed, not only the commit
    assert delays and set(delays) <= {1.0, 2.0, 4.0, 8.0}


def test_push_honours_retry_after_on_429_and_503(run_dir, api, proxy, policy, delays, new_repo_id):
    faulty = proxy(
        Rule(busy(429, retry_after="7"), method="GET", times=1),
        Rule(busy(503, retry_after="3"), method="POST", path=COMMIT, times=1),
        Rule(busy(503, retry_after="3600"), method="GET", path=r"/api/models/test/busy-", times=1),
    )
    repo_id = new_repo_id("busy")
    pushed = publish(run_dir, repo_id, policy=policy)
    assert_published_once(api, repo_id, pushed.url)
    assert [status for _, _, status in faulty.hit] == [429, 503, 503]
    assert delays == [7.0, 60.0, 3.0]  # as asked; an hour is cut to max_retry_after


def test_push_retries_dropped_connections_and_silence(run_dir, api, proxy, policy, delays, new_repo_id):
    # create_commit has no timeout of its own: the policy's read timeout (1 s here) ends the wait.
    faulty = proxy(
        Rule(DROP, method="GET", times=2),
        Rule(HANG, method="POST", path=r"/preupload/", times=1),
    )
    repo_id = new_repo_id("silent")
    pushed = publish(run_dir, repo_id, policy=policy)
    assert_published_once(api, repo_id, pushed.url)
    faulty.close()  # the hung request is logged once the proxy notices the client gave up
    assert [status for _, _, status in faulty.hit] == ["drop", "drop", "hang"]
    assert delays == [1.0, 2.0, 1.0]


def test_push_that_fails_for_good_leaves_no_empty_repo(run_dir, api, proxy, policy, delays, new_repo_id):
    faulty = proxy(Rule(ERROR_500, method="POST", path=COMMIT))
    repo_id = new_repo_id("down")
    with pytest.raises(PushFailedError, match="failed 5 times .*HTTP 500.*nothing was committed"):
        publish(run_dir, repo_id, policy=policy)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert ("DELETE", "/api/repos/delete", 200) in faulty.log
    assert not api.repo_exists(repo_id)


def test_push_that_fails_leaves_a_repo_it_did_not_create(run_dir, api, proxy, policy, new_repo_id):
    repo_id = new_repo_id("existing")
    api.create_repo(repo_id)
    faulty = proxy(Rule(ERROR_500, method="POST", path=COMMIT))
    with pytest.raises(PushFailedError):
        publish(run_dir, repo_id, policy=policy)
    assert len(api.list_repo_commits(repo_id)) == 1 and not any(m == "DELETE" for m, _, _ in faulty.log)


def test_push_to_a_closed_port_is_one_message(run_dir, policy, delays, new_repo_id, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", closed_port_url())
    with pytest.raises(
        PushFailedError, match=r"Cannot reach http://127\.0\.0\.1:\d+ \(Connection refused after 5 tries"
    ):
        publish(run_dir, new_repo_id("closed"), policy=policy)
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_a_refusal_is_not_retried(run_dir, proxy, policy, delays, new_repo_id):
    faulty = proxy(Rule(busy(403, retry_after="1"), method="GET"))
    with pytest.raises(PushFailedError, match="refused the push"):
        publish(run_dir, new_repo_id("refused"), policy=policy)
    assert delays == [] and len(faulty.hit) == 1


def test_transient_failures_are_found_through_wrapping_errors():
    refused = requests.ConnectionError("refused")
    try:
        raise RuntimeError("Error while uploading 'model.safetensors' to the Hub.") from refused
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("bad value"))
    response = requests.Response()
    response.status_code = 404
    assert not is_transient(HfHubHTTPError("not found", response=response))


def test_policy_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HUBTOOLS_READ_TIMEOUT", "2.5")
    monkeypatch.setenv("HUBTOOLS_RETRIES", "0")
    policy = HubPolicy.from_env()
    assert policy.timeout == (10.0, 2.5) and policy.tries == 1
    monkeypatch.setenv("HUBTOOLS_RETRIES", "two")
    with pytest.raises(UsageError, match="HUBTOOLS_RETRIES='two' is not a whole number >= 0"):
        HubPolicy.from_env()
