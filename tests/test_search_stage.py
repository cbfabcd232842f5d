"""``search-distill`` on a tiny BERT and 150 CLINC rows: 4 Optuna trials with pruning, the best
one kept, its study (trials table, plots, study.db) in the output and on the card."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from recipes.engine.runner import Runner
from recipes.errors import RecipeValidationError
from recipes.ml import distillation
from recipes.ml.data import RecipeData
from recipes.ml.modelio import load_classifier
from recipes.plan.loader import load_recipe
from recipes.runfolder import STATE_DIR

from .tiny import clinc_dataset, tiny_bert, write_recipe

ROWS = 150
N_TRIALS = 4
SPACE = {
    "epochs": {"choices": [1, 2]},
    "alpha": {"low": 0.0, "high": 1.0},
    "learning_rate": {"low": 3.0e-3, "high": 3.0e-2, "log": True},
}
#: Tried first: a 2-epoch trial, then a 1-epoch one.
ENQUEUE = [{"epochs": 2, "alpha": 0.5, "learning_rate": 0.01}, {"epochs": 1, "alpha": 0.5, "learning_rate": 0.01}]
#: Forces a prune, whatever the tiny model learns: every trial is below 0.9 after its first
#: epoch, and a trial is never pruned after its last one, so each 2-epoch trial is pruned after
#: epoch 1 and each 1-epoch trial completes.
PRUNER = {"type": "threshold", "lower": 0.9, "warmup_share": 0.1}


def recipe(dataset_id: str, **search) -> dict:
    return {
        "name": "search-demo",
        "description": "four trials of a 1-layer student cut from a 2-layer tiny BERT",
        "dataset": clinc_dataset(ROWS, ROWS, 50, eval_on_train=True, id=dataset_id),
        "models": {"teacher": "./teacher"},
        "stages": [
            {
                "name": "search",
                "type": "search-distill",
                "input": "teacher",
                "keep_layers": [1],
                "batch_size": 16,
                "n_trials": N_TRIALS,
                "space": copy.deepcopy(SPACE),
                "enqueue": copy.deepcopy(ENQUEUE),
                "pruner": dict(PRUNER),
                **search,
            },
            {"name": "benchmark", "type": "benchmark", "models": ["teacher", "search"], "warmup": 1, "runs": 3},
        ],
    }


def write(folder, data) -> str:
    return str(write_recipe(folder, data, "search-demo.yaml"))


@pytest.fixture(scope="module")
def searched(clinc_dir, tmp_path_factory):
    """One run of the recipe, counting how often the teacher's logits were computed."""
    root = tmp_path_factory.mktemp("search")
    tiny_bert(root / "teacher", layers=2)
    path = write(root, recipe(str(clinc_dir)))
    calls = []
    real = distillation.teacher_logits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distillation, "teacher_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
        run = Runner(output_root=root / "out").run(load_recipe(path))
    stage_dir = run.out_dir / "search"
    record = json.loads((stage_dir / ".stage.json").read_text())
    return root, path, stage_dir, record["metrics"], len(calls)


def test_hopeless_trials_are_pruned_and_counted(searched):
    *_, stage_dir, metrics, _ = searched
    states = {t["number"]: t["state"] for t in metrics["trials"]}
    assert sorted(states) == list(range(N_TRIALS))
    assert states[0] == "pruned" and states[1] == "complete"
    for trial in metrics["trials"]:  # the forced rule: 2-epoch trials stop after epoch 1
        assert trial["state"] == ("pruned" if trial["params"]["epochs"] == 2 else "complete"), trial
    assert metrics["n_pruned"] == sum(s == "pruned" for s in states.values()) >= 1
    assert metrics["n_complete"] + metrics["n_pruned"] == N_TRIALS and metrics["n_failed"] == 0
    table = json.loads((stage_dir / "study" / "trials.json").read_text())
    pruned = next(t for t in table["trials"] if t["number"] == 0)
    # Stopped after its first epoch (half its schedule: reported at 10% ... 50%), valued as it was then.
    assert list(pruned["reported"]) == ["10", "20", "30", "40", "50"] and pruned["epochs_trained"] == 1
    assert pruned["values"] == [pruned["reported"]["50"]] and pruned["values"][0] < PRUNER["lower"]
    assert table["counts"] == {"complete": metrics["n_complete"], "pruned": metrics["n_pruned"], "failed": 0}
    assert table["pruner"].startswith("threshold")


