"""export-onnx -> ort-optimize (levels 1, 2, 99) -> ort-quantize (dynamic, static, fused) on a
tiny BERT and 64 CLINC rows per split, in one recipe run; then the repo layout on the local Hub."""

from __future__ import annotations

import json

import pytest

from recipes.engine.runner import Runner
from recipes.errors import RecipeValidationError
from recipes.ml.modelio import load_classifier
from recipes.ml.onnxio import EXPORTED_FILE, OPTIMIZED_FILE, QUANTIZED_FILE, assemble_repo_folder
from recipes.plan.loader import load_recipe

from .tiny import clinc_dataset, tiny_bert_with_labels, write_recipe

DATASET = clinc_dataset(64, 64, 64)
LEVELS = {"opt-1": 1, "opt-2": 2, "opt-99": 99}
QUANTIZED = {
    "q-dynamic": {"input": "export", "mode": "dynamic"},
    "q-static-minmax": {"input": "export", "mode": "static", "calibration": "minmax", "calibration_samples": 32},
    "q-static-pct": {"input": "export", "mode": "static", "calibration": "percentiles", "calibration_samples": 32},
    "q-fused": {"input": "opt-2", "engine": "onnxruntime"},
    "q-4bit": {"input": "export", "embedding_bits": 4},
    "q-4bit-fused": {"input": "opt-2", "engine": "onnxruntime", "embedding_bits": 4, "embedding_block": 16},
}
BENCHMARKED = ["base", "export", "opt-2", "q-dynamic", "q-static-minmax"]


def onnx_recipe(path, stages: list[dict], base_dir) -> str:
    """``stages`` on the tiny BERT at ``base_dir`` and 64 CLINC rows per split, written to ``path``."""
    recipe = {
        "name": path.stem,
        "description": "ONNX stages on a tiny BERT.",
        "dataset": DATASET,
        "models": {"base": str(base_dir)},
        "stages": stages,
    }
    return str(write_recipe(path.parent, recipe, path.name))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny BERT with CLINC's 151 intent names as id2label."""
    return tiny_bert_with_labels(tmp_path_factory.mktemp("tiny") / "bert", DATASET)


@pytest.fixture(scope="module")
def run_dir(tiny_dir, tmp_path_factory):
    """outputs/onnx-tiny/<stage>/ after one run of every ONNX stage variant and a benchmark."""
    root = tmp_path_factory.mktemp("onnx")
    stages = [{"name": "export", "type": "export-onnx", "input": "base", "parity_samples": 64}]
    stages += [{"name": n, "type": "ort-optimize", "input": "export", "level": lvl} for n, lvl in LEVELS.items()]
    stages += [{"name": n, "type": "ort-quantize", **spec} for n, spec in QUANTIZED.items()]
    stages.append(
        {"name": "benchmark", "type": "benchmark", "models": BENCHMARKED, "warmup": 1, "runs": 3, "threads": 1}
    )
    return (
        Runner(output_root=root / "out")
        .run(load_recipe(onnx_recipe(root / "onnx-tiny.yaml", stages, tiny_dir)))
        .out_dir
    )


def metrics(run_dir, stage: str) -> dict:
    return json.loads((run_dir / stage / ".stage.json").read_text())["metrics"]


def eval_texts(run_dir) -> list[str]:
    from recipes.ml.data import RecipeData
    from recipes.plan.schema import DatasetSpec

    return list(RecipeData(DatasetSpec(**DATASET), seed=42).split("eval")["text"])


def test_export_has_parity_and_dynamic_axes(run_dir):
    m = metrics(run_dir, "export")
    assert m["parity"]["rows"] == 64 and m["parity"]["max_abs_diff"] <= 1e-3
    assert m["parity"]["argmax_agreement"] >= 0.99
    assert m["inputs"]["input_ids"] == ["batch_size", "sequence_length"]
    fmt = json.loads((run_dir / "export" / "model_format.json").read_text())
    assert fmt == {
        "format": "onnx",
        "weights": [EXPORTED_FILE],
        "file_name": EXPORTED_FILE,
        "opset": m["opset"],
        "dtype": "float32",
    }


