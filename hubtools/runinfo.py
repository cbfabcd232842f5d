"""A finished run folder (``<output root>/<scope>/<recipe>/``) read for publishing.

Everything is read through :mod:`recipes.runfolder`'s records. :class:`RunInfo` holds the
run record, the benchmark result and ``recipe.yaml``; :meth:`RunInfo.lineage` walks the
published model back through its inputs (across recipes of the same scope folder, through
their run records) to the model it started from; :func:`plan_layout` decides which models
of that line go where in the Hub repo. Where a model goes is its stage type's
:class:`~recipes.stages.base.Publishing` ``repo_dir`` (a model no stage made, a ``models:``
entry, counts as PyTorch at the root); what goes there is its format's weight files. Today::

    model.safetensors, config.json, tokenizer files   the nearest model with repo_dir "" (pipeline() loads it)
    int8/quantized_state_dict.pt                      quantize-dynamic
    onnx/model.onnx | model_optimized.onnx | model_quantized.onnx   export-onnx, ort-optimize, ort-quantize
    model2vec/model.safetensors, head.safetensors, config.json, tokenizer.json   export-model2vec

The nearest model on the line wins a place (a file name, or the root) that a farther one
would take too. The layout goes to the repo as ``layout.json`` so ``hubtools verify`` knows
which file each benchmark row is for and how to load it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recipes.errors import RunFolderError
from recipes.runfolder import (
    BENCHMARK_FILE,
    FORMAT_FILE,
    PYTORCH,
    RUN_FILE,
    BenchmarkResult,
    Publishing,
    RunFolder,
    RunRecord,
    StageEntry,
    read_format,
)

LAYOUT_FILE = "layout.json"
#: A ``models:`` entry no stage made: a ``save_pretrained`` folder, published at the root
#: (with the PyTorch usage snippet) when it is the nearest PyTorch model on the line.
STARTING_MODEL = Publishing(repo_dir="", usage="usage/pytorch.md.j2")
#: The Hub's limit on the name part of a repo id.
REPO_NAME_LIMIT = 96


# --- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRef:
    """The dataset a run trained and measured on, as cards and repo ids name it."""

    id: str  # the Hub id, or the folder name of a local dataset
    config: str | None = None
    local: bool = False

    @classmethod
    def of(cls, section: dict, base_dir: Path | None = None) -> DatasetRef:
        """From a run's resolved ``dataset`` section (``base_dir``: the recipe file's folder)."""
        ident = str(section["id"])
        local = ident.startswith((".", "/", "~")) or (base_dir is not None and (base_dir / ident).exists())
        return cls(Path(ident.rstrip("/")).name if local else ident, section.get("config"), local)

    @property
    def short(self) -> str:
        """The name without the Hub namespace: ``clinc_oos`` for ``clinc/clinc_oos``."""
        return self.id.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        """``clinc_oos (plus)``: the id and configuration, for titles and tables."""
        return f"{self.id} ({self.config})" if self.config else self.id


def _name_part(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    text = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", ".", text))
    return text.strip("-.")


def default_repo_id(namespace: str, base: str, dataset: DatasetRef, recipe: str) -> str:
    """``<namespace>/<base>-<dataset>[-<config>]-<recipe>``, e.g.
    ``local/all-MiniLM-L6-v2-clinc_oos-plus-kd-quant``; a name past the Hub's 96 characters
    keeps the recipe and a hash of the whole name, and shortens the rest."""
    parts = [_name_part(p) for p in (base, dataset.short, dataset.config or "", recipe)]
    name = "-".join(p for p in parts if p)
    if len(name) > REPO_NAME_LIMIT:
        tail = f"-{hashlib.sha256(name.encode()).hexdigest()[:8]}-{parts[-1]}"
        head = "-".join(p for p in parts[:-1] if p)
        name = _name_part(head[: max(REPO_NAME_LIMIT - len(tail), 1)]) + tail
        name = _name_part(name[-REPO_NAME_LIMIT:])
    return f"{namespace}/{name}"


# --- the line of descent -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One model on the published model's line of descent."""

    name: str  # its name in the recipe that made it (a stage) or declared it (a models: key)
    recipe: str
    stage_type: str | None  # None for a models: entry that no recipe made (the root)
    path: Path | None
    format: str | None
    source: str | None = None  # the root's models: value (a Hub id or a local folder)
    spec: dict = field(default_factory=dict)  # the stage's resolved settings
    metrics: dict = field(default_factory=dict)  # the stage's recorded metrics
    is_final: bool = False  # the model its recipe publishes
    publish_repo_id: str | None = None  # its recipe's publish.repo_id
    publishing: Publishing = STARTING_MODEL  # its stage type's declaration, as run.json records it

    @property
    def is_hub_id(self) -> bool:
        """A Hub model (resolved into the Hub cache as ``models--org--name``), not a local folder."""
        return bool(self.source and self.path) and f"models--{self.source.replace('/', '--')}" in str(self.path)


