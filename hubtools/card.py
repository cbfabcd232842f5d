"""Model cards: typed card data, Markdown tables built in Python, Jinja templates in ``cards/``.

:class:`CardData` splits what the user sets (repo id, licence, base model) from what a run
fills (``init=False`` fields, set by :meth:`CardData.fill`), like SetFit's
``SetFitModelCardData``. :func:`render_card` renders ``cards/model_card.md.j2`` with our own
``jinja2.Environment`` (``StrictUndefined``: a missing value is an error, not an empty string;
``FileSystemLoader``: partials resolve) and hands the text to ``huggingface_hub.ModelCard``,
whose parser validates the YAML metadata and turns the ``EvalResult`` into ``model-index``.

Templates only place what Python built: the benchmark table (from ``benchmark.json``, every
number formatted by :data:`BENCHMARK_COLUMNS`), the machine and settings tables. Usage
snippets live in ``cards/partials/usage/<format>.md.j2``, one file per repo layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hubtools.runinfo import INT8_DIR, Hop, Layout, RowPlace, RunInfo

CARDS_DIR = Path(__file__).resolve().parents[1] / "cards"
TEMPLATE = "model_card.md.j2"
PLOT_FILE = "accuracy_vs_latency.png"
DATASET_NAME = "CLINC150"
TASK_NAME = "Intent classification"
PUBLISHED, BASELINE = "published", "baseline"

#: What each stage type did, for the card's line of descent ({input} is its input's name).
STAGE_PHRASES = {
    "finetune": "fine-tuned on the dataset's intents",
    "distill": "distilled from `{input}` (knowledge distillation, layers cut from it)",
    "search-distill": "distilled from `{input}`, the best of an Optuna search over the distillation settings",
    "quantize-dynamic": "PyTorch dynamic int8 quantization of every Linear layer",
    "export-onnx": "exported to ONNX",
    "ort-optimize": "graph-optimized offline with ONNX Runtime",
    "ort-quantize": "int8-quantized with ONNX Runtime",
}
#: Settings that say where a stage's model comes from, not how it was made.
NOT_SETTINGS = {"name", "type", "input"}


# --- Markdown tables -------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[Any]], right: set[int] = frozenset()) -> str:
    """A GitHub-flavoured table; columns whose index is in ``right`` are right-aligned."""
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def parse_markdown_table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the first table in ``text`` whose first header cell is ``first_header``."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        cells = _split_row(line)
        if cells and cells[0] == first_header:
            rows = []
            for row_line in lines[start + 2 :]:
                if not row_line.startswith("|"):
                    break
                rows.append(dict(zip(cells, _split_row(row_line))))
            return rows
    raise ValueError(f"no table with first column {first_header!r}")


def _split_row(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    return [c.strip().replace("\\|", "|") for c in cells]


# --- the benchmark table: each column's header and how it prints a row -------------------------


def fmt_accuracy(value: float) -> str:
    return f"{value:.4f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f}"


def fmt_size(value: float) -> str:
    return f"{value:.2f}"


Column = tuple[str, Callable[[dict, RowPlace], str]]
BENCHMARK_COLUMNS: list[Column] = [
    ("Model", lambda r, p: r["name"]),  # + markers, see model_cell
    ("Format", lambda r, p: r["format"]),
    ("File in this repo", lambda r, p: p.shown),
    ("Accuracy", lambda r, p: fmt_accuracy(r["accuracy"])),
    ("Δ accuracy", lambda r, p: f"{r['vs_baseline']['accuracy_delta']:+.4f}"),
    ("Size (MB)", lambda r, p: fmt_size(r["size_mb"])),
    ("Size ratio", lambda r, p: f"{r['vs_baseline']['size_ratio']:.3f}"),
    ("Latency mean ± std (ms)", lambda r, p: f"{fmt_ms(r['latency_ms']['mean'])} ± {fmt_ms(r['latency_ms']['std'])}"),
    ("p50 (ms)", lambda r, p: fmt_ms(r["latency_ms"]["p50"])),
    ("p99 (ms)", lambda r, p: fmt_ms(r["latency_ms"]["p99"])),
    ("Speed-up", lambda r, p: f"{r['vs_baseline']['speedup']:.2f}x"),
]


def model_cell(name: str, published: str, baseline: str) -> str:
    marks = [m for m, hit in ((PUBLISHED, name == published), (BASELINE, name == baseline)) if hit]
    return f"{name} ({', '.join(marks)})" if marks else name


def row_name(cell: str) -> str:
    """The model name in a ``Model`` cell (without its markers)."""
    return cell.split(" (", 1)[0]


def benchmark_table(benchmark: dict, places: dict[str, RowPlace], published: str) -> str:
    rows = []
    for row in benchmark["models"]:
        place = places.get(row["name"], RowPlace(row["format"]))
        cells = [fn(row, place) for _, fn in BENCHMARK_COLUMNS]
        cells[0] = model_cell(row["name"], published, benchmark["baseline"])
        rows.append(cells)
    return markdown_table([h for h, _ in BENCHMARK_COLUMNS], rows, right=set(range(3, len(BENCHMARK_COLUMNS))))


def parse_benchmark_table(card_text: str) -> dict[str, dict[str, str]]:
    """``{model name: {column header: cell}}`` from a card's benchmark table."""
    return {row_name(r["Model"]): r for r in parse_markdown_table(card_text, BENCHMARK_COLUMNS[0][0])}


