"""Runs for the publishing tests, made once per test process and shared by the test modules.

* :func:`published_runs`: a tiny ``teacher`` (fine-tune 1 epoch) and ``kdq`` (distil 1 epoch
  -> PyTorch dynamic int8) run through the real :class:`recipes.engine.runner.Runner` on the seeded
  local Hub, both pushed with :func:`hubtools.push.push_run`.
* :func:`fake_runs`: run folders written by hand (no training) through :mod:`recipes.runfolder`'s
  records, in the runner's ``<root>/<scope>/<recipe>`` layout, with a fixed ``benchmark.json``:
  ``kd-quant`` (int8 published) and ``kd-onnx-quant`` (ONNX int8 published), with real tiny
  weights so their usage snippets can run.
* :func:`other_dataset_run`: ``kd-quant`` again, on a local dataset folder that is not CLINC.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from recipes.runfolder import BenchmarkResult, RunFolder, RunRecord, StageEntry, hash_outputs
from recipes.stages import STAGE_TYPES

from .tiny import clinc_dataset, tiny_bert, write_recipe

BASE_REPO = "org/tiny-bert-publish"
QUERY = "What is the pin number for my account?"


# --- real runs through the runner -------------------------------------------------------------


@dataclass
class PublishedRuns:
    out: Path  # the plan's scope folder, <output root>/<scope>: holds teacher/ and kdq/
    teacher_repo: str
    kdq_repo: str
    teacher_url: str
    kdq_url: str


def _recipe(name: str, models: dict, stages: list[dict], publish: str) -> dict:
    return {
        "name": name,
        "description": f"Tiny {name} for the publishing tests.",
        "dataset": clinc_dataset(64, 64, 64, eval_on_train=True, id="clinc_oos", oos_label="oos"),
        "models": models,
        "stages": stages,
        "publish": {"model": publish},
    }


FAST = {"epochs": 1, "learning_rate": 3.0e-3, "batch_size": 32, "warmup_ratio": 0.0}
BENCH = {"name": "benchmark", "type": "benchmark", "warmup": 1, "runs": 3, "threads": 1}


@functools.cache
def published_runs(hub_url: str, token: str) -> PublishedRuns:
    """``teacher`` and ``kdq`` run and pushed (cached: one run per test process, whichever module
    asks first), under the tests' temporary HF_HOME parent, which conftest removes at the end."""
    from huggingface_hub import HfApi

    from hubtools.push import push_run
    from recipes.engine.runner import Runner
    from recipes.plan.loader import load_recipe

    root = Path(os.environ["HF_HOME"]).parent / "publish-runs"
    api = HfApi(endpoint=hub_url, token=token)
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=tiny_bert(root / "tiny-bert"))
    recipes = {
        "teacher": _recipe(
            "teacher",
            {"base": BASE_REPO},
            [{"name": "finetune", "type": "finetune", "input": "base", **FAST}, {**BENCH, "models": ["finetune"]}],
            "finetune",
        ),
        "kdq": _recipe(
            "kdq",
            {"teacher": {"recipe": "teacher", "stage": "finetune"}},
            [
                {"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [1], **FAST},
                {"name": "quantize", "type": "quantize-dynamic", "input": "distill"},
                {**BENCH, "models": ["teacher", "distill", "quantize"], "baseline": "teacher"},
            ],
            "quantize",
        ),
    }
    for name, data in recipes.items():
        write_recipe(root, data, f"{name}.yaml")
    runner = Runner(output_root=root / "outputs")
    runner.run(load_recipe(str(root / "kdq.yaml")))
    scope_dir = runner.runs["kdq"].out_dir.parent
    teacher_url = push_run(scope_dir / "teacher")
    kdq_url = push_run(scope_dir / "kdq")
    return PublishedRuns(
        scope_dir,
        "local/tiny-bert-publish-clinc_oos-plus-teacher",
        "local/tiny-bert-publish-clinc_oos-plus-kdq",
        teacher_url,
        kdq_url,
    )


# --- hand-written runs -----------------------------------------------------------------------------


def bench_row(name: str, fmt: str, files: list[str], accuracy: float, size: float, mean: float) -> dict:
    return {
        "name": name,
        "format": fmt,
        "files": files,
        "accuracy": accuracy,
        "n_test": 64,
        "size_mb": size,
        "latency_ms": {"mean": mean, "std": mean / 7.3, "p50": mean * 0.97, "p90": mean * 1.2, "p99": mean * 1.61},
    }


def with_ratios(rows: list[dict], baseline: str) -> list[dict]:
    base = next(r for r in rows if r["name"] == baseline)
    for r in rows:
        r["vs_baseline"] = {
            "speedup": base["latency_ms"]["mean"] / r["latency_ms"]["mean"],
            "size_ratio": r["size_mb"] / base["size_mb"],
            "accuracy_delta": r["accuracy"] - base["accuracy"],
        }
    return rows


MACHINE = {
    "cpu": "Fixture CPU @ 2.0GHz",
    "cores": 8,
    "threads": 4,
    "platform": "Linux-fixture",
    "python": "3.11.7",
    "libraries": {"torch": "2.13.0+cpu", "transformers": "4.57.6", "onnxruntime": "1.32.0"},
}
DATASET = {
    "id": "clinc_oos",
    "config": "plus",
    "revision": None,
    "text_column": "text",
    "label_column": "intent",
    "splits": {"train": "train", "eval": "validation", "test": "test"},
    "max_samples": {"train": None, "eval": None, "test": 64},
    "split_used": "test",
}
TEACHER_ROW = ("teacher", "pytorch", ["model.safetensors"], 0.9485454545454546, 86.7, 12.345678)
STUDENT_ROW = ("student", "pytorch", ["model.safetensors"], 0.9301818181818182, 43.51, 6.0712)
KD_QUANT_ROWS = [
    TEACHER_ROW,
    STUDENT_ROW,
    ("quantize", "pytorch-dynamic-int8", ["quantized_state_dict.pt"], 0.9287272727272727, 19.05, 3.4251),
]
KD_ONNX_ROWS = [
    TEACHER_ROW,
    STUDENT_ROW,
    ("export", "onnx", ["model.onnx"], 0.9301818181818182, 43.6, 4.012),
    ("quantize", "onnx", ["model_quantized.onnx"], 0.9281818181818182, 11.2, 2.0051),
]


def write_fake_run(
    scope_dir: Path,
    recipe: str,
    models: dict,
    stages: list[dict],
    final: str,
    rows: list[tuple],
    dataset: dict = DATASET,
    paths: dict[str, Path] | None = None,
) -> Path:
    """A finished run folder ``<scope_dir>/<recipe>`` written through the run-folder records:
    ``run.json``, ``recipe.yaml`` and the benchmark stage's ``benchmark.json`` (``rows``: see
    :func:`bench_row`). The stage folders must hold their models already. ``paths``: where a
    ``models:`` entry is on disk (default: its recipe's stage folder in ``scope_dir``)."""
    folder = RunFolder(Path(scope_dir) / recipe, Path(scope_dir).name)
    folder.path.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"name": recipe, "models": models, "stages": stages}, sort_keys=False)
    resolved = {
        "name": recipe,
        "description": f"Fixture {recipe}.",
        "seed": 42,
        "dataset": dataset,
        "models": models,
        "stages": stages,
        "publish": {"model": final},
    }
    paths = paths or {name: Path(scope_dir) / src["recipe"] / src["stage"] for name, src in models.items()}
    model_paths = {name: {"path": str(path), "fingerprint": "x"} for name, path in paths.items()}
    bench_dir = folder.stage_dir(next(s["name"] for s in stages if s["type"] == "benchmark"))
    bench_dir.mkdir(exist_ok=True)
    BenchmarkResult(
        baseline="teacher",
        query=QUERY,
        warmup=10,
        runs=100,
        dataset=dataset,
        machine=MACHINE,
        models=with_ratios([bench_row(*r) for r in rows], "teacher"),
    ).write(bench_dir)
    entries = []
    for s in stages:
        stage_dir = folder.stage_dir(s["name"])
        if s["type"] != "benchmark":
            model_paths[s["name"]] = {"path": str(stage_dir), "fingerprint": "x"}
        refs = {"input": s["input"]} if "input" in s else {m: m for m in s.get("models", [])}
        entries.append(
            StageEntry(
                name=s["name"],
                type=s["type"],
                status="ran",
                fingerprint="x",
                wall_s=1.0,
                run_wall_s=1.0,
                refs=refs,
                inputs={},
                outputs=hash_outputs(stage_dir) if stage_dir.is_dir() else {},
                metrics={},
                publishing=dataclasses.asdict(STAGE_TYPES[s["type"]].publishing),  # as the runner records it
            ).__dict__
        )
    folder.write_recipe(yaml.safe_dump(resolved, sort_keys=False))
    folder.write_run(
        RunRecord(
            recipe=recipe,
            scope=folder.scope,
            recipe_file=str(Path(scope_dir).parent / f"{recipe}.yaml"),
            recipe_sha256=hashlib.sha256(text.encode()).hexdigest(),
            recipe_text=text,
            overrides=[],
            resolved=resolved,
            seed=42,
            status="finished",
            git_commit="0123abc",
            machine=MACHINE,
            wall_s=1.0,
            final_model=final,
            models=model_paths,
            stages=entries,
        )
    )
    return folder.path


