"""Model cards: typed card data, Markdown tables built in Python, Jinja templates in ``cards/``.

:class:`CardData` splits what the user sets (repo id, licence, base model, the Hub the links
point at) from what a run fills (``init=False`` fields, set by :meth:`CardData.fill`), like
SetFit's ``SetFitModelCardData``. :func:`render_card` renders ``cards/model_card.md.j2`` with
our own ``jinja2.Environment`` (``StrictUndefined``: a missing value is an error, not an empty
string; ``FileSystemLoader``: partials resolve) and hands the text to
``huggingface_hub.ModelCard``, whose parser validates the YAML metadata and turns the
``EvalResult`` into ``model-index``.

Templates only place what Python built: the benchmark table (from ``benchmark.json``, every
number formatted by :data:`BENCHMARK_COLUMNS`), the machine and settings tables. What a stage
type adds (tag, line-of-descent phrase, usage snippet) is its
:class:`~recipes.stages.base.Publishing` declaration; the usage snippets live in
``cards/partials/usage/*.md.j2``, one per way of loading a model. What the card says about
the dataset comes from ``cards/datasets.yaml`` for the datasets it knows, else generic text.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index

from hubtools.runinfo import DatasetRef, Hop, Layout, RowPlace, RunInfo
from hubtools.searchcard import SearchSection, search_section
from hubtools.tables import markdown_table, parse_markdown_table
from recipes.runfolder import BenchmarkResult

CARDS_DIR = Path(__file__).resolve().parents[1] / "cards"
TEMPLATE = "model_card.md.j2"
DATASETS_FILE = "datasets.yaml"
PLOT_FILE = "accuracy_vs_latency.png"
DEFAULT_HUB_URL = "https://huggingface.co"
GENERIC_TASK = "Text classification"
PUBLISHED, BASELINE = "published", "baseline"
#: Settings that say where a stage's model comes from, not how it was made.
NOT_SETTINGS = {"name", "type", "input"}


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
    ("Accuracy 95% CI", lambda r, p: fmt_interval(r, "accuracy")),
    ("Δ accuracy", lambda r, p: f"{r['vs_baseline']['accuracy_delta']:+.4f}"),
    ("Δ 95% paired CI", lambda r, p: fmt_paired(r, "accuracy")),
    ("McNemar p", lambda r, p: fmt_p(r, "accuracy")),
    ("Size (MB)", lambda r, p: fmt_size(r["size_mb"])),
    ("Size ratio", lambda r, p: f"{r['vs_baseline']['size_ratio']:.3f}"),
    ("Latency mean ± std (ms)", lambda r, p: f"{fmt_ms(r['latency_ms']['mean'])} ± {fmt_ms(r['latency_ms']['std'])}"),
    ("p50 (ms)", lambda r, p: fmt_ms(r["latency_ms"]["p50"])),
    ("p99 (ms)", lambda r, p: fmt_ms(r["latency_ms"]["p99"])),
    ("Speed-up", lambda r, p: f"{r['vs_baseline']['speedup']:.2f}x"),
]
#: Shown after "Δ accuracy" when the dataset has an out-of-scope label (CLINC150's own metrics).
OOS_COLUMNS: list[Column] = [
    ("In-scope accuracy", lambda r, p: fmt_accuracy(r["in_scope_accuracy"])),
    ("OOS recall", lambda r, p: fmt_accuracy(r["oos_recall"])),
    ("OOS recall 95% CI", lambda r, p: fmt_interval(r, "oos_recall")),
    ("OOS precision", lambda r, p: fmt_accuracy(r["oos_precision"])),
    ("OOS AUROC", lambda r, p: fmt_accuracy(r["oos_auroc"]) if "oos_auroc" in r else "-"),
]


def fmt_interval(row: dict, metric: str) -> str:
    """A metric's own 95% interval, ``[0.8812, 0.8978]``; ``-`` for a row measured without one."""
    low, high = (row.get("intervals") or {}).get(metric) or (None, None)
    return "-" if low is None else f"[{fmt_accuracy(low)}, {fmt_accuracy(high)}]"


