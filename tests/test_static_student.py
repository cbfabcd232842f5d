"""``kd-static`` on a tiny BERT teacher and 150 CLINC rows: the static student (a table of token
vectors from the teacher's encoder, their mean, a linear head) trains the same for the same seed,
computes what its docstring says, takes the out-of-scope calibration in its head, and a pushed
repo loads through ``pipeline(trust_remote_code=True)`` in a process without this project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recipes.engine.runner import Runner
from recipes.errors import RecipeValidationError
from recipes.ml.modelio import auto_classifier
from recipes.plan.planning import make_plan
from recipes.plan.preflight import check_plan

from .tiny import CLINC_DIR, tiny_bert

#: The module fixture trains the teacher and two static students, within the first test's limit.
pytestmark = pytest.mark.timeout(600)
TEXTS = ["what is the pin number for my account", "book a table for two", "hi", "tell me a joke about cats"]
DATA = [
    f"dataset.id={CLINC_DIR}",
    "dataset.max_samples.train=150",
    "dataset.max_samples.eval=48",
    "dataset.max_samples.test=48",
]
STATIC = ["static.dim=16", "static.epochs=2", "benchmark.runs=3", "benchmark.warmup=1"]


def stage_metrics(run, name: str) -> dict:
    return json.loads((run.out_dir / name / ".stage.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clinc_dir):
    """The catalog's kd-static on a tiny BERT teacher, then its static stage again in another output
    folder on the same teacher (given as a folder)."""
    root = tmp_path_factory.mktemp("static")
    base = tiny_bert(root / "tiny", layers=2)
    first = Runner(output_root=root / "a").run(make_plan("kd-static", [f"models.base={base}", *DATA, *STATIC]))
    teacher = first.models["teacher"].path
    again = Runner(output_root=root / "b").run(make_plan("kd-static", [f"models.teacher={teacher}", *DATA, *STATIC]))
    return first, again


def test_the_same_seed_trains_the_same_student(runs):
    first, again = runs
    a, b = (run.out_dir / "static" / "model.safetensors" for run in runs)
    assert a.read_bytes() == b.read_bytes()
    assert stage_metrics(first, "static")["history"] == stage_metrics(again, "static")["history"]


def test_logits_are_the_head_of_the_mean_of_the_token_rows(runs):
    from transformers import AutoTokenizer

    folder = runs[0].out_dir / "static"
    model, tokenizer = auto_classifier(folder).eval(), AutoTokenizer.from_pretrained(folder)
    table = model.embeddings.weight.detach().numpy()
    weight, bias = (p.detach().numpy() for p in (model.classifier.weight, model.classifier.bias))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    logits = model(**batch).logits.detach().numpy()
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]  # the catalog pools the text's pieces alone (special_tokens: false)
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"] and tokenizer.cls_token_id not in ids
        by_hand = table[ids].mean(axis=0) @ weight.T + bias
        np.testing.assert_allclose(logits[row], by_hand, rtol=1e-5, atol=1e-5)  # padding changes nothing
    assert model.config.dim == table.shape[1] == 16 and table.shape[0] == len(tokenizer)


def test_the_table_starts_from_the_teachers_encoder(runs):
    metrics = stage_metrics(runs[0], "static")
    table = metrics["table"]
    assert table["init"] == "model2vec" and table["dim"] == 16
    assert 0.9 * table["rows"] < table["rows_from_teacher"] <= table["rows"]  # all but [unused..] pieces
    assert metrics["pooled"] == "text tokens only"
    assert metrics["train_rows"]["augmented"] == metrics["train_rows"]["original"] == 150  # one copy each
    assert metrics["history"] and metrics["parameters"] == table["rows"] * 16 + 17 * 151


def test_calibration_folds_into_the_head(runs):
    run = runs[0]
    bias = stage_metrics(run, "calibrate")["oos_bias"]
    oos = auto_classifier(run.out_dir / "static").config.label2id["oos"]
    before, after = (
        auto_classifier(run.out_dir / s).classifier.bias.detach().numpy() for s in ("static", "calibrate")
    )
    shift = after - before
    assert shift[oos] == pytest.approx(bias, abs=1e-5) and np.abs(np.delete(shift, oos)).max() == 0


def test_onnx_export_and_int8_keep_the_logits(runs):
    from recipes.ml.modelio import load_classifier

    run = runs[0]
    export = stage_metrics(run, "export")
    assert export["exporter"] == "torch.onnx" and export["parity"]["max_abs_diff"] <= 1e-4
    torch_logits = load_classifier(run.out_dir / "calibrate", 1).logits(TEXTS)
    np.testing.assert_allclose(load_classifier(run.out_dir / "export", 1).logits(TEXTS), torch_logits, atol=1e-4)
    sizes = {name: stage_metrics(run, name)["size_mb"] for name in ("export", "quantize", "quantize-4bit")}
    assert sizes["quantize-4bit"] < sizes["quantize"] < sizes["export"] / 3  # the table is the model
    assert stage_metrics(run, "quantize-4bit")["embedding_tables_4_bit"] == 1
    for name in ("quantize", "quantize-4bit"):
        pipe = load_classifier(run.out_dir / name, 1).make_pipeline()
        assert pipe(TEXTS[0])[0]["label"] in auto_classifier(run.out_dir / "calibrate").config.label2id


def test_prune_vocab_trims_the_table_and_keeps_the_logits_of_kept_texts(runs, tmp_path):
    from transformers import AutoTokenizer

    from recipes.ml.data import RecipeData
    from recipes.plan.schema import DatasetSpec

    from .tiny import clinc_dataset, run_one_stage

    student, dataset = runs[0].out_dir / "static", clinc_dataset(150, 48, 48, oos_label="oos")
    trim = {"name": "trim", "type": "prune-vocab", "input": "student", "top_words": 0}
    run = run_one_stage(tmp_path, "trim-static", dataset, {"student": str(student)}, trim)
    metrics, trimmed = stage_metrics(run, "trim"), run.out_dir / "trim"
    model = auto_classifier(trimmed).eval()
    assert (
        metrics["vocab_kept"] == model.config.vocab_size == model.embeddings.weight.shape[0] < metrics["vocab_total"]
    )
    assert (trimmed / "static_model.py").is_file()  # still loads without this project
    texts = list(RecipeData(DatasetSpec(**dataset), seed=42).split("train")["text"][:4])  # every piece kept
    before, tokenize = (
        auto_classifier(student).eval(),
        {f: AutoTokenizer.from_pretrained(f) for f in (student, trimmed)},
    )
    np.testing.assert_allclose(
        model(**tokenize[trimmed](texts, padding=True, return_tensors="pt")).logits.detach().numpy(),
        before(**tokenize[student](texts, padding=True, return_tensors="pt")).logits.detach().numpy(),
        atol=1e-6,
    )


def test_a_pushed_student_loads_in_a_process_without_this_project(runs, local_hub, new_repo_id):
    from huggingface_hub import hf_hub_download

    import hubtools
    from recipes.ml.modelio import load_classifier
    from recipes.ml.onnxio import QUANTIZED_FILE

    run = runs[0]
    pushed = hubtools.publish(run.out_dir, repo_id=new_repo_id("kd-static"))
    assert {"static_model.py", "config.json", "model.safetensors", f"onnx/{QUANTIZED_FILE}"} <= set(pushed.files)
    expected = [
        [clf.make_pipeline()(text)[0]["label"] for text in TEXTS]
        for clf in (load_classifier(run.out_dir / "calibrate", 1), load_classifier(run.out_dir / "quantize", 1))
    ]
    script = f"""