def machine_table(machine: dict) -> str:
    rows = [["CPU", machine.get("cpu")], ["Cores", machine.get("cores")], ["Threads used", machine.get("threads")],
            ["Platform", machine.get("platform")], ["Python", machine.get("python")]]
    rows += [[name, version] for name, version in (machine.get("libraries") or {}).items()]
    return markdown_table(["", "Value"], rows)


def settings_table(hops: list[Hop], benchmark_spec: dict) -> str:
    """Every setting of every stage on the published model's line (oldest first) + the benchmark's."""
    rows = []
    stages = [(h.name, h.recipe, h.stage_type, h.spec) for h in reversed(hops) if h.stage_type]
    stages.append((benchmark_spec["name"], None, "benchmark", benchmark_spec))
    for name, recipe, stage_type, spec in stages:
        where = f"{name} ({stage_type}" + (f", recipe {recipe})" if recipe else ")")
        searched = set(spec.get("space") or {})  # their spec value is a default no trial used
        for key, value in spec.items():
            if key not in NOT_SETTINGS and key not in searched and value is not None:
                rows.append([where, key, value])
    return markdown_table(["Stage", "Setting", "Value"], rows)


def describe_hop(hop: Hop) -> str:
    if hop.stage_type is None:
        where = f"[{hop.source}](https://huggingface.co/{hop.source})" if hop.is_hub_id else f"`{hop.source or hop.name}`"
        return f"`{hop.name}`: {where}, the starting model"
    phrase = STAGE_PHRASES.get(hop.stage_type, f"made by a `{hop.stage_type}` stage").format(**hop.spec)
    return f"`{hop.name}` (recipe `{hop.recipe}`, stage type `{hop.stage_type}`): {phrase}"


def best_trial(hops: list[Hop]) -> dict | None:
    """The Optuna best trial recorded by a search stage on the line (``metrics.best_trial``)."""
    for hop in hops:
        trial = hop.metrics.get("best_trial")
        if trial:
            return {"stage": hop.name, "recipe": hop.recipe, **trial}
    return None


def dataset_hub_id(dataset_id: str) -> str:
    """The Hub id to name in metadata; a local folder counts as the dataset of its name."""
    return Path(dataset_id).name if dataset_id.startswith((".", "/", "~")) else dataset_id


# --- the card data ------------------------------------------------------------------------------


