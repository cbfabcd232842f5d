"""``make bench``'s report: every row against the teacher, the floor and the peer; the targets; the
tables, the README section and the plot, all from ``results.json`` alone (the same JSON always
gives the same text).

Latency for the comparisons and the targets is the median batch-1 latency **alone** (a fresh
process per model, :mod:`recipes.measure.probe`) when it was measured, as a user serving one
model gets it; the in-process figures stand beside it. Accuracy differences carry their 95%
paired interval (:mod:`recipes.measure.stats`): "no loss" means the interval's lower bound is
above -0.5 points, "better" that the whole interval is above 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecipeValidationError
from ..measure import stats

#: Row kinds: the reference, a catalog recipe's published model, the floor, the peer.
TEACHER, CATALOG, FLOOR, PEER = "teacher", "catalog", "floor", "peer"
REFERENCE_RECIPE = "teacher"
#: What a row beats the peer on: more accurate and faster, more accurate only, faster only, neither.
PEER_VERDICTS = ("both", "accuracy", "latency", "neither")
BEGIN_MARKER = "<!-- bench:begin -->"
END_MARKER = "<!-- bench:end -->"
TABLE_FILE = "table.md"
PLOT_FILE = "accuracy_vs_latency.png"

#: The targets: (id, text). :func:`evaluate_targets` decides each.
TARGET_SPEED = 15.0
TARGET_SIZE = 10.0
TARGET_FLOOR = 1.5
TARGET_PEER_POINTS = 0.02
MARGIN_POINTS = 100 * stats.NON_INFERIORITY_MARGIN
TARGETS = {
    "speed-size": (
        f"one recipe at least {TARGET_SPEED:g}x faster (median latency alone) and {TARGET_SIZE:g}x smaller than "
        f"the teacher at no loss of test accuracy (point estimate at or above the teacher's, and the paired "
        f"95% interval's lower bound above -{MARGIN_POINTS:g} points)"
    ),
    "floor": f"its batch-1 latency within {TARGET_FLOOR:g}x of the floor's (median, alone)",
    "peer": "a catalog model more accurate than the peer (paired interval above 0) at equal or lower latency",
    "fast-end": (
        f"a catalog model at least {100 * TARGET_PEER_POINTS:g} points more accurate than the peer (and its paired "
        "interval above 0) at a latency no higher than the peer's"
    ),
}


def served_ms(row: dict) -> float:
    """The row's median batch-1 latency as a user serving that model alone gets it; the median in
    the shared process when it was not measured alone."""
    alone = (row.get("alone_latency_ms") or {}).get("p50")
    return alone if alone is not None else row["latency_ms"]["p50"]


# --- comparisons --------------------------------------------------------------------------------------


def add_comparisons(
    rows: list[dict], reference: str | None, floor: str | None, peer: str | None, predictions: dict, labels, oos_id
) -> None:
    """Each row against the teacher (speed-up, size ratio, accuracy change with its paired
    statistics), the floor (latency ratio) and the peer (accuracy change with its paired
    statistics, latency ratio, and which of the two it beats on)."""
    by_name = {r["name"]: r for r in rows}
    ref, low, other = by_name.get(reference), by_name.get(floor), by_name.get(peer)
    for row in rows:
        if ref is not None:
            row["vs_teacher"] = {
                "speedup": served_ms(ref) / served_ms(row),
                "size_ratio": row["size_mb"] / ref["size_mb"],
                "accuracy_delta": row["accuracy"] - ref["accuracy"],
                "paired": stats.compare(predictions[row["name"]], predictions[reference], labels, oos_id),
            }
        if low is not None:
            row["vs_floor"] = {
                "latency_ratio": served_ms(row) / served_ms(low),
                "above_ms": served_ms(row) - served_ms(low),
            }
        if other is not None and row["name"] != peer:
            paired = stats.compare(predictions[row["name"]], predictions[peer], labels, oos_id)
            more_accurate = paired["accuracy"]["verdict"] == stats.BETTER
            faster = served_ms(row) < served_ms(other)
            row["vs_peer"] = {
                "accuracy_delta": row["accuracy"] - other["accuracy"],
                "paired": paired,
                "latency_ratio": served_ms(row) / served_ms(other),
                "beats_on": PEER_VERDICTS[(not more_accurate) * 2 + (not faster)],
            }


def pareto_names(rows: list[dict]) -> list[str]:
    """The rows (floor left out) no other row beats on accuracy and served latency at once."""
    from ..measure.plot import pareto_front

    return [r["name"] for r in pareto_front([r for r in rows if r["kind"] != FLOOR], served_ms)]


# --- targets ------------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(delta: float) -> str:
    return f"{100 * delta:+.2f}"


def difference_text(d: dict) -> str:
    """``+0.25 points [-0.31, +0.80], p 0.40``: a paired difference as the tables print it."""
    return f"{_points(d['difference'])} [{_points(d['low'])}, {_points(d['high'])}], p {_p(d['p_value'])}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.01 else f"{value:.2f}"


def no_loss(row: dict, key: str = "vs_teacher") -> bool:
    """At or above the reference's accuracy, and the paired interval's lower bound above -margin."""
    d = row[key]["paired"]["accuracy"]
    return d["difference"] >= 0 and d["low"] > -stats.NON_INFERIORITY_MARGIN


def _speed_size(rows: list[dict], ref: dict | None) -> tuple[dict, dict | None]:
    catalog = [r for r in rows if r["kind"] == CATALOG]
    if ref is None or not catalog:
        return {"id": "speed-size", "met": None, "detail": "no teacher or no catalog model measured"}, None

    def meets(r: dict) -> bool:
        vs = r["vs_teacher"]
        return vs["speedup"] >= TARGET_SPEED and vs["size_ratio"] <= 1 / TARGET_SIZE and no_loss(r)

    def describe(r: dict) -> str:
        vs = r["vs_teacher"]
        verdict = "no loss" if no_loss(r) else vs["paired"]["accuracy"]["verdict"]
        return (
            f"{r['name']}: {vs['speedup']:.1f}x faster, {1 / vs['size_ratio']:.1f}x smaller, "
            f"{difference_text(vs['paired']['accuracy'])} points ({verdict})"
        )

    winners = [r for r in catalog if meets(r)]
    if winners:
        best = max(winners, key=lambda r: r["vs_teacher"]["speedup"])
        return {"id": "speed-size", "met": True, "detail": describe(best)}, best
    kept = [r for r in catalog if no_loss(r)]
    best = max(kept or catalog, key=lambda r: r["vs_teacher"]["speedup"])
    lines = [f"the fastest at no loss, {describe(best)}" if kept else f"no recipe is at no loss; {describe(best)}"]
    small = [r for r in catalog if r["vs_teacher"]["size_ratio"] <= 1 / TARGET_SIZE and r is not best]
    if small:
        fast_small = max(small, key=lambda r: r["vs_teacher"]["speedup"])
        lines.append(f"the fastest {TARGET_SIZE:g}x smaller, {describe(fast_small)}")
    return {"id": "speed-size", "met": False, "detail": "; ".join(lines)}, best


def _peer_targets(rows: list[dict], other: dict | None) -> list[dict]:
    if other is None:
        return [{"id": i, "met": None, "detail": "the peer was not measured"} for i in ("peer", "fast-end")]
    models = [r for r in rows if r["kind"] in (TEACHER, CATALOG)]
    as_fast = [r for r in models if served_ms(r) <= served_ms(other)]
    peer_text = f"peer {_pct(other['accuracy'])} at {served_ms(other):.2f} ms"

    def describe(r: dict) -> str:
        d = r["vs_peer"]["paired"]["accuracy"]
        return f"{r['name']}: {_pct(r['accuracy'])} at {served_ms(r):.2f} ms, {difference_text(d)} points vs the peer"

    out = []
    for target, needed in (("peer", 0.0), ("fast-end", TARGET_PEER_POINTS)):
        winners = [
            r
            for r in as_fast
            if r["vs_peer"]["paired"]["accuracy"]["verdict"] == stats.BETTER
            and r["vs_peer"]["accuracy_delta"] >= needed
        ]
        if winners:
            detail = describe(max(winners, key=lambda r: r["accuracy"])) + f"; {peer_text}"
        else:
            parts = [peer_text]
            accurate = [
                r
                for r in models
                if r["vs_peer"]["accuracy_delta"] >= needed
                and r["vs_peer"]["paired"]["accuracy"]["verdict"] == stats.BETTER
            ]
            if accurate:
                parts.append(f"the fastest model that would do: {describe(min(accurate, key=served_ms))}")
            if as_fast:
                parts.append(f"the most accurate as fast: {describe(max(as_fast, key=lambda r: r['accuracy']))}")
            detail = "; ".join(parts)
        out.append({"id": target, "met": bool(winners), "detail": detail})
    return out


def evaluate_targets(rows: list[dict], reference: str | None, floor: str | None, peer: str | None) -> list[dict]:
    """The targets, each ``{"id", "text", "met": True/False/None (not measured), "detail"}``."""
    by_name = {r["name"]: r for r in rows}
    speed_size, best = _speed_size(rows, by_name.get(reference))
    out = [speed_size]
    low = by_name.get(floor)
    if best is None or low is None:
        out.append({"id": "floor", "met": None, "detail": "no floor or no catalog model measured"})
    else:
        ratio = best["vs_floor"]["latency_ratio"]
        detail = f"{best['name']}: {served_ms(best):.2f} ms, {ratio:.2f}x the floor's {served_ms(low):.2f} ms"
        out.append({"id": "floor", "met": ratio <= TARGET_FLOOR, "detail": detail})
    out += _peer_targets(rows, by_name.get(peer))
    return [{"id": t["id"], "text": TARGETS[t["id"]], "met": t["met"], "detail": t["detail"]} for t in out]


# --- the tables and the README section ------------------------------------------------------------------


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


def _with_interval(row: dict, metric: str) -> str:
    low, high = (row.get("intervals") or {}).get(metric, (None, None))
    value = _pct(row[metric])
    return value if low is None else f"{value} [{100 * low:.1f}, {100 * high:.1f}]"


def _vs_teacher(row: dict, metric: str) -> str:
    if row["kind"] == TEACHER or not row.get("vs_teacher"):
        return "-"
    d = row["vs_teacher"]["paired"].get(metric)
    return "-" if d is None else f"{_points(d['difference'])} [{_points(d['low'])}, {_points(d['high'])}]"


def accuracy_table(results: dict) -> str:
    """One row per subject: each accuracy with its own 95% interval, the difference to the teacher
    with its 95% paired interval, McNemar's p and the verdict, and the threshold-free oos AUROC/AUPR."""
    rows = results["rows"]
    oos = bool(rows) and all("oos_recall" in r for r in rows)
    header = [
        "Model",
        "Format",
        "Test accuracy [95% CI]",
        "vs teacher, points [95% paired CI]",
        "McNemar p",
        "Verdict",
    ]
    header += ["In-scope accuracy", "vs teacher", "OOS recall", "vs teacher", "OOS AUROC", "OOS AUPR"] if oos else []
    lines = []
    for r in rows:
        d = (r.get("vs_teacher") or {}).get("paired", {}).get("accuracy") if r["kind"] != TEACHER else None
        cells = [_row_label(r), r["format"], _with_interval(r, "accuracy"), _vs_teacher(r, "accuracy")]
        cells += ["-", "-"] if d is None else [_p(d["p_value"]), "no loss" if no_loss(r) else d["verdict"]]
        if oos:
            cells += [
                _pct(r["in_scope_accuracy"]),
                _vs_teacher(r, "in_scope_accuracy"),
                _with_interval(r, "oos_recall"),
                _vs_teacher(r, "oos_recall"),
                f"{r['oos_auroc']:.4f}" if "oos_auroc" in r else "-",
                f"{r['oos_aupr']:.4f}" if "oos_aupr" in r else "-",
            ]
        lines.append(cells)
    return _table(header, lines, right=set(range(2, len(header))) - {5})