import json, sys
from optimum.onnxruntime import ORTModelForSequenceClassification
from optimum.pipelines import pipeline as ort_pipeline
from transformers import AutoTokenizer, pipeline
repo = {pushed.repo_id!r}
torch_pipe = pipeline("text-classification", model=repo, trust_remote_code=True)
onnx = ORTModelForSequenceClassification.from_pretrained(
    repo, subfolder="onnx", file_name={QUANTIZED_FILE!r}, trust_remote_code=True
)
onnx_pipe = ort_pipeline("text-classification", model=onnx, tokenizer=AutoTokenizer.from_pretrained(repo))
print(json.dumps([[p(t)[0]["label"] for t in {TEXTS!r}] for p in (torch_pipe, onnx_pipe)]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("recipes", "hubtools"))))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True)
    labels, project_modules = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert labels == expected and project_modules == []
    card = Path(hf_hub_download(pushed.repo_id, "README.md")).read_text()  # tells the reader to trust its code
    assert f'pipeline("text-classification", model="{pushed.repo_id}", trust_remote_code=True)' in card
    assert f'file_name="{QUANTIZED_FILE}", trust_remote_code=True)' in card


@pytest.fixture(scope="module")
def bigram_run(runs):
    """kd-static-bigrams on the first run's teacher (given as a folder), 64 bigram rows."""
    first = runs[0]
    plan = make_plan(
        "kd-static-bigrams",
        [f"models.teacher={first.models['teacher'].path}", *DATA, *STATIC, "static.bigrams=64"],
    )
    return Runner(output_root=first.out_dir.parent.parent / "bigrams").run(plan)