def _paired(row: dict, metric: str) -> dict | None:
    return ((row.get("vs_baseline") or {}).get("paired") or {}).get(metric)


def fmt_paired(row: dict, metric: str) -> str:
    """The 95% paired interval of the difference to the baseline, ``[-0.0031, +0.0052]``."""
    d = _paired(row, metric)
    return "-" if d is None else f"[{d['low']:+.4f}, {d['high']:+.4f}]"


def fmt_p(row: dict, metric: str) -> str:
    d = _paired(row, metric)
    return "-" if d is None else f"{d['p_value']:.3g}"


def benchmark_columns(rows: list[dict]) -> list[Column]:
    """The card table's columns for ``rows``: the out-of-scope ones only where rows have them."""
    if not rows or not all("oos_recall" in r for r in rows):
        return BENCHMARK_COLUMNS
    at = next(i for i, (header, _) in enumerate(BENCHMARK_COLUMNS) if header == "Δ accuracy") + 1
    return BENCHMARK_COLUMNS[:at] + OOS_COLUMNS + BENCHMARK_COLUMNS[at:]


def model_cell(name: str, published: str, baseline: str) -> str:
    marks = [m for m, hit in ((PUBLISHED, name == published), (BASELINE, name == baseline)) if hit]
    return f"{name} ({', '.join(marks)})" if marks else name


def row_name(cell: str) -> str:
    """The model name in a ``Model`` cell (without its markers)."""
    return cell.split(" (", 1)[0]


def benchmark_table(benchmark: BenchmarkResult, places: dict[str, RowPlace], published: str) -> str:
    rows, columns = [], benchmark_columns(benchmark.models)
    for row in benchmark.models:
        place = places.get(row["name"], RowPlace(row["format"]))
        cells = [fn(row, place) for _, fn in columns]
        cells[0] = model_cell(row["name"], published, benchmark.baseline)
        rows.append(cells)
    return markdown_table([h for h, _ in columns], rows, right=set(range(3, len(columns))))


def parse_benchmark_table(card_text: str) -> dict[str, dict[str, str]]:
    """``{model name: {column header: cell}}`` from a card's benchmark table."""
    return {row_name(r["Model"]): r for r in parse_markdown_table(card_text, BENCHMARK_COLUMNS[0][0])}


def machine_table(machine: dict, rows_measured: list[dict] = ()) -> str:
    """The machine of a benchmark; ``Measured on``: the devices its rows ran on (the CPU, for every
    row this project measures, whatever device trained the models)."""
    devices = sorted({r.get("device") or "cpu" for r in rows_measured}) or ["cpu"]
    rows = [
        ["Measured on", ", ".join(d.upper() if d == "cpu" else d for d in devices)],
        ["CPU", machine.get("cpu")],
        ["Cores", machine.get("cores")],
        ["Threads used", machine.get("threads")],
        ["Platform", machine.get("platform")],
        ["Python", machine.get("python")],
    ]
    rows += [[name, version] for name, version in (machine.get("libraries") or {}).items()]
    return markdown_table(["", "Value"], rows)


def settings_table(hops: list[Hop], benchmark_spec: dict) -> str:
    """Every setting of every stage on the published model's line (oldest first) + the benchmark's."""
    rows = []
    stages = [(h.name, h.recipe, h.stage_type, h.spec) for h in reversed(hops) if h.stage_type]
    stages.append((benchmark_spec["name"], None, benchmark_spec["type"], benchmark_spec))
    for name, recipe, stage_type, spec in stages:
        where = f"{name} ({stage_type}" + (f", recipe {recipe})" if recipe else ")")
        searched = set(spec.get("space") or {})  # their spec value is a default no trial used
        for key, value in spec.items():
            if key not in NOT_SETTINGS and key not in searched and value is not None:
                rows.append([where, key, value])
    return markdown_table(["Stage", "Setting", "Value"], rows)


