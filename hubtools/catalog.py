"""``python -m hubtools catalog [--namespace NS]``: one index of every published variant.

Reads each model repo of the namespace that ``hubtools push`` published (its card's metadata,
``benchmark.json`` and ``run.json``), takes the published model's row, and pushes
``NS/catalog``: a README with a table of all variants (accuracy, latency, size, recipe, link)
where the Pareto-optimal rows (no other variant is at least as accurate, as fast and as small,
and better in one) are marked, plus the same rows as ``catalog.json``. One commit.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from recipes.stages.benchmark import BENCHMARK_FILE

from hubtools.card import fmt_accuracy, fmt_ms, fmt_size, markdown_table
from hubtools.push import commit_with_retries, namespace

log = logging.getLogger("hubtools.catalog")
CATALOG_NAME = "catalog"


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
    pareto: bool = False


def read_variant(api: HfApi, repo_id: str) -> Variant | None:
    """The published model of ``repo_id``, or None for a repo ``hubtools push`` did not make."""
    try:
        files = {name: hf_hub_download(repo_id, name, endpoint=api.endpoint, token=api.token)
                 for name in ("README.md", BENCHMARK_FILE, "run.json")}
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None
    card = ModelCard.load(files["README.md"])
    bench = json.loads(Path(files[BENCHMARK_FILE]).read_text())
    run = json.loads(Path(files["run.json"]).read_text())
    row = next((r for r in bench["models"] if r["name"] == run["final_model"]), None)
    if row is None:
        log.warning("%s: the published model %r is not in its benchmark.json; skipped", repo_id, run["final_model"])
        return None
    machine = bench.get("machine", {})
    return Variant(
        repo_id=repo_id, recipe=run["recipe"], model=row["name"], format=row["format"], accuracy=row["accuracy"],
        latency_ms=row["latency_ms"]["mean"], size_mb=row["size_mb"],
        machine=f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} thread(s)",
        license=card.data.license, base_model=card.data.base_model,
    )


def mark_pareto(variants: list[Variant]) -> None:
    """Pareto-optimal: no other variant is >= accuracy, <= latency, <= size and better in one."""

    def dominates(a: Variant, b: Variant) -> bool:
        no_worse = a.accuracy >= b.accuracy and a.latency_ms <= b.latency_ms and a.size_mb <= b.size_mb
        better = a.accuracy > b.accuracy or a.latency_ms < b.latency_ms or a.size_mb < b.size_mb
        return no_worse and better

    for v in variants:
        v.pareto = not any(dominates(o, v) for o in variants if o is not v)


def catalog_readme(ns: str, variants: list[Variant], endpoint: str) -> str:
    rows = [
        ["**yes**" if v.pareto else "", f"[{v.repo_id}]({endpoint}/{v.repo_id})", v.recipe, v.format,
         fmt_accuracy(v.accuracy), fmt_ms(v.latency_ms), fmt_size(v.size_mb), v.machine]
        for v in variants
    ]
    table = markdown_table(
        ["Pareto", "Repo", "Recipe", "Format", "Accuracy", "Latency mean (ms)", "Size (MB)", "Measured on"], rows,
        right={4, 5, 6},
    )
    return (
        f"---\ntags:\n- catalog\n---\n\n# Catalog of {ns}\n\n"
        f"Every model published in `{ns}` by `hubtools push`, most accurate first: {len(variants)} variant(s). "
        "**Pareto** marks the variants no other one beats on accuracy, latency and size at once.\n"
        "Latencies were measured on the machine shown, each in its own run: compare rows measured on the "
        "same machine, or rerun `python -m hubtools verify <repo>` here.\n\n"
        f"{table}\n\nThe rows as JSON: [`catalog.json`](catalog.json).\n"
    )


def build_catalog(ns: str | None = None, push: bool = True) -> tuple[str, list[Variant], str | None]:
    """Read every variant of ``ns`` (default: :func:`hubtools.push.namespace`); push the index.

    Returns the catalog repo id, the variants (Pareto-marked, most accurate first) and the
    commit URL (None without ``push``).
    """
    api = HfApi()
    ns = ns or namespace(api)
    repo_id = f"{ns}/{CATALOG_NAME}"
    ids = sorted(m.id for m in api.list_models(author=ns) if m.id.startswith(f"{ns}/") and m.id != repo_id)
    variants = [v for v in (read_variant(api, i) for i in ids) if v is not None]
    mark_pareto(variants)
    variants.sort(key=lambda v: (-v.accuracy, v.latency_ms, v.size_mb))
    if not push:
        return repo_id, variants, None
    with tempfile.TemporaryDirectory(prefix="hubtools-catalog-") as tmp:
        readme, rows = Path(tmp) / "README.md", Path(tmp) / "catalog.json"
        readme.write_text(catalog_readme(ns, variants, api.endpoint))
        rows.write_text(json.dumps([asdict(v) for v in variants], indent=2) + "\n")
        api.create_repo(repo_id, exist_ok=True)
        operations = [CommitOperationAdd(p.name, str(p)) for p in (readme, rows)]
        url = commit_with_retries(api, repo_id, operations, f"Catalog of {ns}: {len(variants)} variant(s)")
    return repo_id, variants, url


def register(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("catalog", help="push NS/catalog: a Pareto table of every published variant",
                               description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", help="default: 'local' on a local Hub, else the token's user")
    parser.add_argument("--dry-run", action="store_true", help="print the table, push nothing")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    repo_id, variants, url = build_catalog(args.namespace, push=not args.dry_run)
    print(catalog_readme(repo_id.split("/")[0], variants, HfApi().endpoint).split("\n---\n", 1)[1])
    if url:
        print(url)
    return 0