def test_bigram_rows_are_a_hash_of_adjacent_pieces_whose_mean_adds_to_the_pieces_mean(bigram_run):
    from transformers import AutoTokenizer

    from recipes.ml.static_model import BIGRAM_MULTIPLIER

    folder = bigram_run.out_dir / "static"
    model, tokenizer = auto_classifier(folder).eval(), AutoTokenizer.from_pretrained(folder)
    table, pairs_table = (t.weight.detach().numpy() for t in (model.embeddings, model.bigrams))
    assert model.config.bigram_buckets == pairs_table.shape[0] == 64 and np.abs(pairs_table).max() > 0  # trained
    weight, bias = (p.detach().numpy() for p in (model.classifier.weight, model.classifier.bias))
    logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.detach().numpy()
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]
        rows = [(a * BIGRAM_MULTIPLIER + b) % 64 for a, b in zip(ids, ids[1:], strict=False)]
        pooled = table[ids].mean(axis=0) + (pairs_table[rows].mean(axis=0) if rows else 0)  # "hi": one piece
        np.testing.assert_allclose(logits[row], pooled @ weight.T + bias, rtol=1e-5, atol=1e-5)
    assert stage_metrics(bigram_run, "static")["bigram_buckets"] == 64


def test_a_bigram_student_exports_to_onnx_and_int8_and_serves_through_pipeline(bigram_run):
    from recipes.ml.modelio import load_classifier

    run = bigram_run
    assert stage_metrics(run, "export")["parity"]["max_abs_diff"] <= 1e-4
    torch_logits = load_classifier(run.out_dir / "calibrate", 1).logits(TEXTS)
    np.testing.assert_allclose(load_classifier(run.out_dir / "export", 1).logits(TEXTS), torch_logits, atol=1e-4)
    quantized = stage_metrics(run, "quantize")
    assert quantized["size_mb"] < stage_metrics(run, "export")["size_mb"] / 3  # both tables went to int8
    pipe = load_classifier(run.out_dir / "quantize", 1).make_pipeline()
    assert [p["label"] for p in pipe(TEXTS)] == [
        auto_classifier(run.out_dir / "calibrate").config.id2label[i] for i in torch_logits.argmax(-1)
    ]


@pytest.fixture(scope="module")
def model2vec_run(runs):
    """kd-static-model2vec on the first run's calibrated student and teacher (given as folders)."""
    first = runs[0]
    student, teacher = first.out_dir / "calibrate", first.models["teacher"].path
    plan = make_plan(
        "kd-static-model2vec",
        [f"models.teacher={teacher}", f"models.student={student}", *DATA, "benchmark.runs=3", "benchmark.warmup=1"],
    )
    return Runner(output_root=first.out_dir.parent.parent / "m2v").run(plan)


