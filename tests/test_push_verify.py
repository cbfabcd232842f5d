"""recipe -> push -> pipeline() in a fresh process -> ModelCard.load -> verify, through the local Hub;
a tampered card fails verify; a push hit by server errors is retried and lands as one commit
(more failures, through a fault-injecting proxy: test_push_network.py, test_verify_network.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard, hf_hub_download

from hubtools.catalog import build_catalog
from hubtools.cli import main
from hubtools.errors import HubRequestError, PublishedMetricsDifferError, PushFailedError
from hubtools.hubhttp import HubPolicy
from hubtools.push import publish, push_run
from hubtools.verify import verify_repo
from recipes.errors import RunFolderError

from .publish_fixtures import QUERY, fake_runs, published_runs


@pytest.fixture(scope="module")
def runs(seeded_hub):
    return published_runs(seeded_hub.url, seeded_hub.token)


@pytest.fixture
def no_wait() -> HubPolicy:
    """The default retries, without waiting between them."""
    return HubPolicy(sleep=lambda seconds: None)


def test_push_is_one_commit_with_every_file(runs, api):
    files = set(api.list_repo_files(runs.kdq_repo))
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "int8/quantized_state_dict.pt",
        "README.md",
        "recipe.yaml",
        "run.json",
        "benchmark.json",
        "layout.json",
        "accuracy_vs_latency.png",
    } <= files
    assert not any(f.startswith("onnx/") or f == "model_format.json" for f in files)
    commits = api.list_repo_commits(runs.kdq_repo)
    sha = json.loads(open(hf_hub_download(runs.kdq_repo, "run.json")).read())["recipe_sha256"]
    assert len(commits) == 2 and commits[0].title == f"Publish recipe kdq (sha256 {sha})"
    assert commits[0].commit_id in runs.kdq_url
    local = (runs.out / "kdq" / "benchmark" / "benchmark.json").read_bytes()
    assert open(hf_hub_download(runs.kdq_repo, "benchmark.json"), "rb").read() == local


def test_pipeline_loads_the_repo_in_a_fresh_process(runs):
    code = (
        "from transformers import pipeline; "
        f"print(pipeline('text-classification', model={runs.kdq_repo!r})({QUERY!r})[0]['label'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]
    labels = json.loads((runs.out / "kdq" / "distill" / "config.json").read_text())["id2label"].values()
    assert out.stdout.strip().splitlines()[-1] in labels


def test_card_loads_with_the_runs_numbers_and_lineage(runs):
    card = ModelCard.load(runs.kdq_repo)
    bench = json.loads((runs.out / "kdq" / "benchmark" / "benchmark.json").read_text())
    published = next(r for r in bench["models"] if r["name"] == "quantize")
    stated = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert stated["accuracy"] == published["accuracy"] and stated["recall"] == published["oos_recall"]
    # The teacher was published first, so it is the base; distillation makes this a fine-tune of it.
    assert card.data.base_model == runs.teacher_repo and card.data.base_model_relation == "finetune"
    assert ModelCard.load(runs.teacher_repo).data.base_model == "org/tiny-bert-publish"


def test_verify_passes_and_says_when_the_baseline_is_absent(runs, capsys):
    report = verify_repo(runs.kdq_repo, runs=2)
    assert report.passed, report.summary()
    assert not report.baseline_measured  # the teacher's weights are in the teacher's repo
    assert [c.name for c in report.rows if c.measured] == ["distill", "quantize"]
    assert main(["verify", runs.teacher_repo, "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "OK: every number" in out and "1.00x" in out  # the teacher is its own baseline: a ratio


def test_verify_measures_onnx_files_through_optimum(seeded_hub, new_repo_id):
    # A hand-written run: real ONNX files, made-up numbers, so the numbers cannot match.
    repo_id = new_repo_id("onnx")
    push_run(fake_runs()["kd-onnx-quant"], repo_id=repo_id)
    report = verify_repo(repo_id, runs=1)
    measured = {c.name: c.measured for c in report.rows if c.measured}
    assert set(measured) == {"student", "export", "quantize"} and report.baseline_measured is False
    assert measured["quantize"]["format"] == "onnx" and measured["export"]["n_test"] == 64
    assert not report.passed and all("accuracy" in p or "size" in p for p in report.problems), report.problems


def test_tampered_card_fails_verify(runs, api, new_repo_id, capsys):
    repo_id = new_repo_id("tampered")
    push_run(runs.out / "kdq", repo_id=repo_id)
    text = open(hf_hub_download(repo_id, "README.md")).read()
    bench = json.loads((runs.out / "kdq" / "benchmark" / "benchmark.json").read_text())
    accuracy = f"{next(r for r in bench['models'] if r['name'] == 'quantize')['accuracy']:.4f}"
    line = next(x for x in text.splitlines() if x.startswith("| quantize (published)"))
    forged = line.replace(f"| {accuracy} |", "| 0.9999 |")
    assert forged != line
    api.upload_file(path_or_fileobj=text.replace(line, forged).encode(), path_in_repo="README.md", repo_id=repo_id)
    report = verify_repo(repo_id, runs=2)
    assert not report.passed and any("0.9999" in p for p in report.problems), report.problems
    assert main(["verify", repo_id, "--runs", "2"]) == 5
    assert "MISMATCH" in capsys.readouterr().out


def test_push_refuses_to_change_published_metrics_without_overwrite(runs, api, new_repo_id):
    repo_id = new_repo_id("metrics")
    push_run(runs.out / "kdq", repo_id=repo_id)
    card = ModelCard.load(repo_id)
    card.data.eval_results[0].metric_value = 0.5  # as metadata_update(..., overwrite=True) would, minus its
    api.upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=repo_id)  # call out
    before = len(api.list_repo_commits(repo_id))
    with pytest.raises(PublishedMetricsDifferError, match="published 0.5"):
        push_run(runs.out / "kdq", repo_id=repo_id)
    assert len(api.list_repo_commits(repo_id)) == before
    push_run(runs.out / "kdq", repo_id=repo_id, overwrite=True)
    assert ModelCard.load(repo_id).data.eval_results[0].metric_value != 0.5


class Unavailable(HubRequestError):
    status = 503
    code = "ServiceUnavailable"


def fail_commits(monkeypatch, hub, failures: int, after_commit: bool = False) -> list[str]:
    """Make the local Hub answer the next ``failures`` commit POSTs with 503 (optionally after committing)."""
    real, calls = hub.api.commit, []

    def flaky(req):
        calls.append(req.route.repo_id)
        if len(calls) <= failures:
            if after_commit:
                real(req)
            raise Unavailable("Service unavailable (test)")
        return real(req)

    monkeypatch.setattr(hub.api, "commit", flaky)
    return calls


def test_push_retries_a_server_error_and_lands_one_commit(runs, api, local_hub, new_repo_id, monkeypatch, no_wait):
    repo_id = new_repo_id("retry")
    calls = fail_commits(monkeypatch, local_hub, failures=2)
    url = publish(runs.out / "kdq", repo_id, policy=no_wait).url
    commits = api.list_repo_commits(repo_id)
    assert len(calls) == 3 and len(commits) == 2 and commits[0].commit_id in url  # initial + ours
    assert "int8/quantized_state_dict.pt" in api.list_repo_files(repo_id)


def test_push_whose_reply_was_lost_is_not_committed_twice(runs, api, local_hub, new_repo_id, monkeypatch, no_wait):
    repo_id = new_repo_id("lost-reply")
    fail_commits(monkeypatch, local_hub, failures=1, after_commit=True)
    publish(runs.out / "kdq", repo_id, policy=no_wait)
    assert len(api.list_repo_commits(repo_id)) == 2


def test_push_that_keeps_failing_leaves_no_repo_behind(runs, api, local_hub, new_repo_id, monkeypatch, no_wait):
    repo_id = new_repo_id("down")
    fail_commits(monkeypatch, local_hub, failures=99)
    with pytest.raises(PushFailedError, match="nothing was committed"):
        publish(runs.out / "kdq", repo_id, policy=no_wait)
    assert not api.repo_exists(repo_id)  # the push created it, and deleted it again


def test_catalog_lists_the_namespace_with_dataset_and_starting_model(runs, api):
    # Which variants are Pareto-optimal is checked on chosen numbers in test_catalog.py.
    result = build_catalog("local")
    repo_id, variants = result.repo_id, result.rows
    assert repo_id == "local/catalog" and result.url and result.url.startswith(f"{api.endpoint}/{repo_id}/commit/")
    assert {runs.teacher_repo, runs.kdq_repo} <= {v.repo_id for v in variants}
    assert not any(v.repo_id.startswith("test/") for v in variants)  # only the namespace asked for
    ours = {v.repo_id: v for v in variants if v.repo_id in (runs.teacher_repo, runs.kdq_repo)}
    assert {(v.dataset, v.starting_model) for v in ours.values()} == {("clinc_oos (plus)", "org/tiny-bert-publish")}
    readme = open(hf_hub_download(repo_id, "README.md")).read()
    for v in variants:
        assert f"[{v.repo_id}]" in readme
    assert "| Pareto | Repo | Recipe | Dataset | Starting model |" in readme


def test_card_links_resolve_on_the_hub_that_serves_it(runs, local_hub):
    text = ModelCard.load(runs.teacher_repo).text
    assert f"[org/tiny-bert-publish]({local_hub.url}/org/tiny-bert-publish)" in text
    assert f"({local_hub.url}/datasets/clinc_oos)" in text and "huggingface.co" not in text
    assert runs.teacher_repo == "local/tiny-bert-publish-clinc_oos-plus-teacher"  # the default id names the data


def test_verify_against_a_hub_without_the_dataset_is_one_message(seeded_hub, new_repo_id, tmp_path):
    from .publish_fixtures import DATASET, KD_QUANT_ROWS, KD_QUANT_STAGES, STUDENT_REF, TEACHER_REF, write_fake_run

    kd_quant = fake_runs()["kd-quant"]
    scope = tmp_path / "no-such-data_teacher_00000000"
    shutil.copytree(kd_quant / "quantize", scope / "kd-quant" / "quantize")
    run_dir = write_fake_run(
        scope,
        "kd-quant",
        {"teacher": TEACHER_REF, "student": STUDENT_REF},
        KD_QUANT_STAGES,
        "quantize",
        KD_QUANT_ROWS,
        dataset={**DATASET, "id": "acme/no-such-dataset"},
        paths={"student": kd_quant.parent / "kd" / "distill"},
    )
    repo_id = new_repo_id("no-dataset")
    push_run(run_dir, repo_id=repo_id)
    out = subprocess.run(
        [sys.executable, "-m", "hubtools", "verify", repo_id, "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and out.stderr.startswith("error: Cannot load dataset 'acme/no-such-dataset'")


def test_verify_refuses_records_of_another_schema_version(seeded_hub, api, new_repo_id, capsys):
    repo_id = new_repo_id("schema")
    push_run(fake_runs()["kd-quant"], repo_id=repo_id)
    record = json.loads(open(hf_hub_download(repo_id, "run.json")).read())
    api.upload_file(
        path_or_fileobj=json.dumps({**record, "schema_version": 99}).encode(), path_in_repo="run.json", repo_id=repo_id
    )
    with pytest.raises(RunFolderError, match=f"{repo_id}: .*schema version 99"):
        verify_repo(repo_id, runs=1)
    assert main(["verify", repo_id, "--runs", "1"]) == 2
    assert "schema version 99" in capsys.readouterr().err