def cost_table(results: dict) -> str:
    """One row per subject: size, latency alone and in the shared process, throughput, load time,
    memory, and the ratios to the teacher, the floor and the peer."""
    header = [
        "Model",
        "Size MB (gzip)",
        "Size vs teacher",
        "p50 ms alone (spread)",
        "p99 alone",
        "p50 ms in process (spread)",
        "p99 in process",
        "Real queries p50 ms",
        f"Rows/s at batch {results['settings']['batch_size']}",
        "Load s",
        "Peak RSS MB (+ model)",
        "Speed-up vs teacher",
        "Latency vs floor",
        "Beats the peer on",
    ]
    lines = []
    for r in results["rows"]:
        lat, alone, vs_t = r["latency_ms"], r.get("alone_latency_ms") or {}, r.get("vs_teacher") or {}
        qps = (r.get("throughput_qps") or {}).get("median")
        lines.append(
            [
                _row_label(r),
                f"{r['size_mb']:.1f} ({r['size_gzip_mb']:.1f})",
                f"{vs_t['size_ratio']:.3f}" if vs_t else "-",
                f"{alone['p50']:.2f} ({alone['spread_pct']:.0f}%)" if alone else "-",
                _ms(alone.get("p99")),
                f"{lat['p50']:.2f} ({lat['spread_pct']:.0f}%)",
                _ms(lat["p99"]),
                _ms((r.get("sample_latency_ms") or {}).get("p50")),
                "-" if qps is None else f"{qps:.0f}",
                "-" if r.get("load_s") is None else f"{r['load_s']:.2f}",
                _rss(r),
                f"{vs_t['speedup']:.1f}x" if vs_t else "-",
                f"{r['vs_floor']['latency_ratio']:.2f}x" if r.get("vs_floor") else "-",
                (r.get("vs_peer") or {}).get("beats_on", "-"),
            ]
        )
    return _table(header, lines, right=set(range(1, len(header) - 1)))