KD_QUANT_STAGES = [
    {"name": "quantize", "type": "quantize-dynamic", "input": "student"},
    {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "quantize"]},
]
STUDENT_REF = {"recipe": "kd", "stage": "distill"}
TEACHER_REF = {"recipe": "teacher", "stage": "finetune"}


@functools.cache
def fake_runs() -> dict[str, Path]:
    """``kd`` (distill + benchmark), ``kd-quant`` and ``kd-onnx-quant`` with real tiny weights
    (cached like :func:`published_runs`)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.exporters.onnx import main_export
    from transformers import AutoModelForSequenceClassification

    from recipes.ml.modelio import (
        PYTORCH,
        PYTORCH_DYNAMIC_INT8,
        QUANTIZED_STATE_FILE,
        quantize_linear_dynamic,
        write_format,
    )
    from recipes.ml.onnxio import save_config_and_tokenizer, write_onnx_format

    out = Path(os.environ["HF_HOME"]).parent / "fake-runs" / "outputs" / "clinc_oos-plus_teacher_00000000"
    student = tiny_bert(out / "kd" / "distill", layers=1)
    write_format(student, PYTORCH, ["model.safetensors"])
    write_fake_run(
        out,
        "kd",
        {"teacher": TEACHER_REF},
        [
            {"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [1], "alpha": 0.5},
            {"name": "benchmark", "type": "benchmark", "models": ["teacher", "distill"]},
        ],
        "distill",
        [TEACHER_ROW, ("distill",) + STUDENT_ROW[1:]],
    )

    int8 = out / "kd-quant" / "quantize"
    save_config_and_tokenizer(student, int8)
    model = quantize_linear_dynamic(AutoModelForSequenceClassification.from_pretrained(student))
    torch.save(model.state_dict(), int8 / QUANTIZED_STATE_FILE)
    write_format(int8, PYTORCH_DYNAMIC_INT8, [QUANTIZED_STATE_FILE])
    runs = {
        "kd-quant": write_fake_run(
            out,
            "kd-quant",
            {"teacher": TEACHER_REF, "student": STUDENT_REF},
            KD_QUANT_STAGES,
            "quantize",
            KD_QUANT_ROWS,
        )
    }

    export, quant = out / "kd-onnx-quant" / "export", out / "kd-onnx-quant" / "quantize"
    main_export(str(student), export, task="text-classification", do_validation=False, library_name="transformers")
    write_onnx_format(export, "model.onnx")
    save_config_and_tokenizer(student, quant)
    quantize_dynamic(export / "model.onnx", quant / "model_quantized.onnx", weight_type=QuantType.QInt8)
    write_onnx_format(quant, "model_quantized.onnx")
    runs["kd-onnx-quant"] = write_fake_run(
        out,
        "kd-onnx-quant",
        {"teacher": TEACHER_REF, "student": STUDENT_REF},
        [
            {"name": "export", "type": "export-onnx", "input": "student"},
            {"name": "quantize", "type": "ort-quantize", "input": "export"},
            {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "export", "quantize"]},
        ],
        "quantize",
        KD_ONNX_ROWS,
    )
    return runs


#: A local dataset folder that is not CLINC (the fake runs never load it).
OTHER_DATASET = {
    **DATASET,
    "id": "/data/acme/support-tickets",
    "config": None,
    "label_column": "queue",
    "splits": {"train": "train", "eval": "validation", "test": "test"},
}


@functools.cache
def other_dataset_run() -> Path:
    """``kd-quant`` on :data:`OTHER_DATASET`, in its own scope folder; its models are the
    CLINC fake runs' (only the names and the dataset differ)."""
    clinc = fake_runs()["kd-quant"]
    scope = Path(os.environ["HF_HOME"]).parent / "fake-runs" / "outputs" / "support-tickets_teacher_00000000"
    shutil.copytree(clinc / "quantize", scope / "kd-quant" / "quantize", dirs_exist_ok=True)
    return write_fake_run(
        scope,
        "kd-quant",
        {"teacher": TEACHER_REF, "student": STUDENT_REF},
        KD_QUANT_STAGES,
        "quantize",
        KD_QUANT_ROWS,
        dataset=OTHER_DATASET,
        paths={"teacher": clinc.parent / "teacher" / "finetune", "student": clinc.parent / "kd" / "distill"},
    )