class _KeepUnknown(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def describe_hop(hop: Hop, hub_url: str = DEFAULT_HUB_URL) -> str:
    """One step of the card's line of descent, in the words of the stage type's declaration."""
    if hop.stage_type is None:
        where = f"[{hop.source}]({hub_url}/{hop.source})" if hop.is_hub_id else f"`{hop.source or hop.name}`"
        return f"`{hop.name}`: {where}, the starting model"
    phrase = hop.publishing.phrase or f"made by a `{hop.stage_type}` stage"
    text = string.Formatter().vformat(phrase, (), _KeepUnknown(hop.spec))
    return f"`{hop.name}` (recipe `{hop.recipe}`, stage type `{hop.stage_type}`): {text}"


def best_trial(hops: list[Hop]) -> dict | None:
    """The Optuna best trial recorded by a search stage on the line (``metrics.best_trial``)."""
    for hop in hops:
        trial = hop.metrics.get("best_trial")
        if trial:
            return {"stage": hop.name, "recipe": hop.recipe, **trial}
    return None


# --- what pruning kept ---------------------------------------------------------------------------

#: The card's bar plot of what the pruning stages on the published model's line kept.
KEPT_PLOT_FILE = "kept.png"


def kept_on_line(hops: list[Hop]) -> dict:
    """The ``kept`` records (``metrics["kept"]``, see :mod:`recipes.ml.pruning`) of the stages on the
    line, merged oldest first: the newest count of each part, against the oldest total."""
    vocabulary, layers = None, None
    for hop in reversed(hops):
        kept = hop.metrics.get("kept") or {}
        if "vocabulary" in kept:
            total = (vocabulary or kept["vocabulary"])["total"]
            vocabulary = {"kept": kept["vocabulary"]["kept"], "total": total}
        if "layers" in kept:
            if layers is None or len(layers) != len(kept["layers"]):
                layers = [dict(entry) for entry in kept["layers"]]
            else:
                for old, new in zip(layers, kept["layers"]):
                    old.update({k: v for k, v in new.items() if not (k.endswith("_total") and k in old)})
    return {k: v for k, v in (("vocabulary", vocabulary), ("layers", layers)) if v}


def kept_table(kept: dict) -> str:
    """One row per encoder layer: heads and FFN width kept (of how many), weight sparsity."""
    layers = kept.get("layers") or []
    columns = [
        ("Attention heads kept", "heads", lambda e: f"{e['heads']} / {e['heads_total']}"),
        ("FFN width kept", "ffn", lambda e: f"{e['ffn']} / {e['ffn_total']}"),
        ("Zero weights", "sparsity", lambda e: f"{e['sparsity']:.1%}"),
    ]
    columns = [c for c in columns if any(c[1] in e for e in layers)]
    if not columns:
        return ""
    rows = [[e["layer"], *(fn(e) if key in e else "-" for _, key, fn in columns)] for e in layers]
    return markdown_table(["Layer", *(h for h, _, _ in columns)], rows, right=set(range(len(columns) + 1)))


def save_kept_plot(hops: list[Hop], out_path: Path) -> Path | None:
    """Write the bar plot of :func:`kept_on_line` to ``out_path`` (PNG); None when nothing was pruned."""
    kept = kept_on_line(hops)
    if not kept:
        return None
    from recipes import kept_figure

    kept_figure(kept).savefig(out_path, format="png")
    return Path(out_path)


# --- the out-of-scope calibration --------------------------------------------------------------

#: The card section a stage type declares (``Publishing.card_section``) for its calibration record.
CALIBRATION_SECTION = "calibration"
#: What the card shows of ``classification_metrics`` on the eval split, before and after the bias.
CALIBRATION_COLUMNS = [
    ("Accuracy", "accuracy"),
    ("In-scope accuracy", "in_scope_accuracy"),
    ("OOS recall", "oos_recall"),
]


def calibration_on_line(hops: list[Hop]) -> dict | None:
    """The record of the calibration stage on the line (the stage type that declares the
    ``calibration`` card section; the last one applied, if several):
    its bias (and the bias's bootstrap interval), rule, objective and eval-split metrics before and
    after; None when there is none (or the
    stage passed its model on: the dataset had no out-of-scope label)."""
    for hop in hops:  # newest first
        if hop.publishing.card_section == CALIBRATION_SECTION and "eval_before" in hop.metrics:
            m = hop.metrics
            return {
                "stage": hop.name,
                "recipe": hop.recipe,
                "bias": m["oos_bias"],
                "rule": m.get("rule", "grid"),  # records from before the rules were named chose by grid
                "objective": m["objective"],
                "interval": m.get("bias_interval"),
                **{k: {key: m[k][key] for _, key in CALIBRATION_COLUMNS} for k in ("eval_before", "eval_after")},
            }
    return None


def calibration_table(calibration: dict | None) -> str:
    """Rows ``before`` and ``after``: the eval-split metrics without and with the bias."""
    if not calibration:
        return ""
    rows = [
        [name, *(fmt_accuracy(calibration[k][key]) for _, key in CALIBRATION_COLUMNS)]
        for name, k in (("before", "eval_before"), ("after", "eval_after"))
    ]
    header = ["Calibration", *(h for h, _ in CALIBRATION_COLUMNS)]
    return markdown_table(header, rows, right=set(range(1, len(header))))


def uncalibrated_rows(info: RunInfo, hops: list[Hop]) -> list[str]:
    """The benchmark rows whose model is on the line before its (first) calibration stage."""
    at = [i for i, h in enumerate(hops) if h.publishing.card_section == CALIBRATION_SECTION]
    if not at:
        return []
    before = {h.path.resolve() for h in hops[max(at) + 1 :] if h.path is not None}
    return [r["name"] for r in info.benchmark.models if info.model_path(r["name"]).resolve() in before]


# --- the dataset ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """What the card says about the dataset: known facts from ``cards/datasets.yaml``, else
    its id and configuration only (``description``, ``caveat``, ``license``, ``citation`` None)."""

    id: str  # as in the metadata: the Hub id, or a local folder's name
    config: str | None
    local: bool
    name: str  # "CLINC150"; the id for a dataset the card does not know
    task: str
    description: str | None = None
    caveat: str | None = None
    license: str | None = None
    citation: str | None = None
    link: str | None = None  # its page on the Hub the card is served from; None for a local folder

    @property
    def known(self) -> bool:
        return self.description is not None

    @property
    def shown(self) -> str:
        r"""How the card's sentences name it: ``CLINC150``, or ``\`my-tickets\``` when unknown."""
        return self.name if self.name != self.id else f"`{self.id}`"


@functools.cache
def known_datasets(cards_dir: Path = CARDS_DIR) -> dict[str, dict]:
    return yaml.safe_load((Path(cards_dir) / DATASETS_FILE).read_text()) or {}


def dataset_info(ref: DatasetRef, hub_url: str = DEFAULT_HUB_URL, cards_dir: Path = CARDS_DIR) -> DatasetInfo:
    known = known_datasets(cards_dir).get(ref.id, {})
    return DatasetInfo(
        id=ref.id,
        config=ref.config,
        local=ref.local,
        name=known.get("name", ref.id),
        task=known.get("task", GENERIC_TASK),
        description=known.get("description"),
        caveat=known.get("caveat"),
        license=known.get("license"),
        citation=known.get("citation"),
        link=None if ref.local else f"{hub_url}/datasets/{ref.id}",
    )


# --- usage snippets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One usage snippet: the partial (declared by the stage types whose models it loads) and
    the repo files it covers; the partial reads ``usage.*``."""

    partial: str  # under cards/partials/, e.g. "usage/onnx.md.j2"
    repo_dir: str  # "" for the root
    files: list[str]  # paths in the repo
    example: str  # the file the snippet loads: the published model's, if it is one of them
    #: The model's code travels in the repo (``auto_map`` in its ``config.json``): loading it
    #: takes ``trust_remote_code=True``.
    remote_code: bool = False

    @property
    def example_name(self) -> str:
        return self.example.rsplit("/", 1)[-1]


def usages(layout: Layout) -> list[Usage]:
    """A snippet per usage partial of the models in the repo: the root's first, then oldest first."""
    grouped: dict[str, list] = {}
    for placed in layout.placed:
        if placed.usage is not None:
            grouped.setdefault(placed.usage, []).append(placed)
    final = layout.rows[layout.final_model].files
    out = []
    for partial, items in grouped.items():
        files = [f for p in items for f in p.files]
        example = next((f for f in files if f in final), files[-1])
        remote_code = _names_its_code(layout.root.hop.path)  # every loader reads the root's config
        out.append(Usage(partial, items[0].repo_dir, files, example, remote_code))
    return out


def _names_its_code(model_dir: Path | None) -> bool:
    """Whether the model folder's ``config.json`` points at code (``auto_map``) shipped beside it."""
    config = (model_dir / "config.json") if model_dir is not None else None
    if config is None or not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text()).get("auto_map"))
    except (OSError, ValueError):
        return False