def test_model2vec_serves_the_students_logits(model2vec_run, tmp_path):
    from transformers import AutoTokenizer

    from recipes.ml import model2vec_io
    from recipes.ml.modelio import load_classifier

    student = model2vec_run.models["student"].path
    torch_logits = load_classifier(student, 1).logits(TEXTS)
    served = load_classifier(model2vec_run.out_dir / "model2vec", 1)
    assert served.format == "model2vec"
    # int8 rows with a scale each: within half a step of every value, so the logits stay close
    np.testing.assert_allclose(served.logits(TEXTS), torch_logits, atol=0.05)
    assert list(served.logits(TEXTS).argmax(axis=1)) == list(torch_logits.argmax(axis=1))
    names = auto_classifier(student).config.id2label
    assert [served.make_pipeline()(t)[0] for t in TEXTS] == [names[i] for i in torch_logits.argmax(axis=1)]
    metrics = stage_metrics(model2vec_run, "model2vec")
    assert metrics["dtype"] == "int8" and metrics["parity"]["argmax_agreement"] == 1.0
    # float32: the same numbers as PyTorch
    model = auto_classifier(student)
    model2vec_io.save_static_pipeline(
        model.embeddings.weight.detach().numpy(),
        model.classifier.weight.detach().numpy(),
        model.classifier.bias.detach().numpy(),
        AutoTokenizer.from_pretrained(student),
        [names[i] for i in range(len(names))],
        tmp_path / "fp32",
    )
    np.testing.assert_allclose(load_classifier(tmp_path / "fp32", 1).logits(TEXTS), torch_logits, atol=1e-5)


def test_int8_rows_dequantize_within_half_a_step():
    from recipes.ml.model2vec_io import quantize_rows

    table = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    table[3] = 0.0
    rows, scales = quantize_rows(table, "int8")
    assert rows.dtype == np.int8 and scales.shape == (50,) and scales[3] == 1.0 and not rows[3].any()
    assert np.abs(rows * scales[:, None] - table).max() <= scales.max() / 2 + 1e-7
    assert np.abs(rows).max() == 127
    with pytest.raises(ValueError, match="allowed float32, float16, int8"):
        quantize_rows(table, "int4")


