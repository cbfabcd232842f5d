"""verify under a failing network judges what the Hub serves now, or nothing: a closed port or a
Hub that never answers is exit status 6 with "could not reach the Hub", never an OK or a
MISMATCH read from the local cache (tests/fault_proxy.py stands in front of the local Hub)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

from hubtools.errors import HubUnreachableError
from hubtools.hubhttp import HubPolicy
from hubtools.push import push_run
from hubtools.verify import verify_repo

from .fault_proxy import ERROR_500, HANG, FaultProxy, Rule, closed_port_url
from .publish_fixtures import fake_runs, published_runs

UNREACHABLE_EXIT = 6


@pytest.fixture
def policy(delays) -> HubPolicy:
    return HubPolicy(read_timeout=0.5, sleep=delays.append)


@pytest.fixture(scope="module")
def cached_repo(seeded_hub) -> str:
    """A pushed repo (a hand-written run), already in the local huggingface cache."""
    repo_id = "test/verify-network"
    push_run(fake_runs()["kd-quant"], repo_id=repo_id)
    snapshot_download(repo_id)
    return repo_id


def run_verify(repo_id: str, endpoint: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m hubtools verify`` against ``endpoint``, without retries (each would wait)."""
    return subprocess.run(
        [sys.executable, "-m", "hubtools", "verify", repo_id, "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_ENDPOINT": endpoint, "HUBTOOLS_RETRIES": "0", **env},
    )


def assert_refused(out: subprocess.CompletedProcess, endpoint: str, reason: str) -> None:
    assert out.returncode == UNREACHABLE_EXIT, out.stderr[-3000:]
    assert out.stderr.startswith(f"error: could not reach the Hub at {endpoint}: {reason}"), out.stderr[-3000:]
    assert "nothing was verified" in out.stderr and "Traceback" not in out.stderr
    assert "OK" not in out.stdout and "MISMATCH" not in out.stdout


def test_verify_refuses_a_closed_port_although_the_repo_is_cached(cached_repo):
    endpoint = closed_port_url()
    assert_refused(run_verify(cached_repo, endpoint), endpoint, "Connection refused")


def test_verify_refuses_a_hub_that_never_answers(cached_repo, local_hub):
    with FaultProxy(local_hub.url, [Rule(HANG)]) as silent:
        out = run_verify(cached_repo, silent.url, HUBTOOLS_READ_TIMEOUT="0.5")
    assert_refused(out, silent.url, "no answer within the timeout")


def test_verify_retries_before_it_refuses(cached_repo, local_hub, policy, delays):
    with FaultProxy(local_hub.url, [Rule(HANG)]) as silent:
        with pytest.raises(HubUnreachableError, match="no answer within the timeout .*after 5 tries") as refused:
            verify_repo(cached_repo, runs=1, endpoint=silent.url, policy=policy)
    assert refused.value.exit_code == UNREACHABLE_EXIT
    assert delays == [1.0, 2.0, 4.0, 8.0] and len(silent.hit) == 5


def test_verify_refuses_a_download_that_stops_midway(local_hub, policy, new_repo_id):
    # model_info answers; snapshot_download's own repo_info call fails, so it falls back on the
    # cached folder of that commit, which holds one file only.
    repo_id = new_repo_id("partial")
    push_run(fake_runs()["kd-quant"], repo_id=repo_id)
    hf_hub_download(repo_id, "README.md", revision=HfApi().model_info(repo_id).sha)
    with FaultProxy(local_hub.url, [Rule(ERROR_500, method="GET", path=r"/revision/")]) as faulty:
        with pytest.raises(HubUnreachableError, match=r"the download of .* stopped before .*nothing was verified"):
            verify_repo(repo_id, runs=1, endpoint=faulty.url, policy=policy)


def test_verify_judges_the_restored_files_not_the_cached_tampered_ones(seeded_hub, api, new_repo_id, policy):
    runs = published_runs(seeded_hub.url, seeded_hub.token)
    repo_id = new_repo_id("restored")
    push_run(runs.out / "kdq", repo_id=repo_id)
    original = open(hf_hub_download(repo_id, "benchmark.json")).read()
    bench = json.loads(original)
    bench["models"][-1]["accuracy"] = 0.1234
    api.upload_file(path_or_fileobj=json.dumps(bench).encode(), path_in_repo="benchmark.json", repo_id=repo_id)
    tampered = snapshot_download(repo_id)  # the tampered commit is now in the local cache
    assert "0.1234" in open(f"{tampered}/benchmark.json").read()
    api.upload_file(path_or_fileobj=original.encode(), path_in_repo="benchmark.json", repo_id=repo_id)

    with pytest.raises(HubUnreachableError, match="Connection refused"):
        verify_repo(repo_id, runs=1, endpoint=closed_port_url(), policy=policy)
    report = verify_repo(repo_id, runs=1, policy=policy)
    assert report.passed, report.summary()