@pytest.mark.parametrize("stage", [*LEVELS, *QUANTIZED])
def test_variant_loads_and_agrees_with_fp32(run_dir, stage):
    texts = eval_texts(run_dir)
    reference = load_classifier(run_dir / "export", 1).logits(texts).argmax(-1)
    clf = load_classifier(run_dir / stage, 1)
    options = clf.model.session.get_session_options()
    assert (clf.format, options.intra_op_num_threads, options.inter_op_num_threads) == ("onnx", 1, 1)
    assert (clf.logits(texts).argmax(-1) == reference).mean() >= 0.95
    assert clf.make_pipeline()("book a flight to paris")[0]["label"] in clf.model.config.label2id
    assert metrics(run_dir, stage)["parity"]["argmax_agreement"] >= 0.95


def test_optimize_levels_record_what_they_fused(run_dir):
    for stage, level in LEVELS.items():
        m = metrics(run_dir, stage)
        assert (run_dir / stage / OPTIMIZED_FILE).is_file()
        assert (
            json.loads((run_dir / stage / "ort_config.json").read_text())["optimization"]["optimization_level"]
            == level
        )
        assert "Attention" in m["fused_ops"] and m["nodes"] < m["nodes_before"]


def test_quantize_records_how(run_dir):
    from recipes.stages.ort_quantize import cpu_preset

    dynamic, static, fused = (metrics(run_dir, s) for s in ("q-dynamic", "q-static-minmax", "q-fused"))
    assert dynamic["preset"] == cpu_preset() and dynamic["mode"] == "dynamic"
    assert static["calibration"] == "minmax" and static["calibration_rows"] == 32
    assert "com.microsoft:QAttention" in fused["quantized_ops"] and fused["engine"] == "onnxruntime"
    for m in (dynamic, static, fused):
        assert m["size_mb"] < m["size_mb_before"] / 2
    for stage in QUANTIZED:
        assert json.loads((run_dir / stage / "model_format.json").read_text())["file_name"] == QUANTIZED_FILE


def test_4_bit_embeddings_shrink_the_tables_and_keep_the_logits(run_dir):
    import numpy as np
    import onnx

    texts = eval_texts(run_dir)
    for stage, int8 in (("q-4bit", "q-dynamic"), ("q-4bit-fused", "q-fused")):
        m = metrics(run_dir, stage)
        assert (m["embedding_bits"], m["embedding_tables_4_bit"]) == (4, 3)  # words, positions, token types
        assert metrics(run_dir, int8)["embedding_bits"] == 8 and "embedding_tables_4_bit" not in metrics(run_dir, int8)
        ops = [n.op_type for n in onnx.load(run_dir / stage / QUANTIZED_FILE).graph.node]
        assert ops.count("GatherBlockQuantized") == 3
        assert m["size_mb"] < metrics(run_dir, int8)["size_mb"]
        fp32 = load_classifier(run_dir / "export", 1).logits(texts)
        assert np.abs(load_classifier(run_dir / stage, 1).logits(texts) - fp32).max() < 0.05


def test_benchmark_rows_for_onnx_models(run_dir):
    rows = {r["name"]: r for r in json.loads((run_dir / "benchmark" / "benchmark.json").read_text())["models"]}
    assert list(rows) == BENCHMARKED
    assert [rows[n]["format"] for n in BENCHMARKED] == ["pytorch"] + ["onnx"] * 4
    for name, file in (("export", EXPORTED_FILE), ("opt-2", OPTIMIZED_FILE), ("q-dynamic", QUANTIZED_FILE)):
        assert rows[name]["files"] == [file]
        assert rows[name]["size_mb"] == pytest.approx((run_dir / name / file).stat().st_size / 2**20)
    assert rows["q-dynamic"]["size_mb"] < rows["export"]["size_mb"] / 2
    assert abs(rows["export"]["accuracy"] - rows["base"]["accuracy"]) < 0.05
    # ORT rows ran on the same thread budget as the PyTorch row, as the sessions report it.
    threads = rows["base"]["runtime"]["intra_op_threads"]
    for name in BENCHMARKED[1:]:
        assert rows[name]["runtime"]["engine"] == "onnxruntime"
        assert (rows[name]["runtime"]["intra_op_threads"], rows[name]["runtime"]["inter_op_threads"]) == (threads, 1)