def test_a_pushed_model2vec_folder_loads_with_model2vec_alone(model2vec_run, local_hub, new_repo_id):
    from huggingface_hub import hf_hub_download

    import hubtools
    from recipes.ml.modelio import load_classifier

    pushed = hubtools.publish(model2vec_run.out_dir, repo_id=new_repo_id("kd-static-model2vec"))
    m2v = {f"model2vec/{name}" for name in ("model.safetensors", "head.safetensors", "config.json", "tokenizer.json")}
    assert m2v <= set(pushed.files) and "static_model.py" in pushed.files
    expected = [str(load_classifier(model2vec_run.out_dir / "model2vec", 1).make_pipeline()(t)[0]) for t in TEXTS]
    script = f"""
import json, sys
from huggingface_hub import snapshot_download
from model2vec.inference import StaticModelPipeline
folder = snapshot_download({pushed.repo_id!r}, allow_patterns=["model2vec/*"])
pipe = StaticModelPipeline.from_pretrained(folder + "/model2vec")
print(json.dumps([str(label) for label in pipe.predict({TEXTS!r}, use_multiprocessing=False)]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("recipes", "hubtools", "transformers"))))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, check=True)
    labels, project_modules = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert labels == expected and project_modules == []
    card = Path(hf_hub_download(pushed.repo_id, "README.md")).read_text()
    assert 'StaticModelPipeline.from_pretrained(f"{folder}/model2vec")' in card


def test_export_model2vec_refuses_a_student_model2vec_would_pool_differently(tmp_path):
    from recipes.stages.model2vec_export import student_problem

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        (Path(__file__).parents[1] / "recipes" / "catalog" / "kd-static.yaml")
        .read_text()
        .replace("special_tokens: false", "special_tokens: true")
        .replace("publish:\n  model: quantize", "  - {name: m2v, type: export-model2vec, input: static}\n")
    )
    with pytest.raises(RecipeValidationError) as err:
        check_plan(make_plan(str(recipe), [*DATA, "models.teacher=./nowhere"]))
    assert "special_tokens: true: set it false" in err.value.message and "m2v" in err.value.message
    assert "hidden: 0" in student_problem({"model_type": "static-classifier", "hidden": 8}, False)
    assert "special_tokens: false" in student_problem({"model_type": "static-classifier", "hidden": 0}, True)
    assert "takes a static student" in student_problem({"model_type": "bert"}, False)
    assert student_problem({"model_type": "static-classifier", "hidden": 0}, False) is None


def test_model2vec_and_prune_vocab_refuse_a_bigram_student(bigram_run, tmp_path):
    from recipes.stages.model2vec_export import student_problem

    from .tiny import clinc_dataset, run_one_stage

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        (Path(__file__).parents[1] / "recipes" / "catalog" / "kd-static-bigrams.yaml")
        .read_text()
        .replace(
            "publish:\n  model: quantize",
            "  - {name: m2v, type: export-model2vec, input: static}\n"
            "  - {name: trim, type: prune-vocab, input: static}\n",
        )
    )
    with pytest.raises(RecipeValidationError) as err:
        check_plan(make_plan(str(recipe), [*DATA, "models.teacher=./nowhere"]))
    assert "m2v" in err.value.message and "bigrams: 20000: set 0" in err.value.message
    assert "trim" in err.value.message and "trim the teacher before distill-static" in err.value.message
    config = {"model_type": "static-classifier", "hidden": 0, "bigram_buckets": 64}
    assert "train it with bigrams: 0" in student_problem(config, False)
    # through a calibrate-oos stage, check cannot see the bigrams: the stage refuses them before any work
    trim = {"name": "trim", "type": "prune-vocab", "input": "student"}
    models, dataset = {"student": str(bigram_run.out_dir / "calibrate")}, clinc_dataset(150, 48, 48, oos_label="oos")
    with pytest.raises(Exception, match="trim the teacher before distill-static"):
        run_one_stage(tmp_path, "trim-bigrams", dataset, models, trim)


def test_piece_dropout_leaves_pieces_out_of_training_batches_only():
    import torch

    from recipes.ml.distillation import TEACHER_LOGITS
    from recipes.stages.distill_static import PieceDropout

    def pad(features):  # what DataCollatorWithPadding returns for rows already of one length
        return {key: torch.tensor([row[key] for row in features]) for key in features[0]}

    lengths = [1, 2, 5, 20] * 250
    rows = [{"input_ids": [7] * 20, "attention_mask": [1] * n + [0] * (20 - n)} for n in lengths]
    train = [{**row, TEACHER_LOGITS: [0.0, 1.0]} for row in rows]
    torch.manual_seed(0)
    mask = torch.tensor([row["attention_mask"] for row in rows])
    kept = PieceDropout(pad, 0.3)(train)["attention_mask"]
    assert (kept <= mask).all(), "a padding position was let in"
    assert (kept.sum(dim=1) >= 1).all(), "a text lost every piece"
    long_texts = mask.sum(dim=1) == 20
    assert 0.27 < 1 - kept[long_texts].float().mean().item() < 0.33
    assert kept[mask.sum(dim=1) == 1][:, 0].all(), "a one-piece text keeps its piece"
    assert torch.equal(PieceDropout(pad, 0.3)(rows)["attention_mask"], mask), "evaluation batches are left whole"
    assert torch.equal(PieceDropout(pad, 0.0)(train)["attention_mask"], mask)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("static.dim=1", "stages -> static -> dim"),
        ("static.init=pretrained", "stages -> static -> init"),
        ("static.hidden=-1", "stages -> static -> hidden"),
        ("static.bigrams=-5", "stages -> static -> bigrams"),
        ("static.piece_dropout=0.95", "stages -> static -> piece_dropout"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(override, expected):
    with pytest.raises(RecipeValidationError) as err:
        check_plan(make_plan("kd-static", [*DATA, "models.teacher=./nowhere", override]))
    assert expected in err.value.message