def benchmark_entry(record: RunRecord, where: Path) -> StageEntry:
    """The run's last stage that wrote a benchmark result (``benchmark.json``)."""
    measured = [e for e in record.stage_entries() if BENCHMARK_FILE in e.outputs]
    if not measured:
        raise RunFolderError(
            f"{where}: recipe {record.recipe!r} has no benchmark stage, so there are no numbers for the "
            "card; add a `type: benchmark` stage that measures the published model."
        )
    return measured[-1]


def resolved_stage(record: RunRecord, name: str) -> dict:
    """The resolved settings of stage ``name`` (as the recipe ran it)."""
    return next(s for s in record.resolved["stages"] if s["name"] == name)


class RunInfo:
    """``<output root>/<scope>/<recipe>/`` of a finished run."""

    def __init__(self, run_dir: Path):
        self.folder = RunFolder(Path(run_dir), Path(run_dir).parent.name)
        self.run_dir = self.folder.path
        self.record = self.folder.read_run()
        if not self.record.finished:
            raise RunFolderError(
                f"{self.run_dir}: the run's status is {self.record.status!r}, not 'finished'; "
                "rerun the recipe (finished stages are reused) before publishing."
            )
        self.name: str = self.record.recipe
        self.final_model: str = self.record.final_model or ""
        if not self.final_model:
            raise RunFolderError(
                f"{self.run_dir}: run.json names no final_model; the recipe makes no model to publish."
            )
        entry = benchmark_entry(self.record, self.run_dir)
        self.benchmark_path = self.folder.stage_dir(entry.name) / BENCHMARK_FILE
        self.benchmark = BenchmarkResult.from_file(self.benchmark_path)
        self.benchmark_spec: dict = resolved_stage(self.record, entry.name)
        try:
            self.recipe_yaml = self.folder.read_recipe()
        except OSError as err:
            raise RunFolderError(
                f"{self.run_dir}: cannot read the resolved recipe ({err}); rerun the recipe."
            ) from None

    @property
    def dataset(self) -> DatasetRef:
        return DatasetRef.of(self.record.resolved["dataset"], Path(self.record.recipe_file).parent)

    @property
    def publish(self) -> dict:
        return self.record.resolved.get("publish") or {}

    def model_path(self, name: str) -> Path:
        entry = self.record.models.get(name)
        return Path(entry["path"]) if entry else self.folder.stage_dir(name)

    def lineage(self) -> list[Hop]:
        """The published model, then its input, its input's input... back to a ``models:`` entry.

        A ``{recipe, stage}`` entry continues in that recipe's run record (a sibling folder in
        the scope folder); if that run is not there, the walk stops at the entry.
        """
        hops: list[Hop] = []
        run, run_dir, name = self.record, self.run_dir, self.final_model
        for _ in range(100):
            entries = {e.name: e for e in run.stage_entries()}
            path = Path(run.models[name]["path"]) if name in run.models else run_dir / name
            fmt = read_format(path).format if path.is_dir() else None
            if name in entries:
                entry = entries[name]
                hops.append(
                    Hop(
                        name,
                        run.recipe,
                        entry.type,
                        path,
                        fmt,
                        spec=resolved_stage(run, name),
                        metrics=entry.metrics or {},
                        is_final=name == run.final_model,
                        publish_repo_id=(run.resolved.get("publish") or {}).get("repo_id"),
                        publishing=entry.published_as,
                    )
                )
                name = entry.refs.get("input")
                if name is None:
                    break
                continue
            source = run.resolved["models"].get(name)
            dep_dir = run_dir.parent / source["recipe"] if isinstance(source, dict) else None
            if dep_dir is not None and (dep_dir / RUN_FILE).is_file():
                run, run_dir, name = RunRecord.read(dep_dir), dep_dir, source["stage"]
                continue
            hops.append(Hop(name, run.recipe, None, path, fmt, source if isinstance(source, str) else None))
            break
        return hops

    @property
    def root(self) -> Hop:
        return self.lineage()[-1]

    @property
    def base_short_name(self) -> str:
        """``all-MiniLM-L6-v2`` for a run that started from sentence-transformers/all-MiniLM-L6-v2."""
        root = self.root
        return Path(root.source.rstrip("/")).name if root.source else root.name

    def default_repo_id(self, namespace: str, recipe: str | None = None) -> str:
        """Where ``recipe`` (default: this one) of this run's scope is pushed by default."""
        return default_repo_id(namespace, self.base_short_name, self.dataset, recipe or self.name)

    def tags(self) -> list[str]:
        """The declared tags of the recipe's stage types and of those on the line, + the recipe."""
        declared = [e.published_as for e in self.record.stage_entries()] + [h.publishing for h in self.lineage()]
        return sorted({p.tag for p in declared} - {None}) + [self.name]