BAD_ORDERS = {
    "optimum on a fused graph": (
        [
            {"name": "export", "type": "export-onnx", "input": "base"},
            {"name": "optimize", "type": "ort-optimize", "input": "export", "level": 2, "transformers_fusions": False},
            {"name": "quantize", "type": "ort-quantize", "input": "optimize"},
        ],
        ["engine 'optimum' cannot quantize", "'optimize' makes (level 2)", "set engine: onnxruntime"],
    ),
    "static with onnxruntime": (
        [
            {"name": "export", "type": "export-onnx", "input": "base"},
            {"name": "quantize", "type": "ort-quantize", "input": "export", "mode": "static", "engine": "onnxruntime"},
        ],
        ["dynamically only", "engine 'optimum'"],
    ),
    "quantize twice": (
        [
            {"name": "export", "type": "export-onnx", "input": "base"},
            {"name": "q1", "type": "ort-quantize", "input": "export"},
            {"name": "q2", "type": "ort-quantize", "input": "q1"},
        ],
        ["already int8"],
    ),
    "optimize PyTorch": (
        [
            {"name": "int8", "type": "quantize-dynamic", "input": "base"},
            {"name": "optimize", "type": "ort-optimize", "input": "int8"},
        ],
        ["takes an ONNX model", "add an export-onnx stage"],
    ),
}


@pytest.mark.parametrize("case", BAD_ORDERS)
def test_impossible_combination_is_refused(tmp_path, tiny_dir, case):
    stages, expected = BAD_ORDERS[case]
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(onnx_recipe(tmp_path / "bad.yaml", stages, tiny_dir))
    for text in expected:
        assert text in err.value.message


def test_repo_layout_loads_from_local_hub(local_hub, run_dir, tiny_dir, tmp_path, new_repo_id):
    """Root: PyTorch for plain transformers; onnx/: every ORT variant, loadable by file_name."""
    from huggingface_hub import HfApi
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from optimum.pipelines import pipeline as ort_pipeline
    from transformers import AutoTokenizer, pipeline

    folder = assemble_repo_folder(
        tiny_dir, [run_dir / "export", run_dir / "opt-2", run_dir / "q-dynamic"], tmp_path / "repo"
    )
    repo_id = new_repo_id("onnx-layout")
    api = HfApi(endpoint=local_hub.url, token=local_hub.token)
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    files = set(api.list_repo_files(repo_id))
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files
    assert {f"onnx/{f}" for f in (EXPORTED_FILE, OPTIMIZED_FILE, QUANTIZED_FILE)} <= files
    assert "model_format.json" not in files

    query = "what is my account balance"
    expected = pipeline("text-classification", model=repo_id)(query)[0]["label"]
    tokenizer = AutoTokenizer.from_pretrained(repo_id)
    for file_name in (EXPORTED_FILE, OPTIMIZED_FILE, QUANTIZED_FILE):
        model = ORTModelForSequenceClassification.from_pretrained(repo_id, subfolder="onnx", file_name=file_name)
        result = ort_pipeline("text-classification", model=model, tokenizer=tokenizer)(query)[0]
        assert result["label"] in model.config.label2id
        if file_name != QUANTIZED_FILE:
            assert result["label"] == expected


def test_assemble_refuses_two_models_for_one_name(run_dir, tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="both provide onnx/model_optimized.onnx"):
        assemble_repo_folder(tiny_dir, [run_dir / "opt-1", run_dir / "opt-2"], tmp_path / "repo")
