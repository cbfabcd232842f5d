"""A finished recipe run folder (``outputs/<recipe>/``) read for publishing.

:class:`RunInfo` holds ``run.json``, ``benchmark.json`` and ``recipe.yaml``; :meth:`RunInfo.lineage`
walks the published model back through its inputs (across recipes, through their ``run.json``)
to the model it started from; :func:`plan_layout` decides which of the run's models go where
in the Hub repo. The layout is written to the repo as ``layout.json`` so ``hubtools verify``
knows which file each benchmark row is for::

    model.safetensors, config.json, tokenizer files   the nearest PyTorch fp32 model (pipeline() loads it)
    int8/quantized_state_dict.pt                      a PyTorch dynamic int8 model, if published
    onnx/model.onnx | model_optimized.onnx | model_quantized.onnx   ONNX models on the published model's line
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recipes.modelio import PYTORCH, PYTORCH_DYNAMIC_INT8, QUANTIZED_STATE_FILE, read_format
from recipes.onnxio import ONNX, REPO_ONNX_DIR
from recipes.runner import RESOLVED_RECIPE_FILE, RUN_FILE
from recipes.stages.benchmark import BENCHMARK_FILE

from hubtools.errors import RunFolderError

LAYOUT_FILE = "layout.json"
INT8_DIR = "int8"
#: Stage types that train weights (the card calls the result a fine-tune of its base).
TRAINING_TYPES = {"finetune", "distill", "search-distill"}
#: Stage types that only quantize weights.
QUANTIZE_TYPES = {"quantize-dynamic", "ort-quantize"}
#: Stage type -> card tag.
TAGS_BY_TYPE = {
    "distill": "distillation",
    "search-distill": "distillation",
    "quantize-dynamic": "quantization",
    "ort-quantize": "quantization",
    "export-onnx": "onnx",
    "ort-optimize": "onnx",
}


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

    @property
    def is_hub_id(self) -> bool:
        """A Hub model (resolved into the Hub cache as ``models--org--name``), not a local folder."""
        return bool(self.source and self.path) and f"models--{self.source.replace('/', '--')}" in str(self.path)


@dataclass
class RowPlace:
    """Where a benchmark row's model is in the repo (``files`` empty: not published there)."""

    format: str
    subfolder: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def in_repo(self) -> bool:
        return bool(self.files)

    @property
    def shown(self) -> str:
        return ", ".join(self.files) if self.files else "not in this repo"


@dataclass
class Layout:
    """Which run folders fill the repo, and where each benchmark row's files are."""

    final_model: str
    pytorch_dir: Path  # goes to the repo root
    root_files: list[str]  # its weight files
    onnx_dirs: list[Path]
    int8_dir: Path | None
    rows: dict[str, RowPlace]

    def to_json(self) -> str:
        rows = {name: asdict(place) for name, place in self.rows.items()}
        payload = {"final_model": self.final_model, "root_files": self.root_files, "rows": rows}
        return json.dumps(payload, indent=2) + "\n"

    @property
    def has_onnx(self) -> bool:
        return bool(self.onnx_dirs)

    def onnx_files(self) -> list[str]:
        return [f for p in self.rows.values() if p.format == ONNX for f in p.files]


def read_layout(text: str) -> tuple[list[str], dict[str, RowPlace]]:
    """The root weight files and the rows of a pushed ``layout.json``."""
    data = json.loads(text)
    return data["root_files"], {name: RowPlace(**place) for name, place in data["rows"].items()}


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise RunFolderError(f"{path.parent}: no {path.name} ({what}). Run the recipe first: python -m recipes run <name>.")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise RunFolderError(f"{path}: not valid JSON ({err}); rerun the recipe to rewrite it.") from None


