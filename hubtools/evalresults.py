"""``.eval_results/*.yaml``: the published model's results in the Hub's current format, one file per
metric (the card's ``model-index`` is the older form of the same numbers).

Each file is a list with one entry, as the Hub reads it::

    - dataset: {id: clinc_oos, task_id: plus-accuracy}
      value: 0.8902
      date: '2026-12-02'
      source: {url: <hub>/<repo>/blob/main/benchmark.json, name: benchmark.json}
      notes: test split, 5500 rows; 95% interval [0.8817, 0.8983]; ...

huggingface_hub 0.36 has no reader for these (its ``EvalResultEntry`` is newer), so
:func:`read_eval_results` checks the fields the Hub requires (``dataset.id``, ``value``) itself.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from hubtools.errors import VerificationFailedError

EVAL_RESULTS_DIR = ".eval_results"


def task_id(config: str | None, metric_type: str) -> str:
    """The ``task_id`` of one metric's file: ``plus-accuracy`` (a dataset's config, then the metric)."""
    return "-".join(part for part in (config, metric_type) if part)


def eval_result_files(card, date: str) -> dict[str, str]:
    """Repo path -> YAML text, one file per metric of ``card.eval_results`` (a filled ``CardData``)."""
    files = {}
    for result in card.eval_results:
        task = task_id(result.dataset_config, result.metric_type)
        interval = (result.metric_args or {}).get("ci95")
        notes = [f"{result.dataset_split} split"]
        limited = (result.dataset_args or {}).get("max_samples")
        notes.append(
            f"{limited} rows sampled (seed {result.dataset_args['seed']})" if limited else f"{card.n_test} rows"
        )
        if interval:
            notes.append(f"95% interval [{interval[0]:.4f}, {interval[1]:.4f}]")
        notes.append(f"{result.metric_name}, model `{card.final_model}` of recipe `{card.recipe}`")
        entry = {
            "dataset": {"id": result.dataset_type, "task_id": task},
            "value": result.metric_value,
            "date": date,
            "source": {"url": result.source_url, "name": result.source_name},
            "notes": "; ".join(notes),
        }
        if result.dataset_revision:
            entry["dataset"]["revision"] = result.dataset_revision
        name = f"{Path(result.dataset_type).name}-{task}.yaml"
        files[f"{EVAL_RESULTS_DIR}/{name}"] = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True)
    return files


def read_eval_results(folder: Path) -> dict[str, dict]:
    """``file name -> entry`` of a repo's ``.eval_results/`` (empty without one); an entry that is
    not the Hub's form is a :class:`~hubtools.errors.VerificationFailedError` naming the file."""
    found = {}
    for path in sorted((Path(folder) / EVAL_RESULTS_DIR).glob("*.yaml")):
        try:
            entries = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise VerificationFailedError(f"{EVAL_RESULTS_DIR}/{path.name} is not YAML: {err}") from None
        if not isinstance(entries, list) or not entries:
            raise VerificationFailedError(f"{EVAL_RESULTS_DIR}/{path.name}: expected a list of results")
        for entry in entries:
            dataset = entry.get("dataset") if isinstance(entry, dict) else None
            if (
                not isinstance(dataset, dict)
                or not dataset.get("id")
                or not isinstance(entry.get("value"), (int, float))
            ):
                raise VerificationFailedError(
                    f"{EVAL_RESULTS_DIR}/{path.name}: each result needs dataset.id and a numeric value"
                )
        found[path.name] = entries[0]
    return found
