"""Cards state every accuracy with its uncertainty and in the Hub's current formats: intervals in
the table, one model-index block per metric, ``.eval_results/*.yaml`` that survive push -> pull,
and verify holds the re-measured numbers against them."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import ModelCard, hf_hub_download, snapshot_download

from hubtools.card import EVAL_METRICS, parse_benchmark_table
from hubtools.evalresults import EVAL_RESULTS_DIR, read_eval_results, task_id
from hubtools.push import push_run
from hubtools.verify import verify_repo

from .publish_fixtures import published_runs


@pytest.fixture(scope="module")
def runs(seeded_hub):
    return published_runs(seeded_hub.url, seeded_hub.token)


def final_row(runs) -> dict:
    bench = json.loads((runs.out / "kdq" / "benchmark" / "benchmark.json").read_text())
    return next(r for r in bench["models"] if r["name"] == "quantize")


def test_the_table_states_intervals_and_says_what_they_mean(runs):
    text = open(hf_hub_download(runs.kdq_repo, "README.md")).read()
    rows = parse_benchmark_table(text)
    row, cells = final_row(runs), rows["quantize"]
    low, high = row["intervals"]["accuracy"]
    assert cells["Accuracy 95% CI"] == f"[{low:.4f}, {high:.4f}]"
    paired = row["vs_baseline"]["paired"]["accuracy"]
    assert cells["Δ 95% paired CI"] == f"[{paired['low']:+.4f}, {paired['high']:+.4f}]"
    assert cells["McNemar p"] == f"{paired['p_value']:.3g}" and cells["OOS AUROC"] == f"{row['oos_auroc']:.4f}"
    assert "A 95% CI is the range that 95 of 100 such test sets would put the true value in" in text


def test_model_index_has_one_block_per_metric(runs):
    text = open(hf_hub_download(runs.kdq_repo, "README.md")).read()  # as served, not re-serialized
    blocks = yaml.safe_load(text.split("---")[1])["model-index"][0]["results"]
    card = ModelCard(text)
    row = final_row(runs)
    expected = [(metric_type, row[metric]) for metric, metric_type, _ in EVAL_METRICS if metric in row]
    assert [(b["metrics"][0]["type"], b["metrics"][0]["value"]) for b in blocks] == expected
    assert all(len(b["metrics"]) == 1 and b["source"]["name"] == "benchmark.json" for b in blocks)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == dict(expected)  # it parses back


def test_eval_results_files_survive_push_and_pull(runs, tmp_path):
    folder = snapshot_download(runs.kdq_repo, local_dir=tmp_path / "pulled")
    found = read_eval_results(folder)
    row = final_row(runs)
    metrics = [(metric, metric_type) for metric, metric_type, _ in EVAL_METRICS if metric in row]
    assert sorted(found) == sorted(f"clinc_oos-{task_id('plus', t)}.yaml" for _, t in metrics)
    for metric, metric_type in metrics:
        entry = found[f"clinc_oos-{task_id('plus', metric_type)}.yaml"]
        assert entry["dataset"] == {"id": "clinc_oos", "task_id": task_id("plus", metric_type)}
        assert entry["value"] == row[metric] and entry["source"]["url"].endswith("/blob/main/benchmark.json")
        assert len(entry["date"]) == 10 and ("95% interval" in entry["notes"]) == (metric in row["intervals"])


def test_verify_checks_the_eval_results_and_notes_numbers_within_their_interval(runs, api, new_repo_id):
    repo_id = new_repo_id("evalresults")
    push_run(runs.out / "kdq", repo_id=repo_id)
    assert verify_repo(repo_id, runs=2).passed
    name = f"{EVAL_RESULTS_DIR}/clinc_oos-{task_id('plus', 'accuracy')}.yaml"
    entry = yaml.safe_load(open(hf_hub_download(repo_id, name)).read())
    entry[0]["value"] = 0.123
    api.upload_file(path_or_fileobj=yaml.safe_dump(entry).encode(), path_in_repo=name, repo_id=repo_id)
    report = verify_repo(repo_id, runs=2)
    assert not report.passed and any(".eval_results states accuracy 0.123" in p for p in report.problems)