def test_best_trial_is_the_best_complete_trial(searched):
    *_, metrics, _ = searched
    complete = [t for t in metrics["trials"] if t["state"] == "complete"]
    best = metrics["best_trial"]
    assert best["value"] == max(t["values"][0] for t in complete) == metrics["eval_accuracy"]
    kept = next(t for t in complete if t["number"] == best["number"])
    assert kept["params"] == best["params"] and best["retrained"] is False
    assert best["rule"] == "the trial with the highest eval accuracy"


def test_params_lie_within_the_space_and_enqueued_ones_come_first(searched):
    *_, metrics, _ = searched
    for trial in metrics["trials"]:
        assert set(trial["params"]) == set(SPACE)
        assert trial["params"]["epochs"] in SPACE["epochs"]["choices"]
        for name in ("alpha", "learning_rate"):
            assert SPACE[name]["low"] <= trial["params"][name] <= SPACE[name]["high"], trial
    assert [metrics["trials"][i]["params"] for i in (0, 1)] == ENQUEUE


def test_output_is_the_best_student_alone(searched):
    root, path, stage_dir, metrics, _ = searched
    assert (stage_dir / "model.safetensors").is_file()
    assert not (stage_dir.parent / STATE_DIR).exists(), "the state folder outlived the finished stage"
    classifier = load_classifier(stage_dir, 1)
    assert classifier.model.config.num_hidden_layers == 1
    # Its accuracy on the eval rows is the value the search recorded for it.
    loaded = load_recipe(path)
    rows = RecipeData(loaded.recipe.dataset, loaded.recipe.seed, loaded.base_dir).split("eval")
    predicted = classifier.logits(list(rows["text"])).argmax(-1)
    accuracy = float(np.mean(predicted == np.array(rows["label"])))
    assert accuracy == pytest.approx(metrics["best_trial"]["value"])


def test_study_table_and_plots_are_in_the_output(searched):
    *_, stage_dir, metrics, _ = searched
    study = stage_dir / "study"
    for name in ("optimization_history.png", "intermediate_values.png", "param_importances.png", "study.db"):
        assert (study / name).stat().st_size > 1000, name
    assert (study / "optimization_history.png").read_bytes()[:4] == b"\x89PNG"
    table = json.loads((study / "trials.json").read_text())
    assert table["best"] == metrics["best_trial"]["number"] and table["objectives"] == ["maximize eval_accuracy"]
    assert set(table["plots"]) == {"optimization_history", "intermediate_values", "param_importances"}
    for trial in table["trials"]:
        assert trial["duration_s"] > 0 and trial["worker"]


def test_card_shows_the_trials_and_the_repo_has_the_plots(searched, tmp_path):
    from hubtools.card import parse_markdown_table
    from hubtools.push import stage_repo_folder
    from hubtools.runinfo import RunInfo, plan_layout

    *_, stage_dir, metrics, _ = searched
    info = RunInfo(stage_dir.parent)
    folder = stage_repo_folder(info, plan_layout(info), "local/search-demo", tmp_path / "repo", hub_url="http://hub")
    text = (folder / "README.md").read_text()
    rows = parse_markdown_table(text, "Trial")
    assert len(rows) == N_TRIALS
    kept = next(r for r in rows if r["Trial"].endswith("(kept)"))
    assert kept["Trial"] == f"{metrics['best_trial']['number']} (kept)" and kept["State"] == "complete"
    assert {r["State"] for r in rows} == {"complete", "pruned"}
    assert next(r for r in rows if r["Trial"] == "0")["Epochs trained"] == "1"
    assert f"{N_TRIALS} trials counted: {metrics['n_complete']} complete, {metrics['n_pruned']} stopped early" in text
    for name in ("optimization_history", "intermediate_values", "param_importances"):
        assert f"(study/{name}.png)" in text and (folder / "study" / f"{name}.png").is_file()
    assert (folder / "study" / "study.db").is_file() and (folder / "study" / "trials.json").is_file()
    assert "- `alpha` = " in text