class RunInfo:
    """``outputs/<recipe>/`` of a finished run."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run = _read_json(self.run_dir / RUN_FILE, "the run record")
        if self.run.get("status") != "finished":
            raise RunFolderError(
                f"{self.run_dir}: the run's status is {self.run.get('status')!r}, not 'finished'; "
                "rerun the recipe (finished stages are reused) before publishing."
            )
        self.name: str = self.run["recipe"]
        self.final_model: str = self.run.get("final_model") or ""
        if not self.final_model:
            raise RunFolderError(f"{self.run_dir}: run.json names no final_model; the recipe makes no model to publish.")
        self.benchmark_path = self._benchmark_path()
        self.benchmark = _read_json(self.benchmark_path, "the benchmark results")
        self.recipe_yaml = (self.run_dir / RESOLVED_RECIPE_FILE).read_text()

    def _benchmark_path(self) -> Path:
        stages = [s["name"] for s in self.run["resolved"]["stages"] if s["type"] == "benchmark"]
        if not stages:
            raise RunFolderError(
                f"{self.run_dir}: recipe {self.name!r} has no benchmark stage, so there are no numbers "
                "for the card; add a `type: benchmark` stage that measures the published model."
            )
        return self.run_dir / stages[-1] / BENCHMARK_FILE

    @property
    def benchmark_spec(self) -> dict:
        return next(s for s in reversed(self.run["resolved"]["stages"]) if s["type"] == "benchmark")

    @property
    def stage_types(self) -> list[str]:
        """Types of every stage on the published model's line, oldest first."""
        return [h.stage_type for h in reversed(self.lineage()) if h.stage_type]

    def model_path(self, name: str) -> Path:
        entry = self.run["models"].get(name)
        return Path(entry["path"]) if entry else self.run_dir / name

    def lineage(self) -> list[Hop]:
        """The published model, then its input, its input's input... back to a ``models:`` entry.

        A ``{recipe, stage}`` entry continues in that recipe's ``run.json`` (a sibling folder);
        if that run is not there, the walk stops at the entry.
        """
        hops: list[Hop] = []
        run, run_dir, name = self.run, self.run_dir, self.final_model
        for _ in range(100):
            stages = {s["name"]: s for s in run["resolved"]["stages"]}
            path = Path(run["models"][name]["path"]) if name in run["models"] else run_dir / name
            fmt = read_format(path).format if path.is_dir() else None
            if name in stages:
                spec = stages[name]
                metrics = next((s.get("metrics") or {} for s in run["stages"] if s["name"] == name), {})
                publish = run["resolved"].get("publish") or {}
                hops.append(Hop(name, run["recipe"], spec["type"], path, fmt, spec=spec, metrics=metrics,
                                is_final=name == run.get("final_model"), publish_repo_id=publish.get("repo_id")))
                name = spec.get("input")
                if name is None:
                    break
                continue
            source = run["resolved"]["models"].get(name)
            dep_dir = run_dir.parent / source["recipe"] if isinstance(source, dict) else None
            if dep_dir is not None and (dep_dir / RUN_FILE).is_file():
                run, run_dir, name = json.loads((dep_dir / RUN_FILE).read_text()), dep_dir, source["stage"]
                continue
            hops.append(Hop(name, run["recipe"], None, path, fmt, source if isinstance(source, str) else None))
            break
        return hops

    @property
    def root(self) -> Hop:
        return self.lineage()[-1]

    @property
    def base_short_name(self) -> str:
        """``all-MiniLM-L6-v2`` for a run that started from sentence-transformers/all-MiniLM-L6-v2."""
        root = self.root
        return Path(root.source).name if root.source else root.name

    def tags(self) -> list[str]:
        types = {s["type"] for s in self.run["resolved"]["stages"]}
        found = {TAGS_BY_TYPE[t] for t in types | set(self.stage_types) if t in TAGS_BY_TYPE}
        return sorted(found) + [self.name]


def plan_layout(info: RunInfo) -> Layout:
    """The repo layout for ``info``'s published model: see the module docstring."""
    hops = info.lineage()
    pytorch = next((h for h in hops if h.format == PYTORCH), None)
    if pytorch is None:
        raise RunFolderError(
            f"{info.run_dir}: no PyTorch fp32 model on the line of {info.final_model!r} "
            f"({' <- '.join(h.name for h in hops)}), so pipeline() could not load the repo."
        )
    onnx_hops = [h for h in hops if h.format == ONNX]
    int8_hops = [h for h in hops if h.format == PYTORCH_DYNAMIC_INT8]
    if len(int8_hops) > 1:
        raise RunFolderError(f"{info.run_dir}: more than one int8 PyTorch model on the published line: {int8_hops}")
    root_files = read_format(pytorch.path).weights
    placed: dict[Path, RowPlace] = {pytorch.path.resolve(): RowPlace(PYTORCH, "", root_files)}
    for hop in onnx_hops:
        file_name = read_format(hop.path).extra["file_name"]
        placed[hop.path.resolve()] = RowPlace(ONNX, REPO_ONNX_DIR, [f"{REPO_ONNX_DIR}/{file_name}"])
    for hop in int8_hops:
        placed[hop.path.resolve()] = RowPlace(PYTORCH_DYNAMIC_INT8, INT8_DIR, [f"{INT8_DIR}/{QUANTIZED_STATE_FILE}"])
    rows = {}
    for row in info.benchmark["models"]:
        place = placed.get(info.model_path(row["name"]).resolve())
        rows[row["name"]] = place or RowPlace(row["format"])
    if not rows.get(info.final_model, RowPlace("")).in_repo:
        raise RunFolderError(
            f"{info.benchmark_path}: the published model {info.final_model!r} is not one of the measured "
            f"models {list(rows)}; add it to the benchmark stage's models."
        )
    return Layout(
        final_model=info.final_model,
        pytorch_dir=pytorch.path,
        root_files=root_files,
        onnx_dirs=[h.path for h in reversed(onnx_hops)],
        int8_dir=int8_hops[0].path if int8_hops else None,
        rows=rows,
    )