def _library(results: dict, name: str) -> str:
    return (results["machine"].get("libraries") or {}).get(name, "?")


def results_markdown(results: dict) -> str:
    """The section the README and the Hub catalog page show: how it was measured, the tables, the
    targets. A function of ``results`` alone."""
    s, m, d = results["settings"], results["machine"], results["dataset"]
    names = {r["name"]: r for r in results["rows"]}
    floor, peer = names.get(results.get("floor")), names.get(results.get("peer"))
    intro = (
        f"Measured {results['date']} by `make bench` on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
        f"{s['threads']} thread(s) for every row, torch {_library(results, 'torch')}, "
        f"onnxruntime {_library(results, 'onnxruntime')}. Test split: {d['n_test']} rows of {d['label']}. "
        f"**Alone**: each model in a fresh process of its own, {s['alone_repeats']} times, models alternating; "
        f'each time {s["warmup"]} warm-up calls, then {s["runs"]} timed calls of "{s["query"]}" through '
        "`pipeline()` (the peer: encode + predict); the median over the processes. "
        f"**In process**: every model in one process, {s['rounds']} interleaved rounds (each: the same calls, "
        f"{s['sample']} real test queries, 1/{s['rounds']} of the test split at batch {s['batch_size']}); the "
        "median over rounds. Spread = (max - min) / median of the per-process or per-round means. Speed-ups and "
        "the targets use the median alone. Load time and peak RSS: the fresh processes (+ model: the peak above "
        "the process's RSS once its libraries were imported)."
    )
    uncertainty = (
        "Intervals are 95%: an accuracy's own is Wilson's; a difference to the teacher is paired (both models "
        f"on the same {d['n_test']} rows: a bootstrap of {stats.RESAMPLES:,} resamples of the rows, seed "
        f"{stats.BOOTSTRAP_SEED}), with McNemar's exact p on the rows where the two disagree. **no loss**: the "
        f"difference's lower bound is above -{MARGIN_POINTS:g} points; **better**: the whole interval is above 0; "
        "**worse**: below 0. OOS AUROC/AUPR rank rows by the oos logit minus the best in-scope logit: no bias "
        "or threshold moves them."
    )
    notes = []
    if floor is not None:
        notes.append(
            f"*floor*: the same `pipeline()` call around an embedding bag and a linear layer (same tokenizer, "
            f"fitted {floor.get('epochs', s['floor_epochs'])} epochs on the train split): what tokenization and "
            "the pipeline cost, not a candidate."
        )
    if peer is not None:
        notes.append(peer_note(peer, s))
    for name, why in sorted((results.get("skipped") or {}).items()):
        notes.append(f"`{name}`: no row: {why}.")
    verdicts = {True: "met", False: "not met", None: "not measured"}
    targets = [f"- **{verdicts[t['met']]}**: {t['text']}: {t['detail']}." for t in results["targets"]]
    pareto = ", ".join(f"`{n}`" for n in results.get("pareto", []))
    parts = [intro, "Accuracy:", accuracy_table(results), uncertainty, "Cost:", cost_table(results)]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    if pareto:
        parts.append(f"Pareto front (accuracy vs median latency alone): {pareto}.")
    parts.append("Targets:\n\n" + "\n".join(targets))
    return "\n\n".join(parts) + "\n"


