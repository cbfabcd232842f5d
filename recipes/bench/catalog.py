"""``make bench`` / ``python -m recipes bench``: the whole catalog in one comparison, on one machine.

1. Runs every catalog recipe (or those of ``--recipes``) with the same plan-wide overrides
   (``dataset.*``, ``models.*``, ``seed``); finished stages are reused, so a finished catalog
   costs only its cache checks.
2. Builds the two reference rows: the **floor** (:mod:`recipes.bench.floor`: the same ``pipeline()``
   call around an embedding bag and a linear layer, same tokenizer) and the **peer**
   (:mod:`recipes.bench.peer`: model2vec static embeddings + a scikit-learn logistic regression).
3. Loads the teacher, each recipe's published model, the floor and the peer in this one process,
   with one thread budget, and measures them in interleaved rounds: round ``r`` visits every
   subject once, starting ``r`` places further along (A B C, B C A, C A B, ...), so a burst of
   load on a shared machine lands on every row rather than on one. In each round each subject
   gets ``warmup`` untimed calls, then ``runs`` timed batch-1 calls of the seed query, then the
   fixed sample of ``sample`` real test queries (batch 1, each timed), then its 1/``rounds``
   share of the test split at batch ``batch_size`` (accuracy and throughput). Each statistic is
   the median over rounds of its per-round value; ``spread_pct`` is (max - min) / median of the
   per-round means.
4. In a fresh process per subject (``python -m recipes.bench.catalog probe``): the load time from disk to
   a ready pipeline and the peak resident memory (``VmHWM``) of a process that serves
   ``serve_queries`` queries, so rows do not share an allocator.
5. Writes ``results.json``, ``table.md`` and ``accuracy_vs_latency.png`` to the bench folder
   (``<output dir>/bench``). :func:`write_readme` (``python -m recipes bench --readme``) writes the
   README's section between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` from
   ``results.json`` alone, so the same JSON always gives the same text.

Python (``recipes.bench_catalog``, the same as the command line)::

    import recipes

    result = recipes.bench_catalog(["kd-onnx-quant"], rounds=3)   # BenchResult
    result.table            # the Markdown table (ratios to the teacher and the floor)
    result.targets          # [{"text": ..., "met": True/False/None, "detail": ...}, ...]
    result.to_dataframe()   # one row per subject
    result.plot()           # accuracy vs latency, Pareto front, floor as a vertical line
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError, RecipeValidationError
from ..stages.benchmark import latency_stats

log = logging.getLogger("recipes")

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
PLOT_FILE = "accuracy_vs_latency.png"
BENCH_DIR = "bench"
BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"
DEFAULT_QUERY = "What is the pin number for my account?"

#: Row kinds: the reference, a catalog recipe's published model, the floor, the peer.
TEACHER, CATALOG, FLOOR, PEER = "teacher", "catalog", "floor", "peer"
REFERENCE_RECIPE = "teacher"
#: What a row beats the peer on: more accurate and faster, more accurate only, faster only, neither.
PEER_VERDICTS = ("both", "accuracy", "latency", "neither")
#: Override prefixes that apply to every recipe of a plan (see recipes.plan.planning).
PLAN_WIDE = ("dataset", "models", "seed")

#: The issue's targets: (id, text). :func:`evaluate_targets` decides each.
TARGET_SPEED = 15.0
TARGET_SIZE = 10.0
TARGET_FLOOR = 1.5
TARGETS = {
    "speed-size": (
        f"best recipe at least {TARGET_SPEED:g}x faster and {TARGET_SIZE:g}x smaller than the teacher "
        "at no loss of test accuracy"
    ),
    "floor": f"its batch-1 latency within {TARGET_FLOOR:g}x of the floor",
    "peer": "a catalog model more accurate than the peer at equal or lower latency",
}


@dataclass
class BenchSettings:
    """How the subjects are measured (the command line's options)."""

    rounds: int = 5
    runs: int = 100  # timed seed-query calls per subject per round
    warmup: int = 10  # untimed calls before each subject's turn
    sample: int = 200  # real test queries (a fixed seeded sample), batch 1, per round
    batch_size: int = 32  # throughput batch over the test split
    threads: int | None = None  # default: every core this process may use
    query: str = DEFAULT_QUERY
    seed: int = 0  # of the query sample
    memory: bool = True  # load time and peak RSS in a fresh process per subject
    serve_queries: int = 100  # queries that process serves
    floor: bool = True
    floor_dim: int = 64
    floor_epochs: int = 3
    peer: bool = True
    peer_pca_dims: int = 256
    peer_c: float = 20.0

    def __post_init__(self):
        for name, least in (("rounds", 1), ("runs", 1), ("batch_size", 1), ("warmup", 0), ("sample", 0)):
            if getattr(self, name) < least:
                raise RecipeValidationError(f"bench: {name} must be at least {least}, not {getattr(self, name)}.")
        if self.threads is not None and self.threads < 1:
            raise RecipeValidationError(f"bench: threads must be at least 1, not {self.threads}.")


# --- subjects ----------------------------------------------------------------------------------------


@dataclass
class Subject:
    """One row: a model folder and what it is."""

    name: str  # the row's label: the recipe, or "floor" / "peer"
    kind: str  # TEACHER | CATALOG | FLOOR | PEER
    path: Path
    recipe: str | None = None
    model: str | None = None  # its name in the recipe (the published stage)


@dataclass
class Loaded:
    """A subject ready to serve: ``predict`` label ids for a batch, ``serve`` one query as a user
    would (the model's ``pipeline()``; the peer's encode + predict)."""

    format: str
    predict: Callable[[list[str]], np.ndarray]
    serve: Callable[[str], Any]
    runtime: dict


def load_subject(kind: str, path: Path, threads: int, batch_size: int = 32) -> Loaded:
    if kind == PEER:
        from .peer import FORMAT, load_peer

        peer = load_peer(path, threads)
        return Loaded(FORMAT, peer.predict, peer.serve, peer.runtime)
    from .. import floor  # noqa: F401  registers the floor's format
    from ..ml.modelio import load_classifier

    clf = load_classifier(path, threads)
    pipe = clf.make_pipeline()
    return Loaded(
        clf.format, lambda texts: clf.logits(texts, batch_size=batch_size).argmax(axis=-1), pipe, clf.runtime
    )


def subject_size(subject: Subject) -> dict[str, float]:
    if subject.kind == PEER:
        from .peer import size_mb

        return size_mb(subject.path)
    from ..ml.pruning import weights_size_mb

    return weights_size_mb(subject.path)


# --- measuring -----------------------------------------------------------------------------------


def _time_calls(serve: Callable[[str], Any], queries: Sequence[str]) -> list[float]:
    seconds = []
    for query in queries:
        start = time.perf_counter()
        serve(query)
        seconds.append(time.perf_counter() - start)
    return seconds


def summarize_rounds(per_round: list[list[float]]) -> dict:
    """Per-round latency statistics (ms) -> their medians over rounds, the spread of the per-round
    means ((max - min) / median, in %), the per-round means, and the number of timed calls."""
    stats = [latency_stats(s) for s in per_round if s]
    if not stats:
        return {}
    out = {k: float(np.median([st[k] for st in stats])) for k in ("mean", "std", "p50", "p90", "p99")}
    means = [st["mean"] for st in stats]
    out["spread_pct"] = 100.0 * (max(means) - min(means)) / out["mean"] if out["mean"] else 0.0
    out["round_means"] = means
    out["calls"] = sum(len(s) for s in per_round)
    return out


def order_of_round(names: list[str], r: int) -> list[str]:
    """Round ``r`` visits every subject once, starting ``r`` places along: A B C, B C A, C A B."""
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def interleaved_rounds(
    subjects: dict[str, Loaded],
    query: str,
    rounds: int,
    runs: int,
    warmup: int,
    sample: Sequence[str] = (),
    texts: Sequence[str] = (),
    on_turn: Callable[[int, str], None] | None = None,
) -> dict[str, dict]:
    """Measure every subject in ``rounds`` interleaved rounds (see the module docstring).

    Returns, per subject: ``latency_ms`` (the seed query), ``sample_latency_ms`` (the real
    queries; with ``sample``), and with ``texts`` the label ids predicted for all of ``texts``
    (``predictions``, in order) and ``throughput_qps`` (rows per second per round: median,
    spread, per round). Also used by ``hubtools verify`` to measure speed-ups."""
    names = list(subjects)
    chunks = np.array_split(np.arange(len(texts)), rounds) if len(texts) else []
    raw = {n: {"seed": [], "sample": [], "qps": [], "preds": [None] * rounds} for n in names}
    for r in range(rounds):
        gc.collect()  # once a round, so that no turn pays for another's garbage
        for name in order_of_round(names, r):
            if on_turn is not None:
                on_turn(r, name)
            subject, record = subjects[name], raw[name]
            for _ in range(warmup):
                subject.serve(query)
            record["seed"].append(_time_calls(subject.serve, [query] * runs))
            if sample:
                record["sample"].append(_time_calls(subject.serve, sample))
            if len(chunks) and len(chunks[r]):
                batch = [texts[i] for i in chunks[r]]
                start = time.perf_counter()
                record["preds"][r] = np.asarray(subject.predict(batch))
                record["qps"].append(len(batch) / (time.perf_counter() - start))
    out = {}
    for name, record in raw.items():
        result = {"latency_ms": summarize_rounds(record["seed"])}
        if sample:
            result["sample_latency_ms"] = summarize_rounds(record["sample"])
        if record["qps"]:
            qps = record["qps"]
            median = float(np.median(qps))
            result["throughput_qps"] = {
                "median": median,
                "spread_pct": 100.0 * (max(qps) - min(qps)) / median,
                "rounds": qps,
            }
            result["predictions"] = np.concatenate([p for p in record["preds"] if p is not None])
        out[name] = result
    return out


# --- load time and peak memory, in a fresh process --------------------------------------------------


def _proc_status_mb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    peak = _proc_status_mb("VmHWM")
    if peak is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = usage / 2**20 if sys.platform == "darwin" else usage / 1024.0
    return peak


def _preimport(kind: str, path: Path) -> None:
    """Import what loading ``path`` needs, so the load time is the model's, not the libraries'."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    if kind == PEER:
        import model2vec  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        return
    from ..ml.modelio import read_format

    if read_format(path).format == "onnx":
        import optimum.onnxruntime  # noqa: F401
        import optimum.pipelines  # noqa: F401
    from transformers import pipeline  # noqa: F401


def probe_here(kind: str, path: Path, threads: int, queries: list[str]) -> dict:
    """In this process: load ``path``, serve ``queries``; load time, first call, peak RSS."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        _preimport(kind, path)
        gc.collect()
        before = _proc_status_mb("VmRSS")
        start = time.perf_counter()
        loaded = load_subject(kind, path, threads)
        load_s = time.perf_counter() - start
        first = _time_calls(loaded.serve, queries[:1])
        for query in queries[1:]:
            loaded.serve(query)
    return {
        "load_s": load_s,
        "first_call_ms": first[0] * 1000.0 if first else None,
        "rss_before_load_mb": before,
        "peak_rss_mb": _peak_rss_mb(),
        "served": len(queries),
    }


def probe(subject: Subject, threads: int, queries: list[str], timeout_s: float = 900.0) -> dict:
    """:func:`probe_here` in a fresh ``python -m recipes.bench.catalog probe`` process (same environment,
    same CPU affinity). A probe that fails leaves the fields out and says why."""
    with tempfile.TemporaryDirectory(prefix="recipes-bench-probe-") as tmp:
        qfile, out = Path(tmp) / "queries.json", Path(tmp) / "probe.json"
        qfile.write_text(json.dumps(queries))
        cmd = [sys.executable, "-m", "recipes.bench.catalog", "probe", subject.kind, str(subject.path), str(threads)]
        cmd += [str(qfile), str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            return {"probe_error": f"timed out after {timeout_s:.0f} s"}
        if done.returncode != 0 or not out.is_file():
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            return {"probe_error": f"exit {done.returncode}: {tail[0]}"}
        return json.loads(out.read_text())


def _probe_main(argv: list[str]) -> int:
    kind, path, threads, qfile, out = argv
    logging.disable(logging.WARNING)
    result = probe_here(kind, Path(path), int(threads), json.loads(Path(qfile).read_text()))
    Path(out).write_text(json.dumps(result))
    return 0


# --- what to run ------------------------------------------------------------------------------------


def _key(item: str) -> list[str]:
    return item.partition("=")[0].strip().split(".")


def check_overrides(items: list[str]) -> None:
    """The bench runs every recipe on one dataset and one set of starting models: only the
    plan-wide fields may be overridden."""
    other = [item for item in items if _key(item)[0] not in PLAN_WIDE]
    if other:
        raise RecipeValidationError(
            f"bench --set {other[0]}: the bench takes only plan-wide overrides (dataset.*, models.*, seed), "
            "which apply alike to every recipe it runs. A stage setting would give the recipes that others "
            "depend on (teacher, kd) two settings, run twice. To change a budget (epochs, n_trials), copy "
            "recipes/catalog/ to a folder, edit it, and pass it with --catalog DIR."
        )


def catalog_recipes(catalog_dir: Path | None = None) -> dict[str, str]:
    """Recipe name -> what to pass to :func:`recipes.api.load`: the catalog's names, or the
    ``.yaml`` files of ``catalog_dir`` (their dependencies resolve in that folder first)."""
    if catalog_dir is None:
        from ..plan.loader import catalog

        return {name: name for name in catalog()}
    files = sorted(Path(catalog_dir).glob("*.yaml"))
    if not files:
        raise RecipeValidationError(f"--catalog {catalog_dir}: no .yaml recipe files there.")
    return {p.stem: str(p) for p in files}


def plan_recipes(names: Sequence[str] | None, overrides: list[str], catalog_dir: Path | None = None) -> dict:
    """The plan of each recipe to run (name -> Plan), the reference recipe first; every plan
    shares one scope. ``models.<key>`` items go to the plans that declare ``<key>``."""
    from ..api import load

    check_overrides(overrides)
    available = catalog_recipes(catalog_dir)
    chosen = list(dict.fromkeys(names)) if names else list(available)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise RecipeValidationError(f"bench --recipes: no recipe {unknown[0]!r}; recipes: {', '.join(available)}.")
    model_items = {_key(o)[1]: o for o in overrides if _key(o)[0] == "models" and len(_key(o)) == 2}
    base_items = [o for o in overrides if o not in model_items.values()]
    teacher_given = "teacher" in model_items
    if REFERENCE_RECIPE in available and not teacher_given and REFERENCE_RECIPE not in chosen:
        chosen.insert(0, REFERENCE_RECIPE)  # the reference row is always measured
    if teacher_given and REFERENCE_RECIPE in chosen:
        chosen.remove(REFERENCE_RECIPE)  # the given classifier is the teacher: nothing to fine-tune
    chosen.sort(key=lambda n: n != REFERENCE_RECIPE)
    plans, used = {}, set()
    for name in chosen:
        declared = {k for o in load(available[name], base_items).order for k in o.recipe.models}
        mine = [item for key, item in model_items.items() if key in declared]
        used |= {key for key in model_items if key in declared}
        plans[name] = load(available[name], base_items + mine)
    unused = sorted(set(model_items) - used)
    if unused:
        raise RecipeValidationError(
            f"bench --set {model_items[unused[0]]}: no recipe it runs declares a model {unused[0]!r}."
        )
    scopes = {plan.scope for plan in plans.values()}
    if len(scopes) > 1:
        raise RecipeValidationError(
            f"bench: the recipes run on different datasets or starting models ({', '.join(sorted(scopes))}); "
            "one comparison needs one dataset: give it once with --set dataset.*"
        )
    return plans


def run_recipes(plans: dict, output_dir: Path, run: bool = True) -> tuple[dict, dict[str, str]]:
    """Run (or, with ``run`` False, read) each plan's target. Returns the finished results by
    recipe, and why each other recipe has no row."""
    from ..api import RunResult
    from ..api import run as run_plan
    from ..runfolder import RunFolder

    results, skipped = {}, {}
    for name, plan in plans.items():
        try:
            if run:
                log.info("bench: recipe %s", name)
                results[name] = run_plan(plan, output_dir=output_dir)
            else:
                folder = RunFolder.of(output_dir, plan.scope, plan.target.recipe.name)
                result = RunResult.from_run_dir(folder.path)
                if result.status != "finished":
                    raise RecipeValidationError(f"its run is {result.status}")
                results[name] = result
        except RecipeError as err:
            log.error("bench: %s has no row: %s", name, err.message)
            skipped[name] = err.message.splitlines()[0]
    return results, skipped


def catalog_subjects(results: dict) -> list[Subject]:
    """The reference (the teacher recipe's model, or the ``teacher`` the recipes were given), then
    each recipe's published model, labelled by recipe."""
    subjects = []
    if REFERENCE_RECIPE in results:
        teacher = results[REFERENCE_RECIPE]
        subjects.append(
            Subject(
                REFERENCE_RECIPE, TEACHER, teacher.models[teacher.final_model], REFERENCE_RECIPE, teacher.final_model
            )
        )
    else:
        given = next((r.models["teacher"] for r in results.values() if "teacher" in r.models), None)
        if given is not None:
            subjects.append(Subject(REFERENCE_RECIPE, TEACHER, given, None, "teacher"))
    for name, result in results.items():
        if name != REFERENCE_RECIPE and result.final_model:
            subjects.append(Subject(name, CATALOG, result.models[result.final_model], name, result.final_model))
    return subjects


# --- floor and peer: built once per dataset and source, then reused ------------------------------------


def _files_digest(folder: Path, names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _cached_build(folder: Path, key: dict, build: Callable[[Path], Any], what: str) -> Path:
    """``build(tmp)`` then move it to ``folder``, unless ``folder`` was built with the same ``key``."""
    key_file = folder / "bench_key.json"
    if key_file.is_file():
        try:
            if json.loads(key_file.read_text()) == key:
                log.info("bench: the %s in %s didn't change, reusing it", what, folder)
                return folder
        except ValueError:
            pass
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("bench: building the %s", what)
    build(tmp)
    (tmp / "bench_key.json").write_text(json.dumps(key, indent=2, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def make_floor(bench_dir: Path, teacher_dir: Path, data, settings: BenchSettings, threads: int) -> Subject:
    from ..engine.threads import restore_torch_threads
    from .floor import build_floor

    key = {
        "data": data.fingerprint,
        "tokenizer": _files_digest(teacher_dir, ["tokenizer.json", "vocab.txt", "tokenizer_config.json"]),
        "dim": settings.floor_dim,
        "epochs": settings.floor_epochs,
    }
    train = data.split("train")

    def build(out: Path) -> None:
        import torch

        with restore_torch_threads():
            torch.set_num_threads(threads)
            build_floor(
                teacher_dir,
                list(train["text"]),
                list(train["label"]),
                data.id2label,
                out,
                dim=settings.floor_dim,
                epochs=settings.floor_epochs,
            )

    path = _cached_build(Path(bench_dir) / FLOOR, key, build, "floor")
    return Subject(FLOOR, FLOOR, path, None, "embedding bag + linear")


def make_peer(bench_dir: Path, backbone: Path, data, settings: BenchSettings, threads: int) -> Subject:
    from threadpoolctl import threadpool_limits

    from ..engine.threads import restore_torch_threads
    from .peer import build_peer

    key = {
        "data": data.fingerprint,
        "backbone": _files_digest(backbone, ["config.json", "tokenizer.json", "model.safetensors"]),
        "pca_dims": settings.peer_pca_dims,
        "C": settings.peer_c,
    }
    train = data.split("train")

    def build(out: Path) -> None:
        import torch

        with restore_torch_threads(), threadpool_limits(limits=threads):
            torch.set_num_threads(threads)
            build_peer(
                backbone, list(train["text"]), list(train["label"]), out, settings.peer_pca_dims, settings.peer_c
            )

    path = _cached_build(Path(bench_dir) / PEER, key, build, "peer")
    return Subject(PEER, PEER, path, None, "model2vec + logistic regression")


# --- comparisons and targets ---------------------------------------------------------------------------


def _mean(row: dict) -> float:
    return row["latency_ms"]["mean"]


def add_comparisons(rows: list[dict], reference: str, floor: str | None, peer: str | None) -> None:
    """Each row against the teacher (speed-up, size ratio, accuracy change), the floor (latency
    ratio) and the peer (accuracy change, latency ratio, and which of the two it beats on)."""
    by_name = {r["name"]: r for r in rows}
    ref, low, other = by_name.get(reference), by_name.get(floor), by_name.get(peer)
    for row in rows:
        if ref is not None:
            row["vs_teacher"] = {
                "speedup": _mean(ref) / _mean(row),
                "size_ratio": row["size_mb"] / ref["size_mb"],
                "accuracy_delta": row["accuracy"] - ref["accuracy"],
            }
        if low is not None:
            row["vs_floor"] = {"latency_ratio": _mean(row) / _mean(low), "above_ms": _mean(row) - _mean(low)}
        if other is not None and row["name"] != peer:
            more_accurate, faster = row["accuracy"] > other["accuracy"], _mean(row) < _mean(other)
            row["vs_peer"] = {
                "accuracy_delta": row["accuracy"] - other["accuracy"],
                "latency_ratio": _mean(row) / _mean(other),
                "beats_on": PEER_VERDICTS[(not more_accurate) * 2 + (not faster)],
            }


def pareto_names(rows: list[dict]) -> list[str]:
    """The rows (floor left out) no other row beats on accuracy and mean latency at once."""
    from ..measure.plot import pareto_front

    return [r["name"] for r in pareto_front([r for r in rows if r["kind"] != FLOOR])]


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(delta: float) -> str:
    return f"{100 * delta:+.2f} points"


def evaluate_targets(rows: list[dict], reference: str, floor: str | None, peer: str | None) -> list[dict]:
    """The issue's targets, each ``{"id", "text", "met": True/False/None (not measured), "detail"}``."""
    by_name = {r["name"]: r for r in rows}
    ref = by_name.get(reference)
    catalog = [r for r in rows if r["kind"] == CATALOG]
    out = []
    best = None
    if ref is None or not catalog:
        out.append({"id": "speed-size", "met": None, "detail": "no teacher or no catalog model measured"})
    else:
        kept = [r for r in catalog if r["accuracy"] >= ref["accuracy"]]
        if kept:
            best = max(kept, key=lambda r: r["vs_teacher"]["speedup"])
            vs = best["vs_teacher"]
            met = vs["speedup"] >= TARGET_SPEED and vs["size_ratio"] <= 1 / TARGET_SIZE
            detail = (
                f"{best['name']}: {vs['speedup']:.1f}x faster, {1 / vs['size_ratio']:.1f}x smaller, "
                f"{_points(vs['accuracy_delta'])}"
            )
        else:
            best = max(catalog, key=lambda r: r["vs_teacher"]["speedup"])
            met = False
            closest = max(catalog, key=lambda r: r["accuracy"])
            detail = (
                f"no recipe keeps the teacher's test accuracy (closest: {closest['name']}, "
                f"{_points(closest['vs_teacher']['accuracy_delta'])}); the fastest is {best['name']}"
            )
        out.append({"id": "speed-size", "met": met, "detail": detail})
    low = by_name.get(floor)
    if best is None or low is None:
        out.append({"id": "floor", "met": None, "detail": "no floor or no catalog model measured"})
    else:
        ratio = best["vs_floor"]["latency_ratio"]
        out.append(
            {
                "id": "floor",
                "met": ratio <= TARGET_FLOOR,
                "detail": f"{best['name']}: {_mean(best):.2f} ms, {ratio:.2f}x the floor's {_mean(low):.2f} ms",
            }
        )
    other = by_name.get(peer)
    if other is None:
        out.append({"id": "peer", "met": None, "detail": "the peer was not measured"})
    else:
        models = [r for r in rows if r["kind"] in (TEACHER, CATALOG)]
        winners = [r for r in models if r["accuracy"] > other["accuracy"] and _mean(r) <= _mean(other)]
        if winners:
            win = max(winners, key=lambda r: r["accuracy"])
            detail = (
                f"{win['name']}: {_pct(win['accuracy'])} at {_mean(win):.2f} ms; "
                f"peer {_pct(other['accuracy'])} at {_mean(other):.2f} ms"
            )
        else:
            fast = [r for r in models if _mean(r) <= _mean(other)]
            accurate = [r for r in models if r["accuracy"] > other["accuracy"]]
            parts = [f"peer {_pct(other['accuracy'])} at {_mean(other):.2f} ms"]
            if accurate:
                quickest = min(accurate, key=_mean)
                parts.append(f"the fastest more accurate model is {quickest['name']} at {_mean(quickest):.2f} ms")
            if fast:
                top = max(fast, key=lambda r: r["accuracy"])
                parts.append(f"the most accurate as fast is {top['name']} at {_pct(top['accuracy'])}")
            detail = "; ".join(parts)
        out.append({"id": "peer", "met": bool(winners), "detail": detail})
    for target in out:
        target["text"] = TARGETS[target["id"]]
    return [{"id": t["id"], "text": t["text"], "met": t["met"], "detail": t["detail"]} for t in out]


# --- the report: table, README section, plot -------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    rule = ["---:" if i in right else "---" for i in range(len(header))]
    return "\n".join(
        "| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in [header, rule, *rows]
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rss(row: dict) -> str:
    """Peak RSS, and in brackets what loading and serving the model added to the process."""
    peak, before = row.get("peak_rss_mb"), row.get("rss_before_load_mb")
    if peak is None:
        return "-"
    return f"{peak:.0f}" + (f" (+{peak - before:.0f})" if before is not None else "")


def _row_label(row: dict) -> str:
    if row["kind"] == TEACHER:
        return f"{row['name']} (reference)"
    if row["kind"] in (FLOOR, PEER):
        return f"*{row['name']}*"
    return row["name"]


def results_table(results: dict) -> str:
    """The Markdown table of ``results.json``: one row per subject, ratios to the teacher (PyTorch
    fp32) and the floor (and the milliseconds above the floor's: the model's own share), and
    which of accuracy and latency each row beats the peer on."""
    rows = results["rows"]
    oos = bool(rows) and all("oos_recall" in r for r in rows)
    header = ["Model", "Format", "Test accuracy"]
    header += ["In-scope accuracy", "OOS recall"] if oos else []
    header += [
        "Size MB (gzip)",
        "Batch-1 mean ms (spread)",
        "p50",
        "p90",
        "p99",
        "Real queries p50 ms",
        f"Rows/s at batch {results['settings']['batch_size']}",
        "Load s",
        "Peak RSS MB (+ model)",
        "Speed-up vs teacher",
        "Size vs teacher",
        "Latency vs floor",
        "Above floor ms",
        "Beats the peer on",
    ]
    lines = []
    for r in rows:
        lat, vs_t = r["latency_ms"], r.get("vs_teacher") or {}
        sample = (r.get("sample_latency_ms") or {}).get("p50")
        qps = (r.get("throughput_qps") or {}).get("median")
        cells = [_row_label(r), r["format"], _pct(r["accuracy"])]
        cells += [_pct(r["in_scope_accuracy"]), _pct(r["oos_recall"])] if oos else []
        cells += [
            f"{r['size_mb']:.1f} ({r['size_gzip_mb']:.1f})",
            f"{lat['mean']:.2f} ({lat['spread_pct']:.0f}%)",
            _ms(lat["p50"]),
            _ms(lat["p90"]),
            _ms(lat["p99"]),
            _ms(sample),
            "-" if qps is None else f"{qps:.0f}",
            "-" if r.get("load_s") is None else f"{r['load_s']:.2f}",
            _rss(r),
            f"{vs_t['speedup']:.1f}x" if vs_t else "-",
            f"{vs_t['size_ratio']:.2f}" if vs_t else "-",
            f"{r['vs_floor']['latency_ratio']:.2f}x" if r.get("vs_floor") else "-",
            f"{r['vs_floor']['above_ms']:.2f}" if r.get("vs_floor") else "-",
            (r.get("vs_peer") or {}).get("beats_on", "-"),
        ]
        lines.append(cells)
    return _table(header, lines, right=set(range(2, len(header) - 1)))


def _library(results: dict, name: str) -> str:
    return (results["machine"].get("libraries") or {}).get(name, "?")


def results_markdown(results: dict) -> str:
    """The section the README and the Hub catalog page show: how it was measured, the table, the
    targets. A function of ``results`` alone: the same JSON gives the same text."""
    s, m, d = results["settings"], results["machine"], results["dataset"]
    names = {r["name"]: r for r in results["rows"]}
    floor, peer = names.get(results.get("floor")), names.get(results.get("peer"))
    intro = (
        f"Measured {results['date']} by `make bench` on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
        f"{s['threads']} thread(s) for every row, torch {_library(results, 'torch')}, "
        f"onnxruntime {_library(results, 'onnxruntime')}: every model in one process, {s['rounds']} interleaved "
        f"rounds (each round: {s['warmup']} warm-up calls, {s['runs']} timed calls of "
        f'"{s["query"]}" through `pipeline()`, {s["sample"]} real test queries, 1/{s["rounds"]} of the test split '
        f"at batch {s['batch_size']}); each number is the median over rounds, spread = (max - min) / median of "
        f"the round means. Test split: {d['n_test']} rows of {d['label']}."
    )
    if s["memory"]:
        intro += (
            f" Load time and peak RSS: a fresh process per row loads the model and serves {s['serve_queries']} "
            "queries (+ model: the peak above that process's RSS once its libraries were imported)."
        )
    notes = []
    if floor is not None:
        notes.append(
            f"*floor*: the same `pipeline()` call around an embedding bag and a linear layer (same tokenizer, "
            f"fitted {floor.get('epochs', s['floor_epochs'])} epochs on the train split): what tokenization and "
            "the pipeline cost, not a candidate."
        )
    if peer is not None:
        notes.append(
            "*peer*: model2vec static embeddings distilled from the teacher's own backbone "
            f"(PCA {s['peer_pca_dims']}) + scikit-learn logistic regression (C {s['peer_c']:g}) on the train "
            "split, timed as encode + predict (no `pipeline()`)."
        )
    for name, why in sorted((results.get("skipped") or {}).items()):
        notes.append(f"`{name}`: no row: {why}.")
    verdicts = {True: "met", False: "not met", None: "not measured"}
    targets = [f"- **{verdicts[t['met']]}**: {t['text']}: {t['detail']}." for t in results["targets"]]
    pareto = ", ".join(f"`{n}`" for n in results.get("pareto", []))
    parts = [intro, results_table(results)]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    if pareto:
        parts.append(f"Pareto front (accuracy vs batch-1 latency): {pareto}.")
    parts.append("Targets:\n\n" + "\n".join(targets))
    return "\n\n".join(parts) + "\n"


def readme_section(results: dict) -> str:
    """The README's bench section, markers included."""
    note = "<!-- Written by `python -m recipes bench --readme` from outputs/bench/results.json; edits are lost. -->"
    return f"{BEGIN_MARKER}\n{note}\n\n{results_markdown(results)}\n{END_MARKER}"


def replace_section(text: str, section: str) -> str:
    start, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    if start < 0 or end < start:
        raise RecipeValidationError(
            f"the README has no {BEGIN_MARKER} ... {END_MARKER} section to write; add the two markers where "
            "the bench results go."
        )
    return text[:start] + section + text[end + len(END_MARKER) :]


def write_readme(results_path: Path, readme_path: Path) -> Path:
    """Rewrite the section of ``readme_path`` between the markers from ``results_path``."""
    results = read_results(results_path)
    readme_path = Path(readme_path)
    text = replace_section(readme_path.read_text(), readme_section(results))
    readme_path.write_text(text)
    return readme_path


def read_results(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeValidationError(f"{path} does not exist: run `python -m recipes bench` (make bench) first.")
    data = json.loads(path.read_text())
    if data.get("schema_version") != SCHEMA_VERSION:
        raise RecipeValidationError(
            f"{path}: bench results of schema version {data.get('schema_version')!r}; this version reads "
            f"{SCHEMA_VERSION}. Rerun `make bench`."
        )
    return data


def bench_figure(results: dict):
    """Accuracy vs batch-1 mean latency of every row but the floor (point area = size, Pareto
    front dashed), the floor's latency as a vertical line."""
    from ..measure.plot import accuracy_latency_figure

    rows = [r for r in results["rows"] if r["kind"] != FLOOR]
    fig = accuracy_latency_figure(
        rows,
        baseline=results.get("reference"),
        title=f"{results['dataset']['label']}: accuracy vs batch-1 latency ({results['machine'].get('cpu', '?')})",
    )
    floor = next((r for r in results["rows"] if r["kind"] == FLOOR), None)
    if floor is not None:
        ax = fig.axes[0]
        ax.axvline(_mean(floor), color="dimgrey", linestyle=":", linewidth=1.2, label="pipeline floor", zorder=1)
        left, right = ax.get_xlim()
        if _mean(floor) < left:
            ax.set_xlim(left=_mean(floor) * 0.9 if ax.get_xscale() == "log" else 0)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


# --- the result --------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """What :func:`run_bench` wrote: ``results.json`` (``data``) and the files beside it."""

    path: Path  # results.json
    data: dict = field(repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def rows(self) -> list[dict]:
        return self.data["rows"]

    @property
    def targets(self) -> list[dict]:
        return self.data["targets"]

    @property
    def table(self) -> str:
        return results_table(self.data)

    def markdown(self) -> str:
        return results_markdown(self.data)

    def to_dataframe(self):
        """One row per subject, indexed by name: accuracy, size, latency statistics, ratios."""
        import pandas as pd

        records = []
        for row in self.rows:
            record = {k: v for k, v in row.items() if isinstance(v, (str, int, float)) or v is None}
            for group in ("latency_ms", "sample_latency_ms"):
                prefix = "latency" if group == "latency_ms" else "sample_latency"
                record.update(
                    {f"{prefix}_{k}_ms": v for k, v in (row.get(group) or {}).items() if isinstance(v, float)}
                )
            record["throughput_qps"] = (row.get("throughput_qps") or {}).get("median")
            for group in ("vs_teacher", "vs_floor", "vs_peer"):
                record.update({f"{group}_{k}": v for k, v in (row.get(group) or {}).items()})
            records.append(record)
        return pd.DataFrame(records).set_index("name")

    def plot(self):
        return bench_figure(self.data)

    @classmethod
    def read(cls, path: Path) -> BenchResult:
        return cls(Path(path), read_results(path))


# --- the whole run -------------------------------------------------------------------------------------------


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _dataset_label(spec) -> str:
    return Path(str(spec.id).rstrip("/")).name + (f" ({spec.config})" if spec.config else "")


def run_bench(
    recipes: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    output_dir: Path = Path("outputs"),
    bench_dir: Path | None = None,
    catalog_dir: Path | None = None,
    settings: BenchSettings | None = None,
    run: bool = True,
) -> BenchResult:
    """Run the recipes, build the floor and the peer, measure everything, write the report."""
    from ..measure.environment import machine_info
    from ..ml.data import RecipeData

    settings = settings or BenchSettings()
    threads = settings.threads or available_cores()
    output_dir = Path(output_dir)
    bench_dir = Path(bench_dir) if bench_dir else output_dir / BENCH_DIR
    items = list(overrides)
    plans = plan_recipes(recipes, items, catalog_dir)
    results, skipped = run_recipes(plans, output_dir, run)
    subjects = catalog_subjects(results)
    if not subjects:
        raise RecipeValidationError("bench: no recipe finished, nothing to measure; see the log above.")
    target = next(iter(plans.values())).target
    data = RecipeData(target.recipe.dataset, target.recipe.seed, target.base_dir)
    test = data.split("test")
    texts, labels = list(test["text"]), list(test["label"])
    bench_dir.mkdir(parents=True, exist_ok=True)
    teacher = next((s for s in subjects if s.kind == TEACHER), None)
    if settings.floor and teacher is not None:
        subjects.append(make_floor(bench_dir, teacher.path, data, settings, threads))
    if not settings.peer:
        skipped[PEER] = "left out (--no-peer)"
    else:
        from .peer import missing

        backbone = results.get(REFERENCE_RECIPE).models.get("base") if REFERENCE_RECIPE in results else None
        why = missing() or (None if backbone else "no backbone: the teacher recipe did not run")
        if why:
            log.warning("bench: no peer row: %s", why)
            skipped[PEER] = why
        else:
            subjects.append(make_peer(bench_dir, backbone, data, settings, threads))

    rng = np.random.default_rng(settings.seed)
    sample = [texts[i] for i in sorted(rng.choice(len(texts), size=min(settings.sample, len(texts)), replace=False))]
    rows = measure_subjects(subjects, texts, labels, data.oos_id, sample, settings, threads)
    floor_name = FLOOR if any(r["kind"] == FLOOR for r in rows) else None
    peer_name = PEER if any(r["kind"] == PEER for r in rows) else None
    reference = REFERENCE_RECIPE if any(r["kind"] == TEACHER for r in rows) else None
    add_comparisons(rows, reference, floor_name, peer_name)
    now = datetime.now(timezone.utc)
    payload = {
        "schema_version": SCHEMA_VERSION,
        "date": now.date().isoformat(),
        "created": now.isoformat(timespec="seconds"),
        "machine": machine_info(threads),
        "settings": {**asdict(settings), "threads": threads},
        "recipes": list(plans),
        "overrides": items,
        "scope": next(iter(plans.values())).scope,
        "dataset": {
            "label": _dataset_label(data.spec),
            "split": data.spec.splits.test,
            "n_test": len(labels),
            "max_samples": data.spec.max_samples.test,
            "oos_label": data.spec.oos_label,
        },
        "reference": reference,
        "floor": floor_name,
        "peer": peer_name,
        "rows": rows,
        "pareto": pareto_names(rows),
        "targets": evaluate_targets(rows, reference, floor_name, peer_name),
        "skipped": skipped,
    }
    return write_outputs(payload, bench_dir)


def measure_subjects(
    subjects: list[Subject],
    texts: list[str],
    labels: list[int],
    oos_id: int | None,
    sample: list[str],
    settings: BenchSettings,
    threads: int,
) -> list[dict]:
    """Every subject loaded into this process and measured in interleaved rounds, then (with
    ``settings.memory``) probed one by one in a fresh process: one row each."""
    from threadpoolctl import threadpool_limits

    from ..engine.threads import restore_torch_threads
    from ..measure.metrics import classification_metrics

    log.info(
        "bench: %d models, %d rounds, %d thread(s), %d test rows: %s",
        len(subjects),
        settings.rounds,
        threads,
        len(texts),
        ", ".join(s.name for s in subjects),
    )
    with restore_torch_threads(), threadpool_limits(limits=threads):
        loaded = {s.name: load_subject(s.kind, s.path, threads, settings.batch_size) for s in subjects}
        runtimes = {name: subject.runtime for name, subject in loaded.items()}
        measured = interleaved_rounds(
            loaded,
            settings.query,
            settings.rounds,
            settings.runs,
            settings.warmup,
            sample,
            texts,
            on_turn=lambda r, name: log.debug("bench: round %d, %s", r + 1, name),
        )
        del loaded
        gc.collect()
    rows = []
    for subject in subjects:
        m = measured[subject.name]
        row = {
            "name": subject.name,
            "kind": subject.kind,
            "recipe": subject.recipe,
            "model": subject.model,
            "format": _format_of(subject),
            "path": _shown_path(subject.path),
            **classification_metrics(m["predictions"], labels, oos_id),
            "n_test": len(labels),
            **subject_size(subject),
            "latency_ms": m["latency_ms"],
            "sample_latency_ms": m.get("sample_latency_ms") or {},
            "throughput_qps": m["throughput_qps"],
            "runtime": runtimes[subject.name],
            "device": "cpu",  # every subject is loaded on the CPU (recipes.ml.modelio, the floor, the peer)
        }
        if subject.kind == FLOOR:
            row["epochs"] = settings.floor_epochs
        if settings.memory:
            log.info("bench: load time and peak memory of %s, in a fresh process", subject.name)
            row.update(probe(subject, threads, (sample or [settings.query])[: max(settings.serve_queries, 1)]))
        rows.append(row)
    return rows


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (no home folder in a page)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _format_of(subject: Subject) -> str:
    if subject.kind == PEER:
        from .peer import FORMAT

        return FORMAT
    from ..ml.modelio import read_format

    return read_format(subject.path).format


def write_outputs(payload: dict, bench_dir: Path) -> BenchResult:
    """``results.json``, ``table.md`` and the plot in ``bench_dir``."""
    from ..runfolder import atomic_write_text

    bench_dir = Path(bench_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    path = bench_dir / RESULTS_FILE
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    atomic_write_text(bench_dir / TABLE_FILE, results_markdown(payload))
    bench_figure(payload).savefig(bench_dir / PLOT_FILE, format="png")
    log.info("bench: wrote %s, %s and %s", path, TABLE_FILE, PLOT_FILE)
    return BenchResult(path, payload)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        sys.exit(_probe_main(sys.argv[2:]))
    sys.exit(
        "usage: python -m recipes.bench.catalog probe KIND PATH THREADS QUERIES_JSON OUT_JSON (used by the bench)"
    )
