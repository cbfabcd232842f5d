"""The card's search section: what a search stage on the published model's line tried.

The stage leaves ``study/`` in its output (see :mod:`recipes.ml.study`): ``trials.json`` (every
trial that ran: number, state, parameters, value(s), per-epoch values, duration), Optuna's
matplotlib plots as PNGs and ``study.db``. :func:`search_section` turns the nearest one on the
line into :class:`SearchSection` (the trials table built here, in Python); :func:`copy_study`
puts the files into the repo's ``study/`` folder, where the card's images point.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hubtools.runinfo import Hop
from hubtools.tables import markdown_table
from recipes.runfolder import STUDY_DB, STUDY_DIR, TRIALS_FILE, TrialsRecord


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class SearchSection:
    """What the card says about the search: ``record`` is the stage's ``trials.json``."""

    stage: str
    recipe: str
    record: dict
    table: str = ""
    plots: list[dict] = field(default_factory=list)  # {"file": "study/<name>.png", "title": ...}
    has_db: bool = False

    @property
    def counts(self) -> dict:
        return self.record["counts"]

    @property
    def kept(self) -> dict:
        return next(t for t in self.record["trials"] if t["number"] == self.record["best"])

    @property
    def multi_objective(self) -> bool:
        return len(self.record["objectives"]) > 1


def study_dir_of(hops: list[Hop]) -> tuple[Hop, Path] | None:
    """The nearest stage on the line whose output holds a study, and that folder."""
    for hop in hops:
        if hop.stage_type and hop.path is not None and (hop.path / STUDY_DIR / TRIALS_FILE).is_file():
            return hop, hop.path / STUDY_DIR
    return None


def trials_table(record: dict) -> str:
    """One row per trial that ran: its parameters, value(s), epochs trained, state and duration."""
    trials = record["trials"]
    params = list(dict.fromkeys(k for t in trials for k in t["params"]))
    objectives = [o.split(" ", 1)[1] for o in record["objectives"]]
    header = ["Trial", *params, *objectives, "Epochs trained", "State", "Duration (s)"]
    rows = []
    for t in trials:
        number = f"{t['number']} (kept)" if t["number"] == record["best"] else str(t["number"])
        values = t["values"] or []
        shown = [_value(values[i]) if i < len(values) else "-" for i in range(len(objectives))]
        trained = t.get("epochs_trained")
        if not values and t["reported"] and trained and len(objectives) == 1:
            shown = [f"{_value(list(t['reported'].values())[-1])} (epoch {trained})"]
        rows.append(
            [
                number,
                *(_value(t["params"][p]) if p in t["params"] else "-" for p in params),
                *shown,
                trained or "-",
                t["state"],
                _value(t["duration_s"]) if t["duration_s"] is not None else "-",
            ]
        )
    right = set(range(1, len(header) - 2)) | {len(header) - 1}
    return markdown_table(header, rows, right=right)


def search_section(hops: list[Hop]) -> SearchSection | None:
    """The card's search section for the line ``hops`` (nearest first), or None without a study."""
    found = study_dir_of(hops)
    if found is None:
        return None
    hop, folder = found
    record = TrialsRecord.read(folder).to_dict()
    plots = [
        {"file": f"{STUDY_DIR}/{p['file']}", "title": p["title"]}
        for p in (record.get("plots") or {}).values()
        if (folder / p["file"]).is_file()
    ]
    return SearchSection(
        stage=hop.name,
        recipe=hop.recipe,
        record=record,
        table=trials_table(record),
        plots=plots,
        has_db=(folder / STUDY_DB).is_file(),
    )


def copy_study(hops: list[Hop], out_dir: Path) -> list[str]:
    """Copy the study's table, plots and database into ``out_dir/study/``; the repo paths."""
    found = study_dir_of(hops)
    if found is None:
        return []
    _, folder = found
    target = Path(out_dir) / STUDY_DIR
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".png", ".json") or path.name == STUDY_DB):
            shutil.copy2(path, target / path.name)
            copied.append(f"{STUDY_DIR}/{path.name}")
    return copied