def test_trials_share_the_teacher_logits(searched):
    *_, teacher_logit_calls = searched
    assert teacher_logit_calls == 1


def test_second_run_is_cached(searched):
    root, path, *_ = searched
    runner = Runner(output_root=root / "out")
    run = runner.run(load_recipe(path))
    assert [s.status for s in run.stages] == ["cached", "cached"]


def test_two_objectives_keep_a_pareto_optimal_trial_by_the_stated_rule(clinc_dir, tmp_path):
    """eval accuracy up, size down, with the student's layers in the space: the card's rule."""
    tiny_bert(tmp_path / "teacher", layers=2)
    data = recipe(str(clinc_dir), minimize="size_mb", select_within=1.0)
    search = data["stages"][0]
    del search["keep_layers"], search["pruner"], search["enqueue"]
    search.update(n_trials=3, epochs=1, space={"keep_layers": {"choices": [[0], [0, 1]]}})
    search["enqueue"] = [{"keep_layers": [0, 1]}, {"keep_layers": [0]}]
    data["stages"] = data["stages"][:1]
    run = Runner(output_root=tmp_path / "out").run(load_recipe(write(tmp_path, data)))
    stage_dir = run.out_dir / "search"
    metrics = json.loads((stage_dir / ".stage.json").read_text())["metrics"]
    table = json.loads((stage_dir / "study" / "trials.json").read_text())
    assert table["objectives"] == ["maximize eval_accuracy", "minimize size_mb"]
    # within 1.0 of the best accuracy is every trial: the smallest model wins, the 1-layer one
    assert metrics["best_trial"]["params"] == {"keep_layers": "0"} and metrics["student_layers"] == 1
    assert "the Pareto-optimal trial with the lowest size_mb" in metrics["best_trial"]["rule"]
    assert metrics["best_trial"]["number"] in table["pareto_front"]
    assert (stage_dir / "study" / "pareto_front.png").is_file()


BAD_SPACES = [
    (
        "unknown parameter",
        lambda s: s["space"].update(dropout={"low": 0.0, "high": 0.5}),
        [
            "'dropout' cannot be searched",
            "alpha, attention_weight, batch_size",
            "stages -> search -> space -> dropout",
        ],
    ),
    (
        "layers as a range",
        lambda s: s["space"].update(keep_layers={"low": 0, "high": 1}),
        ["keep_layers takes `choices` of layer lists"],
    ),
    (
        "a layer list for a number",
        lambda s: s["space"].update(temperature={"choices": [[1, 2]]}),
        ["a layer list is a choice for keep_layers only"],
    ),
    (
        "low not below high",
        lambda s: s["space"].update(temperature={"low": 5.0, "high": 1.0}),
        ["low (5) must be less than high (1)", "stages -> search -> space -> temperature"],
    ),
    ("fixed and searched", lambda s: s.update(alpha=0.3), ["'alpha' both fixed and searched", "stages -> search"]),
    (
        "outside the field's limits",
        lambda s: s["space"].update(alpha={"low": 0.0, "high": 1.5}),
        ["space -> alpha -> high: 1.5 is not a valid alpha", "less than or equal to 1"],
    ),
    (
        "log range from zero",
        lambda s: s["space"].update(learning_rate={"low": 0.0, "high": 0.1, "log": True}),
        ["a log range needs low > 0"],
    ),
    (
        "range and choices",
        lambda s: s["space"].update(epochs={"low": 1, "choices": [1, 2]}),
        ["give either `low` and `high`", "or `choices: [...]`"],
    ),
    (
        "enqueued values outside the space",
        lambda s: s.update(enqueue=[{"alpha": 2.0}]),
        ["enqueue[0]: alpha=2.0 is not in the space"],
    ),
    ("threshold without lower", lambda s: s.update(pruner="threshold"), ["`lower` goes with `type: threshold`"]),
    (
        "unknown pruner",
        lambda s: s.update(pruner="hyperband"),
        ["stages -> search -> pruner", "'median', 'threshold' or 'none'"],
    ),
    (
        "pruning two objectives",
        lambda s: s.update(minimize="size_mb", pruner="median"),
        ["Optuna prunes single-objective studies only"],
    ),
    ("select_within alone", lambda s: s.update(select_within=0.01), ["select_within picks among Pareto-optimal"]),
    (
        "a password in the storage URL",
        lambda s: s.update(storage="postgresql+psycopg://me:secret@db:5432/optuna"),
        ["the URL holds a password", "PGPASSWORD"],
    ),
    ("not a URL", lambda s: s.update(storage="my database"), ["not a SQLAlchemy database URL"]),
]


