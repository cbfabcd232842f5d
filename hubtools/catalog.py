"""``python -m hubtools catalog [--namespace NS]``: one index of every published variant.

Reads each model repo of the namespace that ``hubtools push`` published (its card's metadata,
``benchmark.json``, ``run.json`` and ``layout.json``), takes the published model's row, and
pushes ``NS/catalog``: a README with a table of all variants (accuracy, latency, size, recipe,
dataset, starting model, link) where the Pareto-optimal rows (no other variant is at least as
accurate, as fast and as small, and better in one) are marked, plus the same rows as
``catalog.json``. One commit. A repo whose records this version cannot read is skipped, with
a warning.

The rows of the catalog were measured each in its own run, perhaps on different machines. With
``--bench PATH`` (default: ``outputs/bench/results.json`` when it exists, written by ``make
bench``), the page also shows the one comparison of every catalog model measured in one process
on one machine (:meth:`recipes.BenchResult.markdown`: the table, the floor, the peer, the
targets) and its accuracy-vs-latency plot, pushed as ``bench_accuracy_vs_latency.png`` beside
``bench.json`` (the results as measured).

Python (:func:`build_catalog`, also ``hubtools.build_catalog``)::

    import hubtools

    catalog = hubtools.build_catalog("local")            # pushes local/catalog
    hubtools.build_catalog("local", bench="outputs/bench/results.json")   # + the bench table and plot
    catalog.url, [(v.repo_id, v.accuracy, v.pareto) for v in catalog.rows]
    catalog.to_dataframe()                               # the rows, with pandas
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from hubtools.card import fmt_accuracy, fmt_ms, fmt_size, markdown_table
from hubtools.hubhttp import HubPolicy
from hubtools.push import commit_with_retries, namespace
from hubtools.runinfo import LAYOUT_FILE, DatasetRef
from recipes import BenchResult
from recipes.errors import RunFolderError
from recipes.runfolder import BENCH_DIR, BENCH_RESULTS_FILE, BENCHMARK_FILE, RUN_FILE, BenchmarkResult, RunRecord

log = logging.getLogger("hubtools.catalog")
CATALOG_NAME = "catalog"
#: The bench results (``make bench``) on the catalog page: the plot and the JSON.
BENCH_PLOT_FILE = "bench_accuracy_vs_latency.png"
BENCH_JSON_FILE = "bench.json"
#: Where ``make bench`` writes its results: the command line's default ``--bench``.
DEFAULT_BENCH = Path("outputs") / BENCH_DIR / BENCH_RESULTS_FILE


@dataclass
class Variant:
    repo_id: str
    recipe: str
    model: str
    format: str
    accuracy: float
    latency_ms: float
    size_mb: float
    machine: str
    license: str | None
    base_model: str | None
    dataset: str = ""  # "clinc_oos (plus)"
    starting_model: str = ""  # the Hub id or folder name the line started from
    pareto: bool = False


def read_variant(api: HfApi, repo_id: str, policy: HubPolicy) -> Variant | None:
    """The published model of ``repo_id``, or None for a repo ``hubtools push`` did not make."""
    try:
        files = {
            name: Path(
                policy.call(
                    f"download {repo_id}/{name}",
                    hf_hub_download,
                    repo_id,
                    name,
                    endpoint=api.endpoint,
                    token=api.token,
                )
            )
            for name in ("README.md", BENCHMARK_FILE, RUN_FILE, LAYOUT_FILE)
        }
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None
    try:
        run, bench = RunRecord.read(files[RUN_FILE].parent), BenchmarkResult.from_file(files[BENCHMARK_FILE])
    except RunFolderError as err:
        log.warning("%s: skipped, its records cannot be read by this version: %s", repo_id, err.message)
        return None
    card = ModelCard.load(files["README.md"])
    layout = json.loads(files[LAYOUT_FILE].read_text())
    row = next((r for r in bench.models if r["name"] == run.final_model), None)
    if row is None:
        log.warning("%s: the published model %r is not in its benchmark.json; skipped", repo_id, run.final_model)
        return None
    machine = bench.machine
    return Variant(
        repo_id=repo_id,
        recipe=run.recipe,
        model=row["name"],
        format=row["format"],
        accuracy=row["accuracy"],
        latency_ms=row["latency_ms"]["mean"],
        size_mb=row["size_mb"],
        machine=f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} thread(s)",
        license=card.data.license,
        base_model=card.data.base_model,
        dataset=DatasetRef.of(run.resolved["dataset"]).label,
        starting_model=layout.get("starting_model") or "?",
    )


def mark_pareto(variants: list[Variant]) -> None:
    """Pareto-optimal: no other variant of the same dataset is >= accuracy, <= latency, <= size
    and better in one. Variants equal in all three are both optimal (neither beats the other)."""

    def dominates(a: Variant, b: Variant) -> bool:
        if a.dataset != b.dataset:
            return False
        no_worse = a.accuracy >= b.accuracy and a.latency_ms <= b.latency_ms and a.size_mb <= b.size_mb
        better = a.accuracy > b.accuracy or a.latency_ms < b.latency_ms or a.size_mb < b.size_mb
        return no_worse and better

    for v in variants:
        v.pareto = not any(dominates(o, v) for o in variants if o is not v)


def bench_section(results: BenchResult) -> str:
    """The catalog page's section of the bench results: how they were measured, the table, the
    targets and the plot."""
    return (
        "## Every catalog model on one machine\n\n"
        "The table above gathers numbers measured in separate runs. `make bench` measures the catalog's "
        "models side by side instead: one process, one thread budget, interleaved rounds, with a floor (what "
        "the pipeline costs with next to no model) and a peer (model2vec static embeddings and a light head).\n\n"
        f"{results.markdown()}\n![accuracy vs latency]({BENCH_PLOT_FILE})\n\n"
        f"The results as measured: [`{BENCH_JSON_FILE}`]({BENCH_JSON_FILE}).\n"
    )


def catalog_readme(ns: str, variants: list[Variant], endpoint: str, bench: BenchResult | None = None) -> str:
    rows = [
        [
            "**yes**" if v.pareto else "",
            f"[{v.repo_id}]({endpoint}/{v.repo_id})",
            v.recipe,
            v.dataset,
            v.starting_model,
            v.format,
            fmt_accuracy(v.accuracy),
            fmt_ms(v.latency_ms),
            fmt_size(v.size_mb),
            v.machine,
        ]
        for v in variants
    ]
    table = markdown_table(
        [
            "Pareto",
            "Repo",
            "Recipe",
            "Dataset",
            "Starting model",
            "Format",
            "Accuracy",
            "Latency mean (ms)",
            "Size (MB)",
            "Measured on",
        ],
        rows,
        right={6, 7, 8},
    )
    return (
        f"---\ntags:\n- catalog\n---\n\n# Catalog of {ns}\n\n"
        f"Every model published in `{ns}` by `hubtools push`, most accurate first: {len(variants)} variant(s). "
        "**Pareto** marks the variants no other one beats on accuracy, latency and size at once "
        "(compare variants of the same dataset: a number on one dataset says nothing of another).\n"
        "Latencies were measured on the machine shown, each in its own run: compare rows measured on the "
        "same machine, or rerun `python -m hubtools verify <repo>` here.\n\n"
        f"{table}\n\nThe rows as JSON: [`catalog.json`](catalog.json).\n"
        + (f"\n{bench_section(bench)}" if bench else "")
    )


@dataclass
class CatalogResult:
    """What :func:`build_catalog` found and pushed."""

    repo_id: str  # <namespace>/catalog
    rows: list[Variant]  # one per published repo: Pareto-marked, most accurate first
    readme: str = field(repr=False)  # the catalog's README.md (pushed, or what would be)
    url: str | None = None  # the commit's page; None when nothing was pushed
    bench: BenchResult | None = field(default=None, repr=False)  # the bench results shown, if any

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def records(self) -> list[dict]:
        """The rows as plain dicts (the content of ``catalog.json``)."""
        return [asdict(v) for v in self.rows]

    def to_dataframe(self):
        """The rows as a pandas DataFrame indexed by repo id (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_dataframe() needs pandas: pip install pandas (or use .records())") from err
        columns = [f.name for f in fields(Variant)]
        return pd.DataFrame(self.records(), columns=columns).set_index("repo_id")


def build_catalog(ns: str | None = None, push: bool = True, bench: str | Path | bool | None = None) -> CatalogResult:
    """Read every variant of ``ns`` (default: :func:`hubtools.push.namespace`) and, with ``push``,
    push the index to ``<ns>/catalog`` in one commit. ``bench``: a ``results.json`` of ``make
    bench`` whose table and plot the page shows too; None: :data:`DEFAULT_BENCH` when it exists;
    False: none."""
    if bench is None:
        bench = DEFAULT_BENCH if DEFAULT_BENCH.is_file() else False
    results = BenchResult.read(Path(bench)) if bench else None
    policy = HubPolicy.from_env()
    with policy.session():
        return _build_catalog(ns, push, results, policy)


def _build_catalog(ns: str | None, push: bool, results: BenchResult | None, policy: HubPolicy) -> CatalogResult:
    api = HfApi()
    ns = ns or namespace(api)
    repo_id = f"{ns}/{CATALOG_NAME}"
    listed = policy.call(f"list the models of {ns}", lambda: list(api.list_models(author=ns)))
    ids = sorted(m.id for m in listed if m.id.startswith(f"{ns}/") and m.id != repo_id)
    variants = [v for v in (read_variant(api, i, policy) for i in ids) if v is not None]
    mark_pareto(variants)
    variants.sort(key=lambda v: (-v.accuracy, v.latency_ms, v.size_mb))
    result = CatalogResult(repo_id, variants, catalog_readme(ns, variants, api.endpoint, results), bench=results)
    if not push:
        return result
    with tempfile.TemporaryDirectory(prefix="hubtools-catalog-") as tmp:
        readme, rows = Path(tmp) / "README.md", Path(tmp) / "catalog.json"
        readme.write_text(result.readme)
        rows.write_text(json.dumps(result.records(), indent=2) + "\n")
        files = [readme, rows]
        if results is not None:
            files += [Path(tmp) / BENCH_PLOT_FILE, Path(tmp) / BENCH_JSON_FILE]
            results.plot().savefig(files[-2], format="png")
            files[-1].write_text(json.dumps(results.data, indent=2) + "\n")
        operations = [CommitOperationAdd(p.name, str(p)) for p in files]
        message = f"Catalog of {ns}: {len(variants)} variant(s)"
        result.url = commit_with_retries(api, repo_id, operations, message, policy=policy)
    return result


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "catalog",
        help="push NS/catalog: a Pareto table of every published variant",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--namespace", help="default: 'local' on a local Hub, else the token's user")
    parser.add_argument("--dry-run", action="store_true", help="print the table, push nothing")
    parser.add_argument(
        "--bench",
        metavar="PATH",
        help=f"make bench's results.json to show too (default: {DEFAULT_BENCH} when it exists)",
    )
    parser.add_argument("--no-bench", action="store_true", help="leave the bench results out")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    bench = False if args.no_bench else args.bench
    result = build_catalog(args.namespace, push=not args.dry_run, bench=bench)
    print(result.readme.split("\n---\n", 1)[1])
    if result.url:
        print(result.url)
    return 0