@dataclass
class CardData:
    """What the card says: first the fields a user sets, then those :meth:`fill` takes from a run."""

    repo_id: str
    license: str = "apache-2.0"
    language: str = "en"
    base_model: str | None = None
    base_model_relation: str | None = None  # "finetune" | "quantized" | ...
    plot_file: str = PLOT_FILE
    extra_tags: list[str] = field(default_factory=list)

    recipe: str = field(init=False, default="")
    recipe_sha256: str = field(init=False, default="")
    recipe_yaml: str = field(init=False, default="")
    description: str = field(init=False, default="")
    git_commit: str | None = field(init=False, default=None)
    final_model: str = field(init=False, default="")
    baseline: str = field(init=False, default="")
    tags: list[str] = field(init=False, default_factory=list)
    dataset: dict = field(init=False, default_factory=dict)
    dataset_id: str = field(init=False, default="")
    n_test: int = field(init=False, default=0)
    seed: int | None = field(init=False, default=None)  # the seed of the test rows' shuffle
    query: str = field(init=False, default="")
    benchmark: dict = field(init=False, default_factory=dict)
    eval_results: list[EvalResult] = field(init=False, default_factory=list)
    benchmark_table: str = field(init=False, default="")
    machine_table: str = field(init=False, default="")
    settings_table: str = field(init=False, default="")
    lineage: list[str] = field(init=False, default_factory=list)
    best_trial: dict | None = field(init=False, default=None)
    layouts: list[str] = field(init=False, default_factory=list)  # usage partials to show
    files: dict[str, str] = field(init=False, default_factory=dict)  # benchmark row -> file shown
    int8_file: str | None = field(init=False, default=None)
    onnx_files: list[str] = field(init=False, default_factory=list)
    final_file: str = field(init=False, default="")
    root_file: str = field(init=False, default="")  # the fp32 weights at the repo root
    onnx_example: str | None = field(init=False, default=None)  # file_name the ONNX snippet loads

    @property
    def model_name(self) -> str:
        return self.repo_id.split("/")[-1]

    def fill(self, info: RunInfo, layout: Layout) -> "CardData":
        """Set every run field from a finished run and its repo layout."""
        bench = info.benchmark
        hops = info.lineage()
        final = next(r for r in bench["models"] if r["name"] == info.final_model)
        self.recipe, self.recipe_sha256 = info.name, info.run["recipe_sha256"]
        self.recipe_yaml, self.description = info.recipe_yaml.strip(), info.run["resolved"]["description"]
        self.git_commit = info.run.get("git_commit")
        self.final_model, self.baseline, self.benchmark = info.final_model, bench["baseline"], bench
        self.tags = list(dict.fromkeys(info.tags() + self.extra_tags))
        self.dataset, self.dataset_id = bench["dataset"], dataset_hub_id(bench["dataset"]["id"])
        self.n_test, self.query, self.seed = final["n_test"], bench["query"], info.run.get("seed")
        self.eval_results = [self._eval_result(final)]
        self.benchmark_table = benchmark_table(bench, layout.rows, info.final_model)
        self.machine_table = machine_table(bench["machine"])
        self.settings_table = settings_table(hops, info.benchmark_spec)
        self.lineage = [describe_hop(h) for h in reversed(hops)]
        self.best_trial = best_trial(hops)
        self.files = {name: place.shown for name, place in layout.rows.items()}
        self.layouts = sorted({p.format for p in layout.rows.values() if p.in_repo}, key=LAYOUT_ORDER.index)
        self.int8_file = next((p.files[0] for p in layout.rows.values() if p.subfolder == INT8_DIR and p.in_repo), None)
        self.onnx_files = layout.onnx_files()
        self.final_file = layout.rows[info.final_model].files[0]
        self.root_file = ", ".join(layout.root_files)
        onnx = self.final_file if self.final_file in self.onnx_files else (self.onnx_files or [None])[-1]
        self.onnx_example = onnx.split("/")[-1] if onnx else None
        return self

    def _eval_result(self, row: dict) -> EvalResult:
        limited = self.dataset.get("max_samples", {}).get("test")
        return EvalResult(
            task_type="text-classification",
            task_name=TASK_NAME,
            dataset_type=self.dataset_id,
            dataset_name=DATASET_NAME,
            dataset_config=self.dataset.get("config"),
            dataset_split=self.dataset.get("split_used") or self.dataset["splits"]["test"],
            dataset_revision=self.dataset.get("revision"),
            dataset_args={"max_samples": limited, "seed": self.seed} if limited else None,
            metric_type="accuracy",
            metric_name="Accuracy",
            metric_value=row["accuracy"],
        )

    def metadata(self) -> ModelCardData:
        extra = {"base_model_relation": self.base_model_relation} if self.base_model and self.base_model_relation else {}
        return ModelCardData(
            model_name=self.model_name,
            license=self.license,
            language=self.language,
            library_name="transformers",
            pipeline_tag="text-classification",
            tags=self.tags,
            datasets=[self.dataset_id],
            base_model=self.base_model,
            metrics=["accuracy"],
            eval_results=self.eval_results,
            **extra,
        )


#: Usage partials in the order the card shows them (``cards/partials/usage/<format>.md.j2``).
LAYOUT_ORDER = ["pytorch", "pytorch-dynamic-int8", "onnx"]


def environment(cards_dir: Path = CARDS_DIR) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(cards_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML; the Hub's renderer escapes
    )


def render_card(card: CardData, cards_dir: Path = CARDS_DIR) -> ModelCard:
    """Render the card; ``ModelCard`` parses (and so validates) the YAML front matter."""
    text = environment(cards_dir).get_template(TEMPLATE).render(card=card, metadata=card.metadata().to_yaml())
    return ModelCard(text)


def build_card(info: RunInfo, layout: Layout, repo_id: str, **user_fields: Any) -> ModelCard:
    return render_card(CardData(repo_id=repo_id, **user_fields).fill(info, layout))