def peer_note(peer: dict, settings: dict) -> str:
    """What the peer row is: its vectors, the head kept, and both heads' validation accuracy."""
    from .peer import HEAD_TEXT, LOGREG, TRAINED

    info = peer.get("peer") or {"head": LOGREG}
    text = (
        "*peer*: model2vec static embeddings distilled from the teacher's own backbone "
        f"(PCA {settings['peer_pca_dims']}) + {HEAD_TEXT[info['head']]}"
    )
    if "validation_accuracy" in info:
        scores = info["validation_accuracy"]
        text += (
            f", the better on the validation split of two heads trained on the train split: logistic regression "
            f"(C {settings['peer_c']:g}) {_pct(scores[LOGREG])}, {HEAD_TEXT[TRAINED]} {_pct(scores[TRAINED])}"
        )
    return text + "; timed as encode + predict (no `pipeline()`)."


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
    from ..runfolder import atomic_write_text

    results = read_results(results_path)
    readme_path = Path(readme_path)
    atomic_write_text(readme_path, replace_section(readme_path.read_text(), readme_section(results)))
    return readme_path


def read_results(path: Path) -> dict:
    """``results.json`` as a dict, its schema checked (:class:`recipes.runfolder.BenchRecord`)."""
    from ..runfolder import BenchRecord

    return BenchRecord.from_file(Path(path)).to_dict()