@pytest.mark.parametrize("title, mutate, expected", BAD_SPACES, ids=[c[0] for c in BAD_SPACES])
def test_bad_space_is_refused(tmp_path, title, mutate, expected):
    data = recipe("clinc_oos")
    mutate(data["stages"][0])
    path = write(tmp_path, data)
    with pytest.raises(RecipeValidationError) as err:
        load_recipe(path)
    message = err.value.message
    assert message.startswith(path), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_pruner_forms():
    from recipes.stages.search import PrunerSpec

    assert PrunerSpec.model_validate("none").type == "none"
    spec = {"type": "median", "axis": "epoch", "startup_trials": 2, "warmup_epochs": 1}
    median = PrunerSpec.model_validate(spec).make()
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 2)  # 1-based epochs: first check after epoch 2
    schedule = PrunerSpec.model_validate({"type": "median", "warmup_share": 0.3}).make()
    assert schedule._n_warmup_steps == 30  # percent of each trial's schedule


def test_schedule_steps_put_trials_of_any_length_on_one_axis():
    from recipes.stages.search import schedule_steps

    assert schedule_steps(1, 5, set()) == [10, 20] and schedule_steps(2, 5, {10, 20}) == [30, 40]
    assert schedule_steps(1, 10, set()) == [10] and schedule_steps(4, 10, {10, 20, 30}) == [40]
    assert schedule_steps(3, 8, {10, 20}) == [30] and schedule_steps(8, 8, set(range(10, 100, 10))) == [100]


@pytest.mark.parametrize(("axis", "pruned"), [("epoch", True), ("schedule", False)])
def test_a_long_schedule_is_judged_at_the_same_share_of_its_training(axis, pruned):
    """A hand-made study: two 5-epoch trials learn fast and finish at 0.90; a 10-epoch trial learns
    slower but ends higher. After its 4th epoch it is behind the short trials' 4th epoch (their
    near-final 0.88) yet ahead of where they were at 40% of their schedule (their 2nd epoch, 0.75):
    the epoch axis stops it, the schedule axis lets it go on."""
    import optuna

    from recipes.stages.search import PrunerSpec, schedule_steps

    short = [0.60, 0.75, 0.82, 0.88, 0.90]
    long = [0.50, 0.62, 0.70, 0.78]  # its first 4 of 10 epochs
    study = optuna.create_study(
        direction="maximize", pruner=PrunerSpec(type="median", axis=axis, startup_trials=2).make()
    )

    def steps(epoch, epochs, reported):
        return [epoch] if axis == "epoch" else schedule_steps(epoch, epochs, reported)

    for _ in range(2):
        trial, reported = study.ask(), set()
        for epoch, value in enumerate(short, 1):
            for step in steps(epoch, 5, reported):
                trial.report(value, step)
                reported.add(step)
        study.tell(trial, short[-1])
    trial, reported = study.ask(), set()
    for epoch, value in enumerate(long, 1):
        for step in steps(epoch, 10, reported):
            trial.report(value, step)
            reported.add(step)
    assert bool(trial.should_prune()) is pruned