# --- the repo layout -------------------------------------------------------------------------------


@dataclass
class RowPlace:
    """Where a benchmark row's model is in the repo (``files`` empty: not published there)."""

    format: str
    repo_dir: str = ""
    files: list[str] = field(default_factory=list)
    format_extra: dict = field(default_factory=dict)  # its model_format.json besides format and weights

    @property
    def in_repo(self) -> bool:
        return bool(self.files)

    @property
    def shown(self) -> str:
        return ", ".join(self.files) if self.files else "not in this repo"


@dataclass
class Placed:
    """A model of the line that goes into the repo."""

    hop: Hop
    repo_dir: str
    files: dict[str, str]  # path in the repo -> file name in the model's folder
    usage: str | None  # card partial

    @property
    def place(self) -> RowPlace:
        fmt = read_format(self.hop.path)
        return RowPlace(fmt.format, self.repo_dir, list(self.files), fmt.extra)


@dataclass
class Layout:
    """Which models of the line fill the repo, and where each benchmark row's files are."""

    final_model: str
    starting_model: str  # the line's first model: a Hub id or a local folder's name
    placed: list[Placed]  # the root model first, then the others, oldest first
    rows: dict[str, RowPlace]

    @property
    def root(self) -> Placed:
        return self.placed[0]

    @property
    def root_files(self) -> list[str]:
        return list(self.root.files)

    def to_json(self) -> str:
        rows = {name: asdict(place) for name, place in self.rows.items()}
        payload = {
            "final_model": self.final_model,
            "starting_model": self.starting_model,
            "root_files": self.root_files,
            "rows": rows,
        }
        return json.dumps(payload, indent=2) + "\n"

    def copies(self) -> list[tuple[Path, str]]:
        """(file on disk, path in the repo) for every model file the repo gets: the root model's
        whole folder (config, tokenizer, weights; no bookkeeping), the others' weight files."""
        root = self.root.hop.path
        out = [
            (p, p.name)
            for p in sorted(root.iterdir())
            if p.is_file() and p.name != FORMAT_FILE and not p.name.startswith(".")
        ]
        for placed in self.placed[1:]:
            out += [(placed.hop.path / name, repo_path) for repo_path, name in placed.files.items()]
        return out


def read_layout(text: str) -> tuple[list[str], dict[str, RowPlace]]:
    """The root weight files and the rows of a pushed ``layout.json``."""
    data = json.loads(text)
    return data["root_files"], {name: RowPlace(**place) for name, place in data["rows"].items()}


def plan_layout(info: RunInfo) -> Layout:
    """The repo layout for ``info``'s published model: see the module docstring."""
    hops = info.lineage()
    candidates = [h for h in hops if h.path is not None and h.path.is_dir() and h.publishing.repo_dir is not None]
    root = next((h for h in candidates if h.publishing.repo_dir == "" and h.format == PYTORCH), None)
    if root is None:
        raise RunFolderError(
            f"{info.run_dir}: no PyTorch fp32 model on the line of {info.final_model!r} "
            f"({' <- '.join(h.name for h in hops)}), so pipeline() could not load the repo."
        )
    placed = [Placed(root, "", {w: w for w in read_format(root.path).weights}, root.publishing.usage)]
    taken = set(placed[0].files)
    for hop in candidates:  # nearest first: it wins a name a farther model would take too
        repo_dir = hop.publishing.repo_dir
        if hop is root or repo_dir == "":
            continue
        files = {f"{repo_dir}/{w}": w for w in read_format(hop.path).weights}
        if files and not taken & set(files):
            placed.insert(1, Placed(hop, repo_dir, files, hop.publishing.usage))
            taken |= set(files)
    by_path = {p.hop.path.resolve(): p.place for p in placed}
    rows = {}
    for row in info.benchmark.models:
        rows[row["name"]] = by_path.get(info.model_path(row["name"]).resolve()) or RowPlace(row["format"])
    if not rows.get(info.final_model, RowPlace("")).in_repo:
        raise RunFolderError(
            f"{info.benchmark_path}: the published model {info.final_model!r} is not one of the measured "
            f"models {list(rows)}; add it to the benchmark stage's models."
        )
    start = hops[-1]
    starting = start.source if start.is_hub_id else Path((start.source or start.name).rstrip("/")).name
    return Layout(info.final_model, starting, placed, rows)
