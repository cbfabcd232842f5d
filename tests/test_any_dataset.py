"""The catalog on the user's own data and model: the dataset given once on the command line
applies to the whole plan; runs on other data never share a folder; a given classifier stands
in for the teacher; a classifier of other labels is refused before any training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recipes.__main__ import main
from recipes.engine.runner import Runner
from recipes.errors import ModelSourceError
from recipes.plan.planning import make_plan
from recipes.runfolder import find_runs, hash_outputs

from .tiny import tiny_bert

TOPICS = ["billing", "weather", "music"]
WORDS = {
    "billing": ["bill", "invoice", "charge", "payment", "refund"],
    "weather": ["rain", "sunny", "forecast", "snow", "wind"],
    "music": ["song", "playlist", "album", "guitar", "lyrics"],
}
TINY = ["--set", "models.base=org/tiny-bert6", "--set", "benchmark.runs=5", "--set", "benchmark.warmup=1"]
CLINC_ROWS = [
    "--set",
    "dataset.max_samples.train=150",
    "--set",
    "dataset.max_samples.eval=60",
    "--set",
    "dataset.max_samples.test=60",
]


def topic_dataset(folder: Path) -> Path:
    """Three topics, columns ``utterance`` and ``topic`` (a ClassLabel), no ``oos``."""
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"utterance": Value("string"), "topic": ClassLabel(names=TOPICS)})
    folder.mkdir(parents=True)
    for split, per_topic in (("train", 30), ("validation", 10), ("test", 10)):
        rows = {"utterance": [], "topic": []}
        for label, topic in enumerate(TOPICS):
            for i in range(per_topic):
                words = WORDS[topic]
                rows["utterance"].append(f"{split} question {i} about the {words[i % 5]} and {words[(i + 2) % 5]}")
                rows["topic"].append(label)
        Dataset.from_dict(rows, features=features).to_parquet(folder / f"{split}.parquet")
    return folder


def topic_flags(folder: Path) -> list[str]:
    return [
        "--set",
        f"dataset.id={folder}",
        "--set",
        "dataset.config=null",
        "--set",
        "dataset.text_column=utterance",
        "--set",
        "dataset.label_column=topic",
        "--set",
        "dataset.oos_label=null",
    ]


#: The module fixture trains a catalog plan on two datasets, within the first test's time limit.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def two_datasets(seeded_hub, tmp_path_factory):
    """kd-onnx-quant (teacher -> kd -> it) on CLINC rows, then on the topic dataset, one output root."""
    from huggingface_hub import HfApi

    root = tmp_path_factory.mktemp("any-data")
    api = HfApi(endpoint=seeded_hub.url, token=seeded_hub.token)
    api.create_repo("org/tiny-bert6", exist_ok=True)
    api.upload_folder(repo_id="org/tiny-bert6", folder_path=tiny_bert(root / "tiny6", layers=6))
    out = root / "outputs"
    assert main(["run", "kd-onnx-quant", "--no-publish", "--output-dir", str(out), *TINY, *CLINC_ROWS]) == 0
    clinc_scope = {f.path.parent for f in find_runs(out)}.pop()
    before = hash_outputs(clinc_scope)
    topics = topic_dataset(root / "topics")
    assert main(["run", "kd-onnx-quant", "--no-publish", "--output-dir", str(out), *TINY, *topic_flags(topics)]) == 0
    return out, clinc_scope, before, topics


def test_each_dataset_has_its_own_scope_and_every_recipe_ran_on_it(two_datasets):
    out, clinc_scope, _, _ = two_datasets
    runs = find_runs(out)
    scopes = {f.scope for f in runs}
    assert len(scopes) == 2 and clinc_scope.name in scopes
    topic_scope = (scopes - {clinc_scope.name}).pop()
    assert topic_scope.startswith("topics_tiny-bert6_") and clinc_scope.name.startswith("clinc_oos-plus_tiny-bert6_")
    assert sorted(f.recipe for f in runs) == sorted(["teacher", "kd", "kd-onnx-quant"] * 2)
    for folder in runs:
        record = folder.read_run()
        assert record.finished
        expected = "topic" if folder.scope == topic_scope else "intent"
        assert record.resolved["dataset"]["label_column"] == expected, (folder.path, record.resolved["dataset"])


def test_models_of_the_second_dataset_have_its_labels(two_datasets):
    import json

    out, clinc_scope, _, _ = two_datasets
    topic_runs = [f for f in find_runs(out) if f.path.parent != clinc_scope]
    teacher = next(f for f in topic_runs if f.recipe == "teacher")
    kd = next(f for f in topic_runs if f.recipe == "kd")
    for model_dir in (teacher.stage_dir("finetune"), kd.stage_dir("distill")):
        config = json.loads((model_dir / "config.json").read_text())
        assert list(config["id2label"].values()) == TOPICS
    assert json.loads((kd.stage_dir("distill") / "config.json").read_text())["num_hidden_layers"] == 3


def test_clinc_runs_stay_untouched(two_datasets):
    _, clinc_scope, before, _ = two_datasets
    assert hash_outputs(clinc_scope) == before


def test_runs_command_lists_both(two_datasets, capsys):
    out, *_ = two_datasets
    assert main(["runs", "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all("finished" in line for line in lines)
    assert sum("topics/-" in line for line in lines) == 3 and sum("clinc_oos/plus" in line for line in lines) == 3


def test_own_classifier_stands_in_for_the_teacher(two_datasets, tmp_path):
    out, clinc_scope, _, topics = two_datasets
    topic_teacher = next(f for f in find_runs(out) if f.recipe == "teacher" and f.path.parent != clinc_scope)
    mine = shutil.copytree(topic_teacher.stage_dir("finetune"), tmp_path / "my-classifier")
    overrides = [a for a in topic_flags(topics) if a != "--set"] + [f"models.teacher={mine}", "benchmark.runs=5"]
    plan = make_plan("kd-onnx-quant", overrides)
    assert [o.recipe.name for o in plan.order] == ["kd", "kd-onnx-quant"]
    runner = Runner(output_root=out)
    runner.run(plan)
    assert list(runner.runs) == ["kd", "kd-onnx-quant"]  # no teacher fine-tuned
    assert runner.runs["kd"].models["teacher"].path == mine.resolve()
    assert runner.runs["kd-onnx-quant"].out_dir.parent.name == plan.scope != topic_teacher.scope


def test_classifier_of_other_labels_is_refused_before_training(two_datasets, tmp_path):
    out, clinc_scope, _, topics = two_datasets
    clinc_teacher = clinc_scope / "teacher" / "finetune"
    overrides = [a for a in topic_flags(topics) if a != "--set"] + [f"models.teacher={clinc_teacher}"]
    plan = make_plan("kd", overrides)
    with pytest.raises(ModelSourceError, match="it predicts 151 labels, the dataset has 3"):
        Runner(output_root=tmp_path / "out").run(plan)
    assert not list((tmp_path / "out").rglob(".stage.json")), "a stage ran before the labels were checked"