# --- the card data ------------------------------------------------------------------------------


#: The published model's metrics in the card's metadata and ``.eval_results/``:
#: (benchmark.json field, Hub metric type, display name).
EVAL_METRICS = (
    ("accuracy", "accuracy", "Accuracy"),
    ("in_scope_accuracy", "in_scope_accuracy", "In-scope accuracy"),
    ("oos_recall", "recall", "Out-of-scope recall"),
    ("oos_auroc", "roc_auc", "Out-of-scope AUROC (oos logit minus best in-scope logit)"),
)


class OneBlockPerMetric(ModelCardData):
    """``model-index`` with one block per metric: huggingface_hub 0.36 puts every result of one task
    and dataset into one block and keeps the first result's source and dataset arguments only."""

    def _to_dict(self, data_dict):
        if self.eval_results is not None:
            blocks = [eval_results_to_model_index(self.model_name, [r])[0]["results"][0] for r in self.eval_results]
            data_dict["model-index"] = [{"name": self.model_name, "results": blocks}]
            del data_dict["eval_results"], data_dict["model_name"]


class HubCard(ModelCard):
    """A ``ModelCard`` whose metadata keeps one model-index block per metric when it is parsed and
    saved again (``ModelCard`` re-serializes its metadata on ``save``)."""

    card_data_class = OneBlockPerMetric


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
    hub_url: str = DEFAULT_HUB_URL  # the Hub the card is served from: its links point there

    recipe: str = field(init=False, default="")
    recipe_sha256: str = field(init=False, default="")
    recipe_yaml: str = field(init=False, default="")
    description: str = field(init=False, default="")
    git_commit: str | None = field(init=False, default=None)
    final_model: str = field(init=False, default="")
    baseline: str = field(init=False, default="")
    tags: list[str] = field(init=False, default_factory=list)
    dataset: DatasetInfo | None = field(init=False, default=None)
    measured_on: dict = field(init=False, default_factory=dict)  # benchmark.json's dataset: split_used, max_samples
    n_test: int = field(init=False, default=0)
    seed: int | None = field(init=False, default=None)  # the seed of the test rows' shuffle
    query: str = field(init=False, default="")
    benchmark: BenchmarkResult | None = field(init=False, default=None)
    eval_results: list[EvalResult] = field(init=False, default_factory=list)
    benchmark_table: str = field(init=False, default="")
    machine_table: str = field(init=False, default="")
    settings_table: str = field(init=False, default="")
    lineage: list[str] = field(init=False, default_factory=list)
    best_trial: dict | None = field(init=False, default=None)
    search: SearchSection | None = field(init=False, default=None)  # the study of a search on the line
    kept: dict = field(init=False, default_factory=dict)  # what pruning kept (kept_on_line); {} for none
    kept_table: str = field(init=False, default="")
    kept_plot_file: str = field(init=False, default=KEPT_PLOT_FILE)
    calibration: dict | None = field(init=False, default=None)  # calibration_on_line; None for none
    calibration_table: str = field(init=False, default="")
    usages: list[Usage] = field(init=False, default_factory=list)  # usage snippets to show
    files: dict[str, str] = field(init=False, default_factory=dict)  # benchmark row -> file shown

    def __post_init__(self):
        self.hub_url = self.hub_url.rstrip("/")

    @property
    def model_name(self) -> str:
        return self.repo_id.split("/")[-1]

    @property
    def base_model_link(self) -> str | None:
        return f"{self.hub_url}/{self.base_model}" if self.base_model else None

    @property
    def sampled(self) -> bool:
        """Whether the test rows are a seeded sample of the split, not all of it."""
        return bool((self.measured_on.get("max_samples") or {}).get("test"))

    def fill(self, info: RunInfo, layout: Layout) -> CardData:
        """Set every run field from a finished run and its repo layout."""
        bench, record = info.benchmark, info.record
        hops = info.lineage()
        final = next(r for r in bench.models if r["name"] == info.final_model)
        self.recipe, self.recipe_sha256 = info.name, record.recipe_sha256
        self.recipe_yaml, self.description = info.recipe_yaml.strip(), record.resolved["description"]
        self.git_commit = record.git_commit
        self.final_model, self.baseline, self.benchmark = info.final_model, bench.baseline, bench
        self.tags = list(dict.fromkeys(info.tags() + self.extra_tags))
        self.dataset, self.measured_on = dataset_info(info.dataset, self.hub_url), bench.dataset
        self.n_test, self.query, self.seed = final["n_test"], bench.query, record.seed
        self.eval_results = self._eval_results(final)
        self.benchmark_table = benchmark_table(bench, layout.rows, info.final_model)
        self.machine_table = machine_table(bench.machine, bench.models)
        self.settings_table = settings_table(hops, info.benchmark_spec)
        self.lineage = [describe_hop(h, self.hub_url) for h in reversed(hops)]
        self.best_trial = best_trial(hops)
        self.search = search_section(hops)
        self.kept = kept_on_line(hops)
        self.kept_table = kept_table(self.kept)
        self.calibration = calibration_on_line(hops)
        if self.calibration:
            self.calibration["uncalibrated"] = uncalibrated_rows(info, hops)
        self.calibration_table = calibration_table(self.calibration)
        self.files = {name: place.shown for name, place in layout.rows.items()}
        self.usages = usages(layout)
        return self

    def _eval_results(self, row: dict) -> list[EvalResult]:
        """One result per metric of the published model's row: accuracy, and with an out-of-scope
        label in-scope accuracy, oos recall and the threshold-free oos AUROC; each with its own 95%
        interval (``metric_args``) and ``benchmark.json`` as its source."""
        limited = (self.measured_on.get("max_samples") or {}).get("test")
        intervals = row.get("intervals") or {}
        results = []
        for metric, metric_type, name in EVAL_METRICS:
            if metric not in row:
                continue
            low_high = intervals.get(metric)
            results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name=self.dataset.task,
                    dataset_type=self.dataset.id,
                    dataset_name=self.dataset.name,
                    dataset_config=self.dataset.config,
                    dataset_split=self.measured_on.get("split_used") or self.measured_on["splits"]["test"],
                    dataset_revision=self.measured_on.get("revision"),
                    dataset_args={"max_samples": limited, "seed": self.seed} if limited else None,
                    metric_type=metric_type,
                    metric_name=name,
                    metric_value=row[metric],
                    metric_args={"ci95": [low_high[0], low_high[1]]} if low_high else None,
                    source_name="benchmark.json",
                    source_url=f"{self.hub_url}/{self.repo_id}/blob/main/benchmark.json",
                )
            )
        return results

    def metadata(self) -> ModelCardData:
        extra = (
            {"base_model_relation": self.base_model_relation} if self.base_model and self.base_model_relation else {}
        )
        return OneBlockPerMetric(
            model_name=self.model_name,
            license=self.license,
            language=self.language,
            library_name="transformers",
            pipeline_tag="text-classification",
            tags=self.tags,
            datasets=[self.dataset.id],
            base_model=self.base_model,
            metrics=sorted({r.metric_type for r in self.eval_results}),
            eval_results=self.eval_results,
            **extra,
        )


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
    return HubCard(text)
