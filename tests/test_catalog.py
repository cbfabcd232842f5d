"""The catalog's Pareto marks on variants with chosen numbers: some dominated, some tied, some on
another dataset; and the same through push + ``build_catalog`` on the local Hub."""

from __future__ import annotations

import shutil
import uuid

import pytest
from huggingface_hub import hf_hub_download

from hubtools.catalog import CatalogResult, Variant, build_catalog, mark_pareto
from hubtools.cli import main
from hubtools.push import push_run

from .publish_fixtures import (
    KD_QUANT_ROWS,
    KD_QUANT_STAGES,
    STUDENT_REF,
    TEACHER_REF,
    fake_runs,
    other_dataset_run,
    write_fake_run,
)


def variant(
    name: str, accuracy: float, latency_ms: float, size_mb: float, dataset: str = "clinc_oos (plus)"
) -> Variant:
    return Variant(
        repo_id=f"ns/{name}",
        recipe=name,
        model="m",
        format="pytorch",
        accuracy=accuracy,
        latency_ms=latency_ms,
        size_mb=size_mb,
        machine="cpu",
        license=None,
        base_model=None,
        dataset=dataset,
    )


def pareto_set(variants: list[Variant]) -> set[str]:
    mark_pareto(variants)
    return {v.recipe for v in variants if v.pareto}


def test_dominated_variants_are_not_marked():
    variants = [
        variant("accurate", 0.95, 10.0, 80.0),
        variant("fast", 0.93, 5.0, 40.0),
        variant("tiny", 0.90, 2.0, 20.0),
        variant("worse-than-fast", 0.92, 6.0, 45.0),  # beaten by "fast" on all three
        variant("slower-twin", 0.95, 12.0, 80.0),  # as accurate as "accurate", slower, same size
        variant("fast-twin", 0.93, 5.0, 40.0),  # equal to "fast": neither beats the other
    ]
    assert pareto_set(variants) == {"accurate", "fast", "fast-twin", "tiny"}


def test_variants_of_another_dataset_do_not_compete():
    variants = [variant("clinc", 0.95, 2.0, 20.0), variant("tickets", 0.50, 9.0, 90.0, dataset="support-tickets")]
    assert pareto_set(variants) == {"clinc", "tickets"}
    assert pareto_set([variant("a", 0.95, 2.0, 20.0), variant("b", 0.50, 9.0, 90.0)]) == {"a"}


@pytest.fixture(scope="module")
def namespace(local_hub, tmp_path_factory):
    """A namespace with kd-quant and kd-onnx-quant (a trade-off: neither beats the other), a
    variant both beat, and kd-quant's numbers on another dataset."""
    ns = f"catalog-{uuid.uuid4().hex[:8]}"
    runs = fake_runs()
    scope = tmp_path_factory.mktemp("outputs") / "clinc_oos-plus_teacher_00000000"
    shutil.copytree(runs["kd-quant"] / "quantize", scope / "kd-slow" / "quantize")
    slow = write_fake_run(
        scope,
        "kd-slow",
        {"teacher": TEACHER_REF, "student": STUDENT_REF},
        KD_QUANT_STAGES,
        "quantize",
        [*KD_QUANT_ROWS[:2], ("quantize", "pytorch-dynamic-int8", ["quantized_state_dict.pt"], 0.92, 30.0, 5.0)],
        paths={"student": runs["kd-quant"].parent / "kd" / "distill"},
    )
    for name, run_dir in {
        "kd-quant": runs["kd-quant"],
        "kd-onnx-quant": runs["kd-onnx-quant"],
        "kd-slow": slow,
        "tickets": other_dataset_run(),
    }.items():
        push_run(run_dir, repo_id=f"{ns}/{name}")
    return ns


def test_catalog_marks_exactly_the_pareto_front(namespace):
    result = build_catalog(namespace)
    repo_id, variants = result.repo_id, result.rows
    assert repo_id == f"{namespace}/catalog" and result.url
    marks = {v.repo_id.split("/")[1]: v.pareto for v in variants}
    assert marks == {"kd-quant": True, "kd-onnx-quant": True, "kd-slow": False, "tickets": True}
    assert {v.dataset for v in variants} == {"clinc_oos (plus)", "support-tickets"}
    readme = open(hf_hub_download(repo_id, "README.md")).read()
    rows = {
        line.split("|")[2].strip(): line.split("|")[1].strip()
        for line in readme.splitlines()
        if line.startswith(f"| **yes** | [{namespace}/") or line.startswith(f"|  | [{namespace}/")
    }
    assert {r.split("]")[0].split("/")[1]: mark for r, mark in rows.items()} == {
        "kd-quant": "**yes**",
        "kd-onnx-quant": "**yes**",
        "kd-slow": "",
        "tickets": "**yes**",
    }


def test_catalog_result_without_push_is_what_the_command_line_prints(namespace, capsys):
    pd = pytest.importorskip("pandas")
    result = build_catalog(namespace, push=False)
    assert isinstance(result, CatalogResult) and result.url is None and result.namespace == namespace
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == [v.repo_id for v in result.rows]
    assert frame["pareto"].tolist() == [v.pareto for v in result.rows] and "accuracy" in frame.columns
    assert main(["catalog", "--namespace", namespace, "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == result.readme.split("\n---\n", 1)[1].strip()