def bench_figure(results: dict):
    """Accuracy vs median latency alone of every row but the floor (point area = size, Pareto
    front dashed), the floor's latency as a vertical line."""
    from ..measure.plot import accuracy_latency_figure

    rows = [r for r in results["rows"] if r["kind"] != FLOOR]
    fig = accuracy_latency_figure(
        rows,
        baseline=results.get("reference"),
        title=f"{results['dataset']['label']}: accuracy vs batch-1 latency ({results['machine'].get('cpu', '?')})",
        latency=served_ms,
        xlabel="median latency per query, each model alone (ms, batch 1)",
    )
    floor = next((r for r in results["rows"] if r["kind"] == FLOOR), None)
    if floor is not None:
        ax = fig.axes[0]
        ax.axvline(served_ms(floor), color="dimgrey", linestyle=":", linewidth=1.2, label="pipeline floor", zorder=1)
        left, _ = ax.get_xlim()
        if served_ms(floor) < left:
            ax.set_xlim(left=served_ms(floor) * 0.9 if ax.get_xscale() == "log" else 0)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


@dataclass
class BenchResult:
    """What ``make bench`` wrote: ``results.json`` (``data``) and the files beside it."""

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
        return accuracy_table(self.data) + "\n\n" + cost_table(self.data)

    def markdown(self) -> str:
        return results_markdown(self.data)

    def to_dataframe(self):
        """One row per subject, indexed by name: accuracy, size, latency statistics, ratios."""
        import pandas as pd

        records = []
        for row in self.rows:
            record = {k: v for k, v in row.items() if isinstance(v, (str, int, float)) or v is None}
            for group in ("latency_ms", "alone_latency_ms", "sample_latency_ms"):
                prefix = group.removesuffix("_ms")
                record.update(
                    {f"{prefix}_{k}_ms": v for k, v in (row.get(group) or {}).items() if isinstance(v, float)}
                )
            record["throughput_qps"] = (row.get("throughput_qps") or {}).get("median")
            for group in ("vs_teacher", "vs_floor", "vs_peer"):
                for k, v in (row.get(group) or {}).items():
                    if k == "paired":
                        record.update({f"{group}_{m}_{x}": v[m][x] for m in v for x in ("low", "high", "p_value")})
                    else:
                        record[f"{group}_{k}"] = v
            records.append(record)
        return pd.DataFrame(records).set_index("name")

    def plot(self):
        return bench_figure(self.data)

    @classmethod
    def read(cls, path: Path) -> BenchResult:
        return cls(Path(path), read_results(path))
