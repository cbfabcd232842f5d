"""Runs for the publishing tests, made once per test process and shared by the test modules.

* :func:`published_runs`: a tiny ``teacher`` (fine-tune 1 epoch) and ``kdq`` (distil 1 epoch
  -> PyTorch dynamic int8) run through the real :class:`recipes.runner.Runner` on the seeded
  local Hub, both pushed with :func:`hubtools.push.push_run`.
* :func:`fake_runs`: run folders written by hand (no training) with a fixed ``benchmark.json``:
  ``kd-quant`` (int8 published) and ``kd-onnx-quant`` (ONNX int8 published), with real tiny
  weights so their usage snippets can run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .tiny import tiny_bert

ROWS = {"train": 64, "eval": 64, "test": 64}
BASE_REPO = "org/tiny-bert-publish"
QUERY = "What is the pin number for my account?"


# --- real runs through the runner -------------------------------------------------------------


@dataclass
class PublishedRuns:
    out: Path  # outputs/ folder
    teacher_repo: str
    kdq_repo: str
    teacher_url: str
    kdq_url: str


def _recipe(name: str, models: dict, stages: list[dict], publish: str) -> dict:
    return {
        "name": name,
        "description": f"Tiny {name} for the publishing tests.",
        "dataset": {"id": "clinc_oos", "config": "plus", "label_column": "intent",
                    "splits": {"train": "train", "eval": "train", "test": "test"}, "max_samples": ROWS},
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
    from recipes.loader import load_recipe
    from recipes.runner import Runner

    root = Path(os.environ["HF_HOME"]).parent / "publish-runs"
    api = HfApi(endpoint=hub_url, token=token)
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=tiny_bert(root / "tiny-bert"))
    recipes = {
        "teacher": _recipe("teacher", {"base": BASE_REPO},
                           [{"name": "finetune", "type": "finetune", "input": "base", **FAST},
                            {**BENCH, "models": ["finetune"]}], "finetune"),
        "kdq": _recipe("kdq", {"teacher": {"recipe": "teacher", "stage": "finetune"}},
                       [{"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [1], **FAST},
                        {"name": "quantize", "type": "quantize-dynamic", "input": "distill"},
                        {**BENCH, "models": ["teacher", "distill", "quantize"], "baseline": "teacher"}], "quantize"),
    }
    for name, data in recipes.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    out = root / "outputs"
    Runner(output_root=out).run(load_recipe(str(root / "kdq.yaml")))
    teacher_url = push_run(out / "teacher")
    kdq_url = push_run(out / "kdq")
    return PublishedRuns(out, "local/tiny-bert-publish-clinc-teacher", "local/tiny-bert-publish-clinc-kdq",
                         teacher_url, kdq_url)


# --- hand-written runs -----------------------------------------------------------------------------


def bench_row(name: str, fmt: str, files: list[str], accuracy: float, size: float, mean: float) -> dict:
    return {
        "name": name, "format": fmt, "files": files, "accuracy": accuracy, "n_test": 64, "size_mb": size,
        "latency_ms": {"mean": mean, "std": mean / 7.3, "p50": mean * 0.97, "p90": mean * 1.2, "p99": mean * 1.61},
    }


def with_ratios(rows: list[dict], baseline: str) -> list[dict]:
    base = next(r for r in rows if r["name"] == baseline)
    for r in rows:
        r["vs_baseline"] = {"speedup": base["latency_ms"]["mean"] / r["latency_ms"]["mean"],
                            "size_ratio": r["size_mb"] / base["size_mb"],
                            "accuracy_delta": r["accuracy"] - base["accuracy"]}
    return rows


MACHINE = {"cpu": "Fixture CPU @ 2.0GHz", "cores": 8, "threads": 4, "platform": "Linux-fixture", "python": "3.11.7",
           "libraries": {"torch": "2.13.0+cpu", "transformers": "4.57.6", "onnxruntime": "1.32.0"}}
DATASET = {"id": "clinc_oos", "config": "plus", "revision": None, "text_column": "text", "label_column": "intent",
           "splits": {"train": "train", "eval": "validation", "test": "test"},
           "max_samples": {"train": None, "eval": None, "test": 64}, "split_used": "test"}
TEACHER_ROW = ("teacher", "pytorch", ["model.safetensors"], 0.9485454545454546, 86.7, 12.345678)
STUDENT_ROW = ("student", "pytorch", ["model.safetensors"], 0.9301818181818182, 43.51, 6.0712)
KD_QUANT_ROWS = [TEACHER_ROW, STUDENT_ROW,
                 ("quantize", "pytorch-dynamic-int8", ["quantized_state_dict.pt"], 0.9287272727272727, 19.05, 3.4251)]
KD_ONNX_ROWS = [TEACHER_ROW, STUDENT_ROW, ("export", "onnx", ["model.onnx"], 0.9301818181818182, 43.6, 4.012),
                ("quantize", "onnx", ["model_quantized.onnx"], 0.9281818181818182, 11.2, 2.0051)]


def _write_run(out: Path, recipe: str, models: dict, stages: list[dict], final: str, rows: list[tuple]) -> Path:
    run_dir = out / recipe
    text = yaml.safe_dump({"name": recipe, "models": models, "stages": stages}, sort_keys=False)
    resolved = {"name": recipe, "description": f"Fixture {recipe}.", "seed": 42, "dataset": DATASET,
                "models": models, "stages": stages, "publish": {"model": final}}
    paths = {name: {"path": str(out / src["recipe"] / src["stage"]), "fingerprint": "x"}
             for name, src in models.items()}
    paths |= {s["name"]: {"path": str(run_dir / s["name"]), "fingerprint": "x"} for s in stages if s["type"] != "benchmark"}
    run = {"recipe": recipe, "recipe_sha256": hashlib.sha256(text.encode()).hexdigest(), "recipe_text": text,
           "resolved": resolved, "seed": 42, "status": "finished", "git_commit": "0123abc", "machine": MACHINE,
           "final_model": final, "models": paths,
           "stages": [{"name": s["name"], "type": s["type"], "refs": {"input": s.get("input")}, "metrics": {}}
                      for s in stages]}
    bench = {"baseline": "teacher", "query": QUERY, "warmup": 10, "runs": 100, "dataset": DATASET, "machine": MACHINE,
             "models": with_ratios([bench_row(*r) for r in rows], "teacher")}
    (run_dir / "benchmark").mkdir(parents=True, exist_ok=True)
    (run_dir / "benchmark" / "benchmark.json").write_text(json.dumps(bench, indent=2))
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    return run_dir


@functools.cache
def fake_runs() -> dict[str, Path]:
    """``kd`` (its distill stage only), ``kd-quant`` and ``kd-onnx-quant`` with real tiny weights
    (cached like :func:`published_runs`)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.exporters.onnx import main_export
    from transformers import AutoModelForSequenceClassification

    from recipes.modelio import PYTORCH, PYTORCH_DYNAMIC_INT8, QUANTIZED_STATE_FILE, quantize_linear_dynamic, write_format
    from recipes.onnxio import save_config_and_tokenizer, write_onnx_format

    out = Path(os.environ["HF_HOME"]).parent / "fake-runs" / "outputs"
    student = tiny_bert(out / "kd" / "distill", layers=1)
    write_format(student, PYTORCH, ["model.safetensors"])
    _write_run(out, "kd", {"teacher": {"recipe": "teacher", "stage": "finetune"}},
               [{"name": "distill", "type": "distill", "input": "teacher", "keep_layers": [1], "alpha": 0.5}],
               "distill", [TEACHER_ROW, ("distill",) + STUDENT_ROW[1:]])

    int8 = out / "kd-quant" / "quantize"
    save_config_and_tokenizer(student, int8)
    model = quantize_linear_dynamic(AutoModelForSequenceClassification.from_pretrained(student))
    torch.save(model.state_dict(), int8 / QUANTIZED_STATE_FILE)
    write_format(int8, PYTORCH_DYNAMIC_INT8, [QUANTIZED_STATE_FILE])
    student_ref = {"recipe": "kd", "stage": "distill"}
    teacher_ref = {"recipe": "teacher", "stage": "finetune"}
    runs = {"kd-quant": _write_run(
        out, "kd-quant", {"teacher": teacher_ref, "student": student_ref},
        [{"name": "quantize", "type": "quantize-dynamic", "input": "student"},
         {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "quantize"]}],
        "quantize", KD_QUANT_ROWS)}

    export, quant = out / "kd-onnx-quant" / "export", out / "kd-onnx-quant" / "quantize"
    main_export(str(student), export, task="text-classification", do_validation=False, library_name="transformers")
    write_onnx_format(export, "model.onnx")
    save_config_and_tokenizer(student, quant)
    quantize_dynamic(export / "model.onnx", quant / "model_quantized.onnx", weight_type=QuantType.QInt8)
    write_onnx_format(quant, "model_quantized.onnx")
    runs["kd-onnx-quant"] = _write_run(
        out, "kd-onnx-quant", {"teacher": teacher_ref, "student": student_ref},
        [{"name": "export", "type": "export-onnx", "input": "student"},
         {"name": "quantize", "type": "ort-quantize", "input": "export"},
         {"name": "benchmark", "type": "benchmark", "models": ["teacher", "student", "export", "quantize"]}],
        "quantize", KD_ONNX_ROWS)
    return runs
